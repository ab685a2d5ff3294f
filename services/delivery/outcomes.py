"""Outcome intake (RPC and signed webhook), opt-outs forwarded to the profile service, attribution.

Outcomes name a message by the idempotency key the gateway received (or the vendor's message
id the gateway returned). Each (message, kind) is stored once: the unique key of
``delivery_outcomes`` turns a repeated report into a counted duplicate.

Attribution rule (documented contract): a goal event of a plan (``PlanSpec.goal_event``) by a
user converts that plan's message sent to the user within the attribution window before the
event (the plan's ``attribution_window_s``, else the default of 7 days); with several, the last one sent gets the credit (``last_touch``, the default) or the
first (``first_touch``). A control-group user of the plan converts the same way against the
moment the user was held back, so contacted and control rates are comparable. Each message
(or holdout) converts at most once; its revenue is the first converting event's value.
"""

from __future__ import annotations

import dataclasses
import hmac
import http.server
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine

from services.delivery.gateways import sign
from services.delivery.sources import ProfileDirectory
from services.delivery.store import dialect_insert
from services.delivery.tables import plans, sends
from services.delivery.tables_effects import assignments, outcomes

log = logging.getLogger(__name__)

OUTCOME_KINDS = ("delivered", "opened", "clicked", "converted", "unsubscribed",
                 "notification_disabled", "uninstalled")
OPT_OUT_KINDS = frozenset({"unsubscribed", "notification_disabled", "uninstalled"})
ACCEPTED, DUPLICATE, REFUSED = "accepted", "duplicate", "refused"
DEFAULT_ATTRIBUTION_WINDOW_MS = 7 * 86_400_000
MAX_BATCH = 1000
WEBHOOK_TOLERANCE_S = 300


@dataclasses.dataclass(frozen=True)
class OutcomeItem:
    """One reported outcome of one message."""

    message_id: str
    kind: str
    ts_ms: int = 0
    value: float | None = None


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """What became of one item: accepted, duplicate (counted before) or refused (why)."""

    index: int
    status: str
    field: str = ""
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class ConsentChange:
    """An opt-out a user made through a message: to record in the profile at once.

    ``kind`` is ``unsubscribed`` (consent for ``channel`` withdrawn), ``notification_disabled``
    or ``uninstalled`` (device flags)."""

    user_id: int
    external_id: str
    channel: str
    kind: str
    ts_ms: int
    source: str


class ConsentWriter(Protocol):
    """Writes opt-outs to the profile service (its UpdateConsents / flags RPCs in production)."""

    def apply(self, changes: Sequence[ConsentChange]) -> None:
        """Records all changes or raises; repeating a change must be harmless."""


