"""SQL of the delivery service (SQLAlchemy Core): plans, audit chain, occurrences, ledger, sink."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from pyroaring import BitMap
from sqlalchemy import and_, bindparam, delete, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.common.db import make_engine, migrate
from services.common.errors import Aborted, NotFound
from services.delivery import model
from services.delivery.tables import audit_log, occurrences, plans, sends, sink_messages, touches

GENESIS_HASH = "0" * 64


def now_ms() -> int:
    return int(time.time() * 1000)


def open_engine(url: str, run_migrations: bool = True) -> Engine:
    """The delivery engine; on SQLite every transaction takes the write lock up front
    (BEGIN IMMEDIATE), so a read-then-write never fails when another process wrote between."""
    if run_migrations:
        migrate("delivery", url)
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def dialect_insert(engine_or_conn, table):
    """An INSERT that supports ON CONFLICT on this dialect."""
    if engine_or_conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as make_insert
    elif engine_or_conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as make_insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported dialect {engine_or_conn.dialect.name}")
    return make_insert(table)


def idempotency_key(plan_id: int, touch_id: str, occurrence_key: str, user_id: int) -> str:
    """Stable per (plan, touch, occurrence, user): what a gateway deduplicates on."""
    raw = f"{plan_id}\x1f{touch_id}\x1f{occurrence_key}\x1f{user_id}"
    return "dlv-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


# Plans -------------------------------------------------------------------------------------


def _plan_from_rows(row, touch_rows) -> model.Plan:
    spec = model.PlanSpec(
        display_name=row.display_name, goal_type=row.goal_type, scene=row.scene,
        goal_event=row.goal_event, goal_target=row.goal_target, start_ms=row.start_ms,
        end_ms=row.end_ms, priority=row.priority, category=row.category, owner=row.owner,
        control_percent=row.control_percent or 0.0,
        follow_ups=tuple(row.follow_ups or ()),
        attribution_window_s=row.attribution_window_s or 0,
        touches=tuple(
            model.Touch(
                touch_id=t.touch_id, channel=t.channel,
                content=model.Content(**t.content),
                audience=model.Audience(
                    segment=t.audience.get("segment", ""),
                    external_ids=tuple(t.audience.get("external_ids", ())),
                ),
                schedule=model.Schedule(**t.schedule),
                send_rate_per_s=t.send_rate_per_s,
                trigger=t.trigger, experiment=t.experiment,
            )
            for t in sorted(touch_rows, key=lambda t: t.position)
        ),
    )
    return model.Plan(
        id=row.id, spec=spec, creator=row.creator, state=row.state,
        content_hash=row.content_hash, approved_hash=row.approved_hash,
        approved_by=row.approved_by, reject_reason=row.reject_reason, version=row.version,
        created_ms=row.created_ms, updated_ms=row.updated_ms,
    )


def _touch_rows(plan_id: int, spec: model.PlanSpec) -> list[dict[str, Any]]:
    import dataclasses

    return [
        {
            "plan_id": plan_id, "touch_id": t.touch_id, "position": i, "channel": t.channel,
            "content": dataclasses.asdict(t.content),
            "audience": {"segment": t.audience.segment,
                         "external_ids": list(t.audience.external_ids)},
            "schedule": dataclasses.asdict(t.schedule), "send_rate_per_s": t.send_rate_per_s,
            "trigger": t.trigger, "experiment": t.experiment,
        }
        for i, t in enumerate(spec.touches)
    ]


def _spec_columns(spec: model.PlanSpec) -> dict[str, Any]:
    return {
        "display_name": spec.display_name, "goal_type": spec.goal_type, "scene": spec.scene,
        "goal_event": spec.goal_event, "goal_target": spec.goal_target,
        "start_ms": spec.start_ms, "end_ms": spec.end_ms, "priority": spec.priority,
        "category": spec.category, "owner": spec.owner,
        "control_percent": spec.control_percent,
        "follow_ups": list(spec.follow_ups) or None,
        "attribution_window_s": spec.attribution_window_s,
        "content_hash": model.content_hash(spec),
    }


class Store:
    """All SQL of the service, on one engine."""

    def __init__(self, engine: Engine, clock=None):
        self.engine = engine
        # Epoch milliseconds; injectable so tests can move through quiet hours and windows.
        self.clock = clock or now_ms

    # Plans ---------------------------------------------------------------------------------

    def create_plan(self, spec: model.PlanSpec, creator: str) -> model.Plan:
        ts = self.clock()
        for _ in range(5):
            try:
                with self.engine.begin() as conn:
                    columns = _spec_columns(spec)
                    plan_id = conn.execute(
                        insert(plans).values(
                            **columns, creator=creator, state=model.State.DRAFT, version=1,
                            created_ms=ts, updated_ms=ts,
                        ).returning(plans.c.id)
                    ).scalar_one()
                    conn.execute(insert(touches), _touch_rows(plan_id, spec))
                    self._append_audit(conn, plan_id, "create", None, model.State.DRAFT, creator,
                                       "", columns["content_hash"], ts)
                return self.get_plan(plan_id)
            except IntegrityError:
                continue  # another audit entry took the sequence number; try again
        raise Aborted("concurrent audit log writes; retry")

    def _load(self, conn: Connection, plan_id: int) -> model.Plan:
        row = conn.execute(
            select(plans).where(plans.c.id == plan_id, plans.c.deleted_ms.is_(None))
        ).first()
        if row is None:
            raise NotFound("plan", f"plans/{plan_id}")
        touch_rows = conn.execute(select(touches).where(touches.c.plan_id == plan_id)).all()
        return _plan_from_rows(row, touch_rows)

    def get_plan(self, plan_id: int) -> model.Plan:
        with self.engine.connect() as conn:
            return self._load(conn, plan_id)

    def list_plans(self, after_id: int, limit: int, states: Sequence[str] = ()) -> list[model.Plan]:
        query = (
            select(plans.c.id)
            .where(plans.c.deleted_ms.is_(None), plans.c.id > after_id)
            .order_by(plans.c.id)
            .limit(limit)
        )
        if states:
            query = query.where(plans.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            ids = conn.execute(query).scalars().all()
            return [self._load(conn, i) for i in ids]

    def plan_ids_in_states(self, states: Sequence[str]) -> list[int]:
        with self.engine.connect() as conn:
            return conn.execute(
                select(plans.c.id).where(plans.c.state.in_(list(states)),
                                         plans.c.deleted_ms.is_(None))
            ).scalars().all()

    def change_plan(
        self,
        plan_id: int,
        actor: str,
        action: str,
        decide,
        reason: str = "",
    ) -> model.Plan:
        """Read-modify-write of one plan with an audit entry, in one transaction.

        ``decide(plan)`` raises to refuse, or returns ``(to_state, column_changes, new_spec)``.
        """
        for _ in range(5):
            try:
                with self.engine.begin() as conn:
                    plan = self._load(conn, plan_id)
                    to_state, changes, new_spec = decide(plan)
                    values = dict(changes)
                    content = plan.content_hash
                    if new_spec is not None:
                        values.update(_spec_columns(new_spec))
                        content = values["content_hash"]
                        conn.execute(delete(touches).where(touches.c.plan_id == plan_id))
                        conn.execute(insert(touches), _touch_rows(plan_id, new_spec))
                    ts = self.clock()
                    values.update(state=to_state, version=plan.version + 1, updated_ms=ts)
                    done = conn.execute(
                        update(plans)
                        .where(plans.c.id == plan_id, plans.c.version == plan.version)
                        .values(**values)
                    ).rowcount
                    if done != 1:
                        raise IntegrityError("plan changed concurrently", None, Exception())
                    self._append_audit(conn, plan_id, action, plan.state, to_state, actor,
                                       reason, content, ts)
                return plan if "deleted_ms" in changes else self.get_plan(plan_id)
            except IntegrityError:
                continue
        raise Aborted("the plan changed concurrently; retry")

    # Audit chain ---------------------------------------------------------------------------

    @staticmethod
    def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
        canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()

    def _append_audit(self, conn, plan_id, action, from_state, to_state, actor, reason,
                      content, ts) -> None:
        last = conn.execute(
            select(audit_log.c.seq, audit_log.c.entry_hash).order_by(audit_log.c.seq.desc())
            .limit(1)
        ).first()
        seq, prev = (last.seq + 1, last.entry_hash) if last else (1, GENESIS_HASH)
        entry = {
            "seq": seq, "plan_id": plan_id, "action": action, "from_state": from_state,
            "to_state": to_state, "actor": actor, "ts_ms": ts, "reason": reason or "",
            "content_hash": content,
        }
        conn.execute(
            insert(audit_log).values(**entry, prev_hash=prev,
                                     entry_hash=self.entry_hash(prev, entry))
        )

    def list_audit(self, plan_id: int | None, after_seq: int, limit: int) -> list[dict]:
        query = select(audit_log).where(audit_log.c.seq > after_seq).order_by(audit_log.c.seq)
        if plan_id is not None:
            query = query.where(audit_log.c.plan_id == plan_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.limit(limit))]

    def verify_audit_chain(self) -> tuple[bool, int | None]:
        """Recomputes the chain; returns (intact, first bad sequence number)."""
        prev = GENESIS_HASH
        expected_seq = 1
        with self.engine.connect() as conn:
            for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)):
                entry = {k: row._mapping[k] for k in (
                    "seq", "plan_id", "action", "from_state", "to_state", "actor", "ts_ms",
                    "reason", "content_hash")}
                if (row.seq != expected_seq or row.prev_hash != prev
                        or row.entry_hash != self.entry_hash(prev, entry)):
                    return False, row.seq
                prev = row.entry_hash
                expected_seq += 1
        return True, None

    # Occurrences ---------------------------------------------------------------------------

    def ensure_occurrence(self, plan: model.Plan, touch: model.Touch, key: str, due_ms: int,
                          local_wallclock: str | None) -> int:
        ts = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                dialect_insert(conn, occurrences).values(
                    plan_id=plan.id, touch_id=touch.touch_id, occurrence_key=key, due_ms=due_ms,
                    local_wallclock=local_wallclock, priority=plan.spec.priority,
                    channel=touch.channel, category=plan.spec.category, state="pending",
                    created_ms=ts, updated_ms=ts,
                ).on_conflict_do_nothing()
            )
            return conn.execute(
                select(occurrences.c.id).where(
                    occurrences.c.plan_id == plan.id, occurrences.c.touch_id == touch.touch_id,
                    occurrences.c.occurrence_key == key,
                )
            ).scalar_one()

    def occurrence(self, occurrence_id: int):
        with self.engine.connect() as conn:
            row = conn.execute(select(occurrences).where(occurrences.c.id == occurrence_id)).first()
        if row is None:
            raise NotFound("occurrence", str(occurrence_id))
        return row

    def set_snapshot(self, occurrence_id: int, audience: BitMap, final: bool) -> None:
        """Stores the audience snapshot; a final snapshot is never replaced (restarts resume
        the very audience the run started with)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(occurrences)
                .where(occurrences.c.id == occurrence_id, occurrences.c.snapshot_final == 0)
                .values(audience=audience.serialize(), audience_size=len(audience),
                        snapshot_final=1 if final else 0, updated_ms=self.clock(),
                        state="running" if final else "pending")
            )

    def set_occurrence_state(self, occurrence_id: int, state: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(occurrences).where(occurrences.c.id == occurrence_id)
                         .values(state=state, updated_ms=self.clock()))

    def cancel_pending_occurrences(self, plan_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(occurrences)
                .where(occurrences.c.plan_id == plan_id,
                       occurrences.c.state.in_(["pending", "running"]))
                .values(state="cancelled", updated_ms=self.clock())
            )

    def occurrences_for_plan(self, plan_id: int, states: Sequence[str]) -> list:
        with self.engine.connect() as conn:
            return conn.execute(
                select(occurrences).where(occurrences.c.plan_id == plan_id,
                                          occurrences.c.state.in_(list(states)))
                .order_by(occurrences.c.due_ms)
            ).all()

    def reservations(self, priority_above: int, due_from: int, due_to: int,
                     exclude_plan: int) -> list:
        """Pending or running occurrences of higher-priority plans due inside a window: the
        capacity they will need is held for them."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(occurrences.c.id, occurrences.c.plan_id, occurrences.c.touch_id,
                       occurrences.c.occurrence_key, occurrences.c.due_ms,
                       occurrences.c.priority, occurrences.c.channel, occurrences.c.category,
                       occurrences.c.audience, occurrences.c.state)
                .where(occurrences.c.priority > priority_above,
                       occurrences.c.state.in_(["pending", "running"]),
                       occurrences.c.due_ms >= due_from, occurrences.c.due_ms < due_to,
                       occurrences.c.plan_id != exclude_plan,
                       occurrences.c.audience.is_not(None))
            ).all()

    # Ledger --------------------------------------------------------------------------------

    def claim_new(self, occ, user_ids: Sequence[int], worker: str, lease_ms: int) -> list:
        """Inserts ledger rows for users not yet in this occurrence; returns (id, user_id) of
        the rows this call created - the recipients this worker now owns."""
        ts = self.clock()
        rows = [
            {
                "occurrence_id": occ.id, "plan_id": occ.plan_id, "touch_id": occ.touch_id,
                "occurrence_key": occ.occurrence_key, "user_id": uid, "channel": occ.channel,
                "category": occ.category, "status": "claimed", "attempts": 0,
                "claimed_by": worker, "lease_until_ms": ts + lease_ms,
                "idempotency_key": idempotency_key(occ.plan_id, occ.touch_id,
                                                   occ.occurrence_key, uid),
                "created_ms": ts, "updated_ms": ts,
            }
            for uid in user_ids
        ]
        if not rows:
            return []
        with self.engine.begin() as conn:
            stmt = (dialect_insert(conn, sends).on_conflict_do_nothing()
                    .returning(sends.c.id, sends.c.user_id))
            return [tuple(r) for r in conn.execute(stmt, rows)]

    def claim_keyed(self, occ, keyed: Sequence[tuple[int, str]], worker: str,
                    lease_ms: int) -> list:
        """Like ``claim_new`` for sends that each carry their own occurrence key (a triggered
        send is keyed by its event): inserts ledger rows for the (user, key) pairs not yet in
        the ledger under ``occ`` in one statement; returns (id, user_id) of the rows created."""
        ts = self.clock()
        rows = [
            {
                "occurrence_id": occ.id, "plan_id": occ.plan_id, "touch_id": occ.touch_id,
                "occurrence_key": key, "user_id": uid, "channel": occ.channel,
                "category": occ.category, "status": "claimed", "attempts": 0,
                "claimed_by": worker, "lease_until_ms": ts + lease_ms,
                "idempotency_key": idempotency_key(occ.plan_id, occ.touch_id, key, uid),
                "created_ms": ts, "updated_ms": ts,
            }
            for uid, key in keyed
        ]
        if not rows:
            return []
        with self.engine.begin() as conn:
            stmt = (dialect_insert(conn, sends).on_conflict_do_nothing()
                    .returning(sends.c.id, sends.c.user_id))
            return [tuple(r) for r in conn.execute(stmt, rows)]

    def release_waiting(self, plan_id: int, touch_id: str, reason: str) -> int:
        """Makes deferred rows waiting for ``reason`` due now (a race was decided)."""
        ts = self.clock()
        with self.engine.begin() as conn:
            return conn.execute(
                update(sends).where(sends.c.plan_id == plan_id, sends.c.touch_id == touch_id,
                                    sends.c.status == "deferred", sends.c.reason == reason)
                .values(not_before_ms=ts, updated_ms=ts)
            ).rowcount

    def existing_users(self, occurrence_id: int, user_ids: Sequence[int]) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(
                select(sends.c.user_id).where(sends.c.occurrence_id == occurrence_id,
                                              sends.c.user_id.in_(list(user_ids)))
            ).scalars())

    def claim_due(self, worker: str, lease_ms: int, limit: int,
                  occurrence_id: int | None = None, plan_id: int | None = None) -> list:
        """Claims rows whose time has come again: deferred or retrying rows that are due, and
        claims whose worker's lease expired (it died). Returns (id, user_id, occurrence_id)."""
        ts = self.clock()
        due = or_(
            and_(sends.c.status.in_(["deferred", "retry"]), sends.c.not_before_ms <= ts),
            and_(sends.c.status == "claimed", sends.c.lease_until_ms < ts),
        )
        query = select(sends.c.id).where(due).order_by(sends.c.id).limit(limit)
        if occurrence_id is not None:
            query = query.where(sends.c.occurrence_id == occurrence_id)
        if plan_id is not None:
            query = query.where(sends.c.plan_id == plan_id)
        with self.engine.begin() as conn:
            ids = conn.execute(query).scalars().all()
            if not ids:
                return []
            # The WHERE is re-checked per row, so racing workers end up with disjoint rows.
            return [tuple(r) for r in conn.execute(
                update(sends).where(sends.c.id.in_(ids), due)
                .values(status="claimed", claimed_by=worker, lease_until_ms=ts + lease_ms,
                        updated_ms=ts)
                .returning(sends.c.id, sends.c.user_id, sends.c.occurrence_id)
            )]

    def send_rows(self, ids: Sequence[int]) -> dict[int, Any]:
        with self.engine.connect() as conn:
            return {r.id: r for r in conn.execute(select(sends).where(sends.c.id.in_(list(ids))))}

    def mark(self, updates: Sequence[dict[str, Any]], worker: str) -> int:
        """Records decisions in one executemany; only rows this worker still holds change.

        Each dict: id, status, reason, attempts, not_before_ms, counted_ms, time_zone,
        gateway_message_id, variant_id, sent_ms."""
        if not updates:
            return 0
        ts = self.clock()
        stmt = (
            update(sends)
            .where(sends.c.id == bindparam("b_id"), sends.c.claimed_by == bindparam("b_worker"),
                   sends.c.status == "claimed")
            .values(
                status=bindparam("b_status"), reason=bindparam("b_reason"),
                attempts=bindparam("b_attempts"), not_before_ms=bindparam("b_not_before"),
                counted_ms=bindparam("b_counted"), time_zone=bindparam("b_tz"),
                gateway_message_id=bindparam("b_gmid"), variant_id=bindparam("b_variant"),
                sent_ms=bindparam("b_sent"), lease_until_ms=None, updated_ms=ts,
            )
        )
        params = [
            {
                "b_id": u["id"], "b_worker": worker, "b_status": u["status"],
                "b_reason": u.get("reason"), "b_attempts": u.get("attempts", 0),
                "b_not_before": u.get("not_before_ms"), "b_counted": u.get("counted_ms"),
                "b_tz": u.get("time_zone"), "b_gmid": u.get("gateway_message_id"),
                "b_variant": u.get("variant_id") or None, "b_sent": u.get("sent_ms"),
            }
            for u in updates
        ]
        with self.engine.begin() as conn:
            return conn.execute(stmt, params).rowcount

    def release(self, ids: Sequence[int], worker: str) -> None:
        """Hands claimed rows back (their lease ends now) when a batch cannot proceed."""
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(sends)
                .where(sends.c.id.in_(list(ids)), sends.c.claimed_by == worker,
                       sends.c.status == "claimed")
                .values(lease_until_ms=0, updated_ms=self.clock())
            )

    def occurrence_open_rows(self, occurrence_id: int) -> int:
        """Rows of an occurrence not yet final (claimed, deferred or retrying)."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(sends).where(
                    sends.c.occurrence_id == occurrence_id,
                    sends.c.status.in_(["claimed", "deferred", "retry"]))
            ).scalar_one()

    def occurrence_row_count(self, occurrence_id: int) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(sends)
                                .where(sends.c.occurrence_id == occurrence_id)).scalar_one()

    def users_in_ledger(self, occurrence_ids: Sequence[int], user_ids: Sequence[int]) -> set:
        """(occurrence id, user id) pairs already in the ledger, for reservation accounting."""
        if not occurrence_ids or not user_ids:
            return set()
        with self.engine.connect() as conn:
            return {tuple(r) for r in conn.execute(
                select(sends.c.occurrence_id, sends.c.user_id).where(
                    sends.c.occurrence_id.in_(list(occurrence_ids)),
                    sends.c.user_id.in_(list(user_ids)))
            )}

    def list_sends(self, plan_id: int, after_id: int, limit: int, status: str = "") -> list:
        query = (select(sends).where(sends.c.plan_id == plan_id, sends.c.id > after_id)
                 .order_by(sends.c.id).limit(limit))
        if status:
            query = query.where(sends.c.status == status)
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def status_counts_for_occurrence(self, occurrence_id: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(conn.execute(
                select(sends.c.status, func.count()).where(sends.c.occurrence_id == occurrence_id)
                .group_by(sends.c.status)
            ).all())

    def status_counts(self, plan_id: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(conn.execute(
                select(sends.c.status, func.count()).where(sends.c.plan_id == plan_id)
                .group_by(sends.c.status)
            ).all())

    # Recording sink ------------------------------------------------------------------------

    def sink_record(self, messages: Sequence[dict[str, Any]]) -> list[bool]:
        """Stores messages; True for a new key, False for a repeat (counted in attempts)."""
        if not messages:
            return []
        ts = self.clock()
        keys = [m["idempotency_key"] for m in messages]
        with self.engine.begin() as conn:
            before = set(conn.execute(
                select(sink_messages.c.idempotency_key)
                .where(sink_messages.c.idempotency_key.in_(keys))
            ).scalars())
            stmt = dialect_insert(conn, sink_messages)
            stmt = stmt.on_conflict_do_update(
                index_elements=[sink_messages.c.idempotency_key],
                set_={"attempts": sink_messages.c.attempts + 1, "last_ms": ts},
            )
            conn.execute(stmt, [
                {**m, "attempts": 1, "first_ms": ts, "last_ms": ts} for m in messages
            ])
        return [k not in before for k in keys]

    def sink_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(sink_messages)).scalar_one()


def encode_token(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode() if value else ""


def decode_token(token: str, field: str = "page_token") -> int:
    if not token:
        return 0
    from services.common.errors import InvalidArgument

    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError as exc:
        raise InvalidArgument(field, "is not a token this service issued") from exc
