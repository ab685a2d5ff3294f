"""Follow-up paths: after a wait, converted users move on and the others are retried, then dropped.

A touch's follow-up rule: every user the touch was sent to is enrolled. ``wait_s`` after the
send, a user who converted for the plan (an attributed ``converted`` outcome since enrolment)
goes to the next step: another touch of the plan (``next_touch_id``) or a touch of another
plan (``handover_plan_id`` / ``handover_touch_id``). A user who did not is sent
``retry_touch_id`` (by default the same touch) again, up to ``max_retries`` times,
``spacing_s`` apart; a user still not converted after the last retry's wait is dropped and
marked ``dropped``. Every follow-up send goes through the triggered-send path (plan gate,
ledger, guards), keyed so that a rerun after a crash sends nothing twice.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, bindparam, func, literal, select, update
from sqlalchemy.engine import Engine

from services.common.errors import InvalidArgument
from services.delivery import model
from services.delivery.core import Funnel
from services.delivery.store import dialect_insert
from services.delivery.tables import sends
from services.delivery.tables_effects import followup_rules, followups, outcomes
from services.delivery.triggers import Fire

MAX_RETRIES = 10


@dataclasses.dataclass(frozen=True)
class FollowUpSpec:
    wait_s: int
    max_retries: int = 0
    spacing_s: int = 0
    retry_touch_id: str = ""
    next_touch_id: str = ""
    handover_plan_id: int = 0
    handover_touch_id: str = ""


def validate_followup(spec: FollowUpSpec, plan: model.PlanSpec, touch_id: str,
                      prefix: str = "follow_up") -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    touch_ids = {t.touch_id for t in plan.touches}
    duration_s = (plan.end_ms - plan.start_ms) / 1000
    if touch_id not in touch_ids:
        errors.append((f"{prefix}.touch_id", f"the plan has no touch {touch_id!r}"))
    if spec.wait_s <= 0:
        errors.append((f"{prefix}.wait", "must be positive"))
    elif spec.wait_s + spec.max_retries * max(spec.spacing_s, 0) > duration_s:
        errors.append((f"{prefix}.wait", "the wait and the retries do not fit in the plan"))
    if not 0 <= spec.max_retries <= MAX_RETRIES:
        errors.append((f"{prefix}.max_retries", f"must be between 0 and {MAX_RETRIES}"))
    if spec.max_retries and spec.spacing_s <= 0:
        errors.append((f"{prefix}.spacing", "must be positive when retries are allowed"))
    if spec.retry_touch_id and spec.retry_touch_id not in touch_ids:
        errors.append((f"{prefix}.retry_touch_id", "is not a touch of the plan"))
    if spec.next_touch_id and spec.next_touch_id not in touch_ids:
        errors.append((f"{prefix}.next_touch_id", "is not a touch of the plan"))
    if spec.next_touch_id and spec.handover_plan_id:
        errors.append((f"{prefix}.handover_plan_id", "set either next_touch_id or a hand-over"))
    if spec.handover_plan_id and not spec.handover_touch_id:
        errors.append((f"{prefix}.handover_touch_id", "is required with handover_plan_id"))
    return errors


class FollowUps:
    """Stores follow-up rules, enrols sent users and advances them when their wait ends."""

    def __init__(self, engine: Engine, sender, clock: Callable[[], int] | None = None,
                 batch: int = 1000):
        self.engine = engine
        self.sender = sender
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.batch = batch

    def save(self, plan: model.Plan, touch_id: str, spec: FollowUpSpec) -> None:
        errors = validate_followup(spec, plan.spec, touch_id)
        if errors:
            raise InvalidArgument(violations=errors)
        now = self.clock()
        data = dataclasses.asdict(spec)
        with self.engine.begin() as conn:
            conn.execute(dialect_insert(conn, followup_rules).values(
                plan_id=plan.id, touch_id=touch_id, spec=data, updated_ms=now
            ).on_conflict_do_update(
                index_elements=[followup_rules.c.plan_id, followup_rules.c.touch_id],
                set_={"spec": data, "updated_ms": now}))

    def rules(self) -> dict[tuple[int, str], FollowUpSpec]:
        with self.engine.connect() as conn:
            return {(r.plan_id, r.touch_id): FollowUpSpec(**r.spec)
                    for r in conn.execute(select(followup_rules))}

    def enroll(self) -> int:
        """Enrols every user sent a touch that has a rule and is not enrolled yet, in one
        INSERT ... SELECT per rule; returns how many were enrolled."""
        now = self.clock()
        added = 0
        rules = self.rules()
        with self.engine.begin() as conn:
            for (plan_id, touch_id), spec in rules.items():
                first_sent = (
                    select(sends.c.plan_id, sends.c.touch_id, sends.c.user_id,
                           func.min(sends.c.sent_ms).label("sent_ms"))
                    .where(sends.c.plan_id == plan_id, sends.c.touch_id == touch_id,
                           sends.c.status == "sent",
                           ~sends.c.occurrence_key.like("evt-fu-%"))
                    .group_by(sends.c.plan_id, sends.c.touch_id, sends.c.user_id)
                    .subquery()
                )
                source = select(
                    first_sent.c.plan_id, first_sent.c.touch_id, first_sent.c.user_id,
                    literal("waiting"), literal(0), first_sent.c.sent_ms,
                    first_sent.c.sent_ms + spec.wait_s * 1000, literal(now),
                ).where(~select(followups.c.user_id).where(
                    followups.c.plan_id == first_sent.c.plan_id,
                    followups.c.touch_id == first_sent.c.touch_id,
                    followups.c.user_id == first_sent.c.user_id).exists())
                stmt = dialect_insert(conn, followups).from_select(
                    ["plan_id", "touch_id", "user_id", "status", "attempts", "enrolled_ms",
                     "next_due_ms", "updated_ms"], source).on_conflict_do_nothing()
                added += conn.execute(stmt).rowcount or 0
        return added

    def process_due(self) -> Funnel:
        """Advances every user whose wait is over: next step, retry, or dropped."""
        funnel = Funnel()
        rules = self.rules()
        while True:
            now = self.clock()
            with self.engine.connect() as conn:
                due = conn.execute(
                    select(followups).where(followups.c.status == "waiting",
                                            followups.c.next_due_ms <= now)
                    .order_by(followups.c.next_due_ms).limit(self.batch)).all()
                if not due:
                    return funnel
                converted = {tuple(r) for r in conn.execute(
                    select(outcomes.c.plan_id, outcomes.c.user_id).distinct().select_from(
                        outcomes.join(followups, and_(
                            followups.c.plan_id == outcomes.c.plan_id,
                            followups.c.user_id == outcomes.c.user_id)))
                    .where(outcomes.c.kind == "converted",
                           outcomes.c.ts_ms >= followups.c.enrolled_ms,
                           followups.c.status == "waiting", followups.c.next_due_ms <= now,
                           outcomes.c.user_id.in_([r.user_id for r in due])))}
            fires: list[Fire] = []
            changes: list[dict[str, Any]] = []
            for r in due:
                spec = rules.get((r.plan_id, r.touch_id))
                if spec is None:
                    continue
                base = {"b_plan": r.plan_id, "b_touch": r.touch_id, "b_user": r.user_id,
                        "b_attempts_was": r.attempts}
                if (r.plan_id, r.user_id) in converted:
                    step = ""
                    if spec.next_touch_id:
                        step = f"touches/{spec.next_touch_id}"
                        fires.append(Fire(r.plan_id, spec.next_touch_id, r.user_id,
                                          f"fu-{r.touch_id}-{r.user_id}-next"))
                    elif spec.handover_plan_id:
                        step = f"plans/{spec.handover_plan_id}/touches/{spec.handover_touch_id}"
                        fires.append(Fire(spec.handover_plan_id, spec.handover_touch_id,
                                          r.user_id, f"fu-{r.plan_id}-{r.touch_id}-{r.user_id}"))
                    changes.append({**base, "b_status": "converted", "b_attempts": r.attempts,
                                    "b_due": None, "b_outcome": now, "b_step": step or None})
                elif r.attempts < spec.max_retries:
                    attempt = r.attempts + 1
                    fires.append(Fire(r.plan_id, spec.retry_touch_id or r.touch_id, r.user_id,
                                      f"fu-{r.touch_id}-{r.user_id}-r{attempt}"))
                    changes.append({**base, "b_status": "waiting", "b_attempts": attempt,
                                    "b_due": now + spec.spacing_s * 1000, "b_outcome": None,
                                    "b_step": None})
                else:
                    changes.append({**base, "b_status": "dropped", "b_attempts": r.attempts,
                                    "b_due": None, "b_outcome": now, "b_step": None})
            # Sends first: if the process dies before the update, the rerun finds the same
            # fires and the ledger lets none of them out twice.
            if fires:
                funnel.add(self.sender.send(fires))
            if changes:
                stmt = (
                    update(followups)
                    .where(followups.c.plan_id == bindparam("b_plan"),
                           followups.c.touch_id == bindparam("b_touch"),
                           followups.c.user_id == bindparam("b_user"),
                           followups.c.attempts == bindparam("b_attempts_was"),
                           followups.c.status == "waiting")
                    .values(status=bindparam("b_status"), attempts=bindparam("b_attempts"),
                            next_due_ms=bindparam("b_due"), outcome_ms=bindparam("b_outcome"),
                            next_step=bindparam("b_step"), updated_ms=now)
                )
                with self.engine.begin() as conn:
                    conn.execute(stmt, changes)
            if len(due) < self.batch:
                return funnel

    def status_counts(self, plan_id: int) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(conn.execute(
                select(followups.c.status, func.count()).where(followups.c.plan_id == plan_id)
                .group_by(followups.c.status)).all())