class OutcomeIntake:
    """Stores outcome reports idempotently and forwards opt-outs to the profile service."""

    def __init__(self, engine: Engine, consent: ConsentWriter, directory: ProfileDirectory,
                 clock: Callable[[], int] | None = None):
        self.engine = engine
        self.consent = consent
        self.directory = directory
        self.clock = clock or (lambda: int(time.time() * 1000))

    def report(self, items: Sequence[OutcomeItem], source: str = "api") -> list[ItemResult]:
        """Takes a batch; each item is accepted, a duplicate, or refused on its own."""
        now = self.clock()
        results: dict[int, ItemResult] = {}
        candidates: list[tuple[int, OutcomeItem]] = []
        for i, item in enumerate(items[:MAX_BATCH]):
            if not item.message_id:
                results[i] = ItemResult(i, REFUSED, f"outcomes[{i}].message_id", "is required")
            elif item.kind not in OUTCOME_KINDS:
                results[i] = ItemResult(i, REFUSED, f"outcomes[{i}].kind",
                                        f"must be one of {', '.join(OUTCOME_KINDS)}")
            elif item.ts_ms < 0 or item.ts_ms > now + 300_000:
                results[i] = ItemResult(i, REFUSED, f"outcomes[{i}].time", "is in the future")
            else:
                candidates.append((i, item))
        for i in range(MAX_BATCH, len(items)):
            results[i] = ItemResult(i, REFUSED, "outcomes", f"at most {MAX_BATCH} per batch")
        messages = self._messages([item.message_id for _, item in candidates])
        rows: list[dict[str, Any]] = []
        row_index: dict[tuple[str, str], int] = {}
        for i, item in candidates:
            msg = messages.get(item.message_id)
            if msg is None:
                results[i] = ItemResult(i, REFUSED, f"outcomes[{i}].message_id",
                                        "no message with this id was sent")
                continue
            key = (msg["idempotency_key"], item.kind)
            if key in row_index:
                results[i] = ItemResult(i, DUPLICATE)
                continue
            row_index[key] = i
            rows.append({
                "message_key": msg["idempotency_key"], "kind": item.kind,
                "plan_id": msg["plan_id"], "touch_id": msg["touch_id"],
                "user_id": msg["user_id"], "channel": msg["channel"],
                "variant": msg["variant"], "arm": msg["arm"], "send_id": msg["id"],
                "ts_ms": item.ts_ms or now, "value": item.value, "event_id": None,
                "source": source[:64], "received_ms": now,
            })
        fresh = self.dialect_insert(rows)
        for key, i in row_index.items():
            results[i] = ItemResult(i, ACCEPTED if key in fresh else DUPLICATE)
        opt_outs = [r for r in rows if (r["message_key"], r["kind"]) in fresh
                    and r["kind"] in OPT_OUT_KINDS]
        if opt_outs:
            self._forward(opt_outs, source)
        return [results[i] for i in range(len(items))]

    def _messages(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Sent messages by idempotency key or vendor id, with their variant, in one query."""
        if not ids:
            return {}
        a = assignments
        query = (
            select(sends.c.id, sends.c.idempotency_key, sends.c.gateway_message_id,
                   sends.c.plan_id, sends.c.touch_id, sends.c.user_id, sends.c.channel,
                   a.c.variant, a.c.arm)
            .select_from(sends.outerjoin(a, and_(a.c.plan_id == sends.c.plan_id,
                                                 a.c.touch_id == sends.c.touch_id,
                                                 a.c.user_id == sends.c.user_id)))
            .where(or_(sends.c.idempotency_key.in_(list(ids)),
                       sends.c.gateway_message_id.in_(list(ids))),
                   sends.c.status == "sent")
        )
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                row = dict(r._mapping)
                row["variant"] = row["variant"] or ""
                row["arm"] = row["arm"] or ""
                out[r.idempotency_key] = row
                if r.gateway_message_id:
                    out.setdefault(r.gateway_message_id, row)
        return out

    def dialect_insert(self, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        """Inserts in one statement; returns the (message, kind) keys that were new."""
        if not rows:
            return set()
        with self.engine.begin() as conn:
            stmt = (dialect_insert(conn, outcomes).on_conflict_do_nothing()
                    .returning(outcomes.c.message_key, outcomes.c.kind))
            return {tuple(r) for r in conn.execute(stmt, rows)}

    def _forward(self, rows: list[dict[str, Any]], source: str) -> None:
        """Sends opt-outs to the profile service now; if it cannot be reached they stay
        marked pending and ``retry_pending_consents`` sends them later (nothing is lost)."""
        by_channel: dict[str, list[int]] = {}
        for r in rows:
            by_channel.setdefault(r["channel"], []).append(r["user_id"])
        external: dict[int, str] = {}
        try:
            for channel, users in by_channel.items():
                external.update({uid: c.external_id for uid, c in
                                 self.directory.contactability(users, channel).items()})
            self.consent.apply([
                ConsentChange(r["user_id"], external.get(r["user_id"], ""), r["channel"],
                              r["kind"], r["ts_ms"], f"delivery:{source}")
                for r in rows])
        except Exception:
            log.exception("opt-outs could not reach the profile service; kept for retry")
            return
        self._mark_applied([(r["message_key"], r["kind"]) for r in rows])

    def _mark_applied(self, keys: list[tuple[str, str]]) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            for kind in {k for _, k in keys}:
                conn.execute(update(outcomes).where(
                    outcomes.c.kind == kind,
                    outcomes.c.message_key.in_([m for m, k in keys if k == kind]),
                ).values(consent_applied_ms=now))

    def retry_pending_consents(self, limit: int = 1000) -> int:
        """Forwards opt-outs that did not reach the profile service yet; returns how many."""
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(outcomes).where(outcomes.c.kind.in_(sorted(OPT_OUT_KINDS)),
                                       outcomes.c.consent_applied_ms.is_(None))
                .order_by(outcomes.c.id).limit(limit))]
        if rows:
            self._forward(rows, "retry")
        return len(rows)


# Signed webhook intake ---------------------------------------------------------------------


class SignatureError(Exception):
    """The webhook's signature is missing, malformed, stale or wrong."""


def verify_signature(secret: bytes, header: str, body: bytes, now_s: float,
                     tolerance_s: int = WEBHOOK_TOLERANCE_S) -> None:
    """Checks ``X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` (the
    scheme the webhook gateway signs with); a timestamp outside the tolerance is a replay."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or not given:
        raise SignatureError("X-Signature must be t=<unix seconds>,v1=<hex hmac>")
    if abs(now_s - int(timestamp)) > tolerance_s:
        raise SignatureError("signature timestamp outside the allowed window")
    if not hmac.compare_digest(sign(secret, timestamp, body), given):
        raise SignatureError("signature does not match")


class WebhookIntake:
    """Vendors' outcome callbacks: a signed JSON body ``{"outcomes": [{"message_id",
    "kind", "time_ms", "value"}]}`` answered with per-item results."""

    def __init__(self, intake: OutcomeIntake, secrets: dict[str, bytes],
                 clock_s: Callable[[], float] = time.time):
        self.intake = intake
        self.secrets = secrets
        self.clock_s = clock_s

    def handle(self, vendor: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        secret = self.secrets.get(vendor)
        if secret is None:
            return 404, {"error": f"unknown vendor {vendor!r}"}
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            verify_signature(secret, lowered.get("x-signature", ""), body, self.clock_s())
        except SignatureError as exc:
            return 401, {"error": str(exc)}
        try:
            payload = json.loads(body)
            items = [OutcomeItem(str(o.get("message_id", "")), str(o.get("kind", "")),
                                 int(o.get("time_ms", 0) or 0),
                                 None if o.get("value") is None else float(o["value"]))
                     for o in payload["outcomes"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return 400, {"error": f"body is not an outcomes batch: {exc}"}
        results = self.intake.report(items, source=f"webhook:{vendor}")
        return 200, {"results": [dataclasses.asdict(r) for r in results]}


def serve_webhook(webhook: WebhookIntake, host: str = "127.0.0.1", port: int = 0,
                  max_body: int = 1 << 20) -> http.server.ThreadingHTTPServer:
    """Serves ``POST /v1/outcomes/<vendor>`` in a background thread; returns the server."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            prefix = "/v1/outcomes/"
            if not self.path.startswith(prefix):
                return self._reply(404, {"error": "not found"})
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_body:
                return self._reply(413, {"error": "body too large"})
            body = self.rfile.read(length)
            status, payload = webhook.handle(self.path[len(prefix):], dict(self.headers), body)
            self._reply(status, payload)

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # access logs go through the service's logger
            log.debug("webhook %s", args)

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="outcome-webhook").start()
    return server


# Conversion attribution --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GoalEvent:
    """An event from the profile service's stream, as attribution needs it."""

    event_id: str
    user_id: int
    event_type: str
    ts_ms: int
    value: float | None = None


def control_key(plan_id: int, touch_id: str, user_id: int) -> str:
    """The stand-in message key of a control-group user (who was sent nothing)."""
    return f"ctl-{plan_id}-{touch_id}-{user_id}"


class Attribution:
    """Turns goal events into conversions of the plans' messages (and control holdouts)."""

    def __init__(self, engine: Engine, window_ms: int = DEFAULT_ATTRIBUTION_WINDOW_MS,
                 rule: str = "last_touch", clock: Callable[[], int] | None = None):
        if rule not in ("last_touch", "first_touch"):
            raise ValueError("attribution rule must be last_touch or first_touch")
        self.engine = engine
        self.window_ms = window_ms
        self.rule = rule
        self.clock = clock or (lambda: int(time.time() * 1000))

    def attribute(self, events: Sequence[GoalEvent]) -> int:
        """Records conversions for a batch of events in three queries and one insert;
        returns how many conversions were new."""
        types = sorted({e.event_type for e in events})
        if not types:
            return 0
        with self.engine.connect() as conn:
            goal_plans: dict[str, list[int]] = {}
            windows: dict[int, int] = {}
            for pid, goal, window_s in conn.execute(
                    select(plans.c.id, plans.c.goal_event, plans.c.attribution_window_s).where(
                        plans.c.goal_event.in_(types), plans.c.deleted_ms.is_(None))):
                goal_plans.setdefault(goal, []).append(pid)
                windows[pid] = window_s * 1000 if window_s else self.window_ms
            relevant = [e for e in events if e.event_type in goal_plans]
            if not relevant:
                return 0
            plan_ids = sorted({p for ps in goal_plans.values() for p in ps})
            users = sorted({e.user_id for e in relevant})
            lo = min(e.ts_ms for e in relevant) - max(windows.values())
            hi = max(e.ts_ms for e in relevant)
            a = assignments
            sent = conn.execute(
                select(sends.c.id, sends.c.plan_id, sends.c.touch_id, sends.c.user_id,
                       sends.c.channel, sends.c.idempotency_key, sends.c.sent_ms,
                       a.c.variant, a.c.arm)
                .select_from(sends.outerjoin(a, and_(a.c.plan_id == sends.c.plan_id,
                                                     a.c.touch_id == sends.c.touch_id,
                                                     a.c.user_id == sends.c.user_id)))
                .where(sends.c.plan_id.in_(plan_ids), sends.c.user_id.in_(users),
                       sends.c.status == "sent", sends.c.sent_ms >= lo,
                       sends.c.sent_ms <= hi)
            ).all()
            held = conn.execute(
                select(a.c.plan_id, a.c.touch_id, a.c.user_id, a.c.assigned_ms)
                .where(a.c.plan_id.in_(plan_ids), a.c.user_id.in_(users),
                       a.c.arm == "control", a.c.assigned_ms >= lo, a.c.assigned_ms <= hi)
            ).all()
        touches_by: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for r in sent:
            touches_by.setdefault((r.plan_id, r.user_id), []).append({
                "key": r.idempotency_key, "touch_id": r.touch_id, "at": r.sent_ms,
                "channel": r.channel, "variant": r.variant or "", "arm": r.arm or "",
                "send_id": r.id})
        for r in held:
            touches_by.setdefault((r.plan_id, r.user_id), []).append({
                "key": control_key(r.plan_id, r.touch_id, r.user_id), "touch_id": r.touch_id,
                "at": r.assigned_ms, "channel": "", "variant": "", "arm": "control",
                "send_id": None})
        now = self.clock()
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for e in sorted(relevant, key=lambda e: e.ts_ms):
            for pid in goal_plans[e.event_type]:
                window = [t for t in touches_by.get((pid, e.user_id), ())
                          if e.ts_ms - windows[pid] <= t["at"] <= e.ts_ms]
                if not window:
                    continue
                pick = (max if self.rule == "last_touch" else min)(window, key=lambda t: t["at"])
                rows.setdefault((pick["key"], "converted"), {
                    "message_key": pick["key"], "kind": "converted", "plan_id": pid,
                    "touch_id": pick["touch_id"], "user_id": e.user_id,
                    "channel": pick["channel"], "variant": pick["variant"], "arm": pick["arm"],
                    "send_id": pick["send_id"], "ts_ms": e.ts_ms, "value": e.value,
                    "event_id": e.event_id, "source": "attribution", "received_ms": now,
                })
        if not rows:
            return 0
        with self.engine.begin() as conn:
            stmt = dialect_insert(conn, outcomes).on_conflict_do_nothing().returning(outcomes.c.id)
            return len(conn.execute(stmt, list(rows.values())).all())
