"""Event triggers: touches fired by profile events or segment entries, with durable Redis timers.

Trigger kinds:

- ``event``: when the user does A (``event_type``), optionally after ``delay_s``;
- ``event_not_followed``: when the user does A and then not B (``not_event_type``) within
  ``within_s``; with ``correlate_on`` set, only a B whose property of that name equals A's
  cancels (the payment of *that* order);
- ``segment_entered``: when the user enters ``segment``.

``filters`` compare properties of A (``eq ne gt gte lt lte in exists``).

Redis keys (all prefixed ``delivery:trg:``):

- ``delivery:trg:due`` - sorted set, timer id -> due instant (epoch ms);
- ``delivery:trg:inflight`` - sorted set, timer id -> lease end of a fired timer whose send is
  in progress; a worker that dies leaves it to be fired again after the lease (the send ledger
  makes the second attempt a no-op);
- ``delivery:trg:timers`` - hash, timer id -> JSON (plan, touch, user, event, A's instant,
  the cancel deadline and the correlation value);
- ``delivery:trg:user:{u:<user id>}`` - set of the user's pending timer ids, so a B event
  finds what it cancels (per-user keys, like the one below, reach the scripts as arguments);
- ``delivery:trg:done`` - sorted set, timer id -> when it fired or was cancelled, kept for
  ``DONE_RETENTION_MS``: a redelivered A event finds its timer done and makes no new one (a
  user who paid is not reminded because the order event came round again);
- ``delivery:trg:b:{u:<user id>}`` - sorted set of the B events the user did, member = JSON
  ``[not_key, correlation value, event id]``, score = B's instant (epoch ms). ``profile:events``
  is not strictly ordered: an event left unannounced by a crash or a Redis outage is announced
  again at least ``PROFILE_ANNOUNCE_GRACE_SECONDS`` after its commit, so an A can arrive after
  its B. The A then finds its B here (same not_key, same correlation or none on the A, and
  ``a_ts <= b_ts < deadline``) and its timer is marked done instead of armed. Members are kept
  ``B_RETENTION_MS`` past their own instant and the key expires that long after its last B;
  at most ``B_MAX_PER_USER`` (the latest) are kept. Since ``a_ts <= b_ts``, an A still
  missing when its B is dropped is more than ``B_RETENTION_MS`` late, far past the
  re-announcement lag (the grace plus an outage).

Timer ids are ``<plan>:<touch>:<event id>``: a redelivered A event cannot make a second timer.
Timers live in Redis (persisted with the server's AOF/RDB), so they survive service restarts;
scripts run atomically, so two workers never fire one timer twice.

Streams are read with the consumer group ``delivery-triggers`` (at-least-once): a batch is
acknowledged after its timers are stored and its immediate sends are in the ledger; entries a
dead consumer left pending are claimed after ``claim_idle_ms``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine

from services.common.errors import InvalidArgument, NotFound
from services.common.streams import consume_until
from services.delivery import model
from services.delivery.core import DeliveryCore, Funnel
from services.delivery.store import dialect_insert
from services.delivery.tables_effects import triggers as triggers_table

log = logging.getLogger(__name__)

EVENTS_STREAM = "profile:events"
MEMBERSHIP_STREAM = "segment:membership"
GROUP = "delivery-triggers"
KINDS = ("event", "event_not_followed", "segment_entered")
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists")
DUE_KEY = "delivery:trg:due"
INFLIGHT_KEY = "delivery:trg:inflight"
TIMERS_KEY = "delivery:trg:timers"
DONE_KEY = "delivery:trg:done"
DONE_RETENTION_MS = 30 * 86_400_000
# How long a B event stays recorded for an A that arrives after it, and how many per user.
B_RETENTION_MS = DONE_RETENTION_MS
B_MAX_PER_USER = 1000
TRIGGER_OCCURRENCE = "trigger"


def user_key(user_id: int) -> str:
    return f"delivery:trg:user:{{u:{user_id}}}"


def b_key(user_id: int) -> str:
    """The user's recorded B events; same hash tag as ``user_key``."""
    return f"delivery:trg:b:{{u:{user_id}}}"


@dataclasses.dataclass(frozen=True)
class PropertyFilter:
    """A condition on a property of the triggering event."""

    property: str
    op: str
    value: Any = None

    def matches(self, props: dict[str, Any]) -> bool:
        if self.op == "exists":
            return self.property in props
        if self.property not in props:
            return False
        have = props[self.property]
        if self.op == "in":
            return have in self.value
        if self.op == "eq":
            return have == self.value
        if self.op == "ne":
            return have != self.value
        try:
            have, want = float(have), float(self.value)
        except (TypeError, ValueError):
            return False
        return {"gt": have > want, "gte": have >= want, "lt": have < want,
                "lte": have <= want}[self.op]


@dataclasses.dataclass(frozen=True)
class TriggerSpec:
    kind: str
    event_type: str = ""
    not_event_type: str = ""
    within_s: int = 0
    correlate_on: str = ""
    segment: str = ""
    delay_s: int = 0
    filters: tuple[PropertyFilter, ...] = ()

    @staticmethod
    def from_dict(data: dict[str, Any]) -> TriggerSpec:
        fields = {k: v for k, v in data.items() if k != "filters"}
        return TriggerSpec(filters=tuple(PropertyFilter(**f) for f in data.get("filters", ())),
                           **fields)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_trigger(spec: TriggerSpec, plan: model.PlanSpec, touch_id: str,
                     prefix: str = "trigger") -> list[tuple[str, str]]:
    """Save-time checks; returns field violations."""
    if spec.kind not in KINDS:
        return [(f"{prefix}.kind", f"must be one of {', '.join(KINDS)}")]
    errors: list[tuple[str, str]] = []
    if touch_id not in {t.touch_id for t in plan.touches}:
        errors.append((f"{prefix}.touch_id", f"the plan has no touch {touch_id!r}"))
    if spec.kind == "segment_entered":
        if not spec.segment:
            errors.append((f"{prefix}.segment", "is required for a segment_entered trigger"))
    elif not spec.event_type:
        errors.append((f"{prefix}.event_type", "is required"))
    if spec.kind == "event_not_followed":
        if not spec.not_event_type:
            errors.append((f"{prefix}.not_event_type", "is required for event_not_followed"))
        if spec.within_s <= 0:
            errors.append((f"{prefix}.within", "must be positive"))
    duration_s = (plan.end_ms - plan.start_ms) / 1000
    if spec.within_s > duration_s:
        errors.append((f"{prefix}.within", "is longer than the plan"))
    if spec.delay_s < 0:
        errors.append((f"{prefix}.delay", "must not be negative"))
    elif spec.delay_s > duration_s:
        errors.append((f"{prefix}.delay", "is longer than the plan"))
    for i, f in enumerate(spec.filters):
        if not f.property:
            errors.append((f"{prefix}.filters[{i}].property", "is required"))
        if f.op not in OPERATORS:
            errors.append((f"{prefix}.filters[{i}].op", f"must be one of {', '.join(OPERATORS)}"))
        elif f.op == "in" and not isinstance(f.value, (list, tuple)):
            errors.append((f"{prefix}.filters[{i}].value", "must be a list for 'in'"))
    return errors


@dataclasses.dataclass(frozen=True)
class Event:
    """One entry of ``profile:events`` or ``segment:membership``."""

    event_id: str
    user_id: int
    event_type: str
    ts_ms: int
    properties: dict[str, Any]
    segment: str = ""


def parse_entry(stream: str, entry_id: str, fields: dict[str, str]) -> Event | None:
    try:
        if stream == MEMBERSHIP_STREAM:
            change = fields.get("change") or fields.get("action") or ""
            if change != "entered":
                return None
            return Event(fields.get("event_id") or f"seg-{entry_id}", int(fields["user_id"]),
                         "", int(fields.get("ts_ms") or entry_id.split("-")[0]), {},
                         segment=fields.get("segment", ""))
        return Event(fields["event_id"], int(fields["user_id"]), fields["event_type"],
                     int(fields["ts_ms"]), json.loads(fields.get("properties") or "{}"))
    except (KeyError, ValueError) as exc:
        log.warning("unreadable %s entry %s skipped: %s", stream, entry_id, exc)
        return None


# Scripts -----------------------------------------------------------------------------------

# Applies a batch of timer operations in stream order. ARGV: n, then per op one of
#   "add", id, due, user, payload                  a timer (event and segment triggers);
#   "expect", id, due, user, payload, b set         an event_not_followed timer: marked done
#                                                   instead when the user's B set already
#                                                   holds its B (the A arrived after its B);
#   "cancel", user, b_ts, not_key, correlation, b set, b member, keep_from, max_kept, ttl_ms
#                                                   removes the user's timers waiting for that
#                                                   B whose window holds b_ts, and records the
#                                                   B (members scored before keep_from and all
#                                                   but the latest max_kept are dropped).
OPS_SCRIPT = """
local n = tonumber(ARGV[1])
local a = 2
local added, cancelled, suppressed = 0, 0, 0
local function b_seen(bset, t)
  local lo, hi = string.format('%.0f', t.a_ts), string.format('(%.0f', t.deadline)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', bset, lo, hi)) do
    local b = cjson.decode(m)
    if b[1] == t.not_key and (t.corr == '' or t.corr == b[2]) then return true end
  end
  return false
end
for i = 1, n do
  local op = ARGV[a]
  if op == 'add' or op == 'expect' then
    local id, due, ukey, payload = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
    if not redis.call('ZSCORE', KEYS[4], id) then
      local t = op == 'expect' and cjson.decode(payload)
      if t and b_seen(ARGV[a + 5], t) then
        if not redis.call('HGET', KEYS[3], id) then
          redis.call('ZADD', KEYS[4], t.deadline, id)
          suppressed = suppressed + 1
        end
      elseif redis.call('HSETNX', KEYS[3], id, payload) == 1 then
        redis.call('ZADD', KEYS[1], due, id)
        redis.call('SADD', ukey, id)
        added = added + 1
      end
    end
    a = a + (op == 'add' and 5 or 6)
  else
    local ukey, bts, bkey, corr = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4]
    for _, id in ipairs(redis.call('SMEMBERS', ukey)) do
      local raw = redis.call('HGET', KEYS[3], id)
      if not raw then
        redis.call('SREM', ukey, id)
      else
        local t = cjson.decode(raw)
        if t.not_key == bkey and t.a_ts <= bts and bts < t.deadline
           and (t.corr == '' or t.corr == corr)
           and redis.call('ZSCORE', KEYS[1], id) then
          redis.call('ZREM', KEYS[1], id)
          redis.call('HDEL', KEYS[3], id)
          redis.call('SREM', ukey, id)
          redis.call('ZADD', KEYS[4], t.deadline, id)
          cancelled = cancelled + 1
        end
      end
    end
    local bset, keep_from, max_kept = ARGV[a + 5], ARGV[a + 7], tonumber(ARGV[a + 8])
    redis.call('ZADD', bset, bts, ARGV[a + 6])
    redis.call('ZREMRANGEBYSCORE', bset, '-inf', '(' .. keep_from)
    redis.call('ZREMRANGEBYRANK', bset, 0, -max_kept - 1)
    redis.call('PEXPIRE', bset, ARGV[a + 9])
    a = a + 10
  end
end
return {added, cancelled, suppressed}
"""

# Takes up to ARGV[2] timers due by ARGV[1] (and fired timers whose lease ran out), moves them
# to the in-flight set with a lease, and returns (id, payload) pairs.
CLAIM_SCRIPT = """
local now, limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
local more = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - #ids)
for _, id in ipairs(more) do ids[#ids + 1] = id end
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
  if raw then
    redis.call('ZADD', KEYS[2], now + lease, id)
    out[#out + 1] = id
    out[#out + 1] = raw
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
"""

# Forgets fired timers once their sends are in the ledger.
ACK_SCRIPT = """
local now = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('SREM', ARGV[i + 1], ARGV[i])
  redis.call('ZADD', KEYS[3], now, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[2]))
return (#ARGV - 2) / 2
"""


@dataclasses.dataclass(frozen=True)
class Fire:
    """A touch to send to one user because of one event (the ledger's occurrence)."""

    plan_id: int
    touch_id: str
    user_id: int
    event_id: str


def occurrence_key(event_id: str) -> str:
    """The ledger occurrence of a triggered send: the triggering event (hashed when long)."""
    key = f"evt-{event_id}"
    return key if len(key) <= 64 else "evt-" + hashlib.sha256(event_id.encode()).hexdigest()[:56]


class TriggeredSender:
    """Sends triggered touches through the delivery core: the plan gate, the send ledger
    (occurrence = the triggering event, so a redelivered event sends nothing new), the guards
    (consent, device flags, quiet hours, caps, priority) and the gateways; plus the touch's
    experiment (variant and control group) when it has one."""

    def __init__(self, core: DeliveryCore, experiments=None, lease_ms: int = 30_000):
        self.core = core
        self.store = core.store
        # Experiments live in the core (one store); the argument is kept for callers that
        # built their own on the same database.
        self.experiments = experiments or core.experiments
        self.lease_ms = lease_ms
        self._occ_ids: dict[tuple[int, str], int] = {}

    def _container(self, plan: model.Plan, touch: model.Touch):
        """The one occurrence row that holds a touch's triggered sends. It is created done and
        due after the plan ends, so the scheduler never fans it out to the touch's audience;
        deferred and retrying rows under it are still picked up by ``process_due``."""
        key = (plan.id, touch.touch_id)
        occ_id = self._occ_ids.get(key)
        if occ_id is None:
            occ_id = self.store.ensure_occurrence(plan, touch, TRIGGER_OCCURRENCE,
                                                  plan.spec.end_ms + 1, None)
            self.store.set_occurrence_state(occ_id, "done")
            self._occ_ids[key] = occ_id
        return self.store.occurrence(occ_id)

    def _claim(self, occ, fires: Sequence[Fire]) -> list[tuple[int, int]]:
        """Ledger rows for (user, event) pairs not seen before, in one insert; returns
        (send id, user id) of the rows this call created."""
        return self.store.claim_keyed(
            occ, [(f.user_id, occurrence_key(f.event_id)) for f in fires],
            self.core.worker_id, self.lease_ms)

    def send(self, fires: Sequence[Fire]) -> Funnel:
        """Sends a batch of fires; one ledger insert and one guarded batch per touch."""
        funnel = Funnel()
        by_touch: dict[tuple[int, str], list[Fire]] = {}
        for f in fires:
            by_touch.setdefault((f.plan_id, f.touch_id), []).append(f)
        for (plan_id, touch_id), group in by_touch.items():
            try:
                plan = self.store.get_plan(plan_id)
                touch = plan.touch(touch_id)
            except NotFound:
                funnel.remove("plan_deleted", len(group))
                continue
            if plan.state not in model.SENDABLE_STATES or not plan.approved:
                funnel.remove("plan_not_sendable", len(group))
                continue
            if self.store.clock() > plan.spec.end_ms:
                funnel.remove("plan_ended", len(group))
                continue
            occ = self._container(plan, touch)
            claimed = self._claim(occ, group)
            funnel.audience += len(claimed)
            if claimed:
                funnel.add(self._send_claimed(plan, touch, occ, claimed))
        return funnel

    def _send_claimed(self, plan, touch, occ, claimed) -> Funnel:
        # Triggered sends cannot wait for a race winner (the moment passes): users outside
        # the exploration slice get the current leader.
        return self.core.process_claimed(plan, touch, occ, claimed, pending_to_leader=True)


@dataclasses.dataclass(frozen=True)
class Definition:
    plan_id: int
    touch_id: str
    spec: TriggerSpec


class TriggerEngine:
    """Consumes the event streams, keeps timers, and fires triggered touches."""

    def __init__(self, engine: Engine, client: redis.Redis, sender: TriggeredSender,
                 clock: Callable[[], int] | None = None, consumer: str = "",
                 batch: int = 500, lease_ms: int = 60_000, claim_idle_ms: int = 30_000,
                 refresh_s: float = 5.0):
        self.engine = engine
        self.redis = client
        self.sender = sender
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.lease_ms = lease_ms
        self.claim_idle_ms = claim_idle_ms
        self.refresh_s = refresh_s
        self._ops = client.register_script(OPS_SCRIPT)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._ack = client.register_script(ACK_SCRIPT)
        self._defs: list[Definition] = []
        self._loaded_at: float | None = None  # None: load on next use
        self._ensure_groups()

    # Definitions ---------------------------------------------------------------------------

    def save(self, plan: model.Plan, touch_id: str, spec: TriggerSpec) -> None:
        """Validates and stores a touch's trigger; raises InvalidArgument naming the field."""
        errors = validate_trigger(spec, plan.spec, touch_id)
        if errors:
            raise InvalidArgument(violations=errors)
        with self.engine.begin() as conn:
            stmt = dialect_insert(conn, triggers_table).values(
                plan_id=plan.id, touch_id=touch_id, spec=spec.to_dict(), updated_ms=self.clock())
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[triggers_table.c.plan_id, triggers_table.c.touch_id],
                set_={"spec": spec.to_dict(), "updated_ms": self.clock()}))
        self._loaded_at = None

    def definitions(self) -> list[Definition]:
        """Triggers of plans that may send, reloaded every ``refresh_s`` seconds."""
        # The monotonic clock counts from boot: "never loaded" is None, not 0.
        if self._loaded_at is None or time.monotonic() - self._loaded_at > self.refresh_s:
            from services.delivery.tables import plans

            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(triggers_table.c.plan_id, triggers_table.c.touch_id,
                           triggers_table.c.spec)
                    .select_from(triggers_table.join(plans, plans.c.id == triggers_table.c.plan_id))
                    .where(plans.c.state.in_(sorted(model.SENDABLE_STATES)),
                           plans.c.deleted_ms.is_(None))
                ).all()
            self._defs = [Definition(r.plan_id, r.touch_id, TriggerSpec.from_dict(r.spec))
                          for r in rows]
            self._loaded_at = time.monotonic()
        return self._defs

    # Streams -------------------------------------------------------------------------------

    def _ensure_groups(self) -> None:
        for stream in (EVENTS_STREAM, MEMBERSHIP_STREAM):
            try:
                # "0": a new group reads what the stream still holds, so events published
                # before the first start are not missed.
                self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _read(self, block_ms: int) -> list[tuple[str, str, dict[str, str]]]:
        entries: list[tuple[str, str, dict[str, str]]] = []
        for stream in (EVENTS_STREAM, MEMBERSHIP_STREAM):
            # Redis 6.2 answers (cursor, entries), 7 adds the deleted ids: take the entries.
            claimed = self.redis.xautoclaim(stream, GROUP, self.consumer, self.claim_idle_ms,
                                            "0-0", count=self.batch)[1]
            entries += [(stream, _s(i), _decode(f)) for i, f in claimed if f]
        if entries:
            return entries
        reply = self.redis.xreadgroup(GROUP, self.consumer,
                                      {EVENTS_STREAM: ">", MEMBERSHIP_STREAM: ">"},
                                      count=self.batch, block=block_ms or None)
        for stream, items in reply or []:
            entries += [(_s(stream), _s(i), _decode(f)) for i, f in items]
        return entries

    def poll(self, block_ms: int = 0) -> Funnel:
        """Reads one batch of stream entries, stores timers, sends what is due now, acks."""
        entries = self._read(block_ms)
        funnel = Funnel()
        if not entries:
            return funnel
        defs = self.definitions()
        now = self.clock()
        ops: list[str] = []
        n_ops = 0
        fires: list[Fire] = []
        for stream, entry_id, fields in entries:
            event = parse_entry(stream, entry_id, fields)
            if event is None:
                continue
            for d in defs:
                s = d.spec
                if s.kind == "event_not_followed" and event.event_type == s.not_event_type:
                    corr = str(event.properties.get(s.correlate_on, "")) if s.correlate_on else ""
                    member = json.dumps([_not_key(d), corr, event.event_id],
                                        separators=(",", ":"))
                    ops += ["cancel", user_key(event.user_id), str(event.ts_ms), _not_key(d),
                            corr, b_key(event.user_id), member, str(now - B_RETENTION_MS),
                            str(B_MAX_PER_USER), str(B_RETENTION_MS)]
                    n_ops += 1
                if not _matches(s, event):
                    continue
                due = event.ts_ms + (s.within_s + s.delay_s) * 1000
                if s.kind != "event_not_followed" and due <= now:
                    fires.append(Fire(d.plan_id, d.touch_id, event.user_id, event.event_id))
                    continue
                payload = {
                    "plan": d.plan_id, "touch": d.touch_id, "user": event.user_id,
                    "event": event.event_id, "a_ts": event.ts_ms,
                    "deadline": event.ts_ms + s.within_s * 1000,
                    "not_key": _not_key(d) if s.kind == "event_not_followed" else "",
                    "corr": (str(event.properties.get(s.correlate_on, ""))
                             if s.correlate_on else ""),
                }
                timer = [f"{d.plan_id}:{d.touch_id}:{event.event_id}", str(due),
                         user_key(event.user_id), json.dumps(payload, separators=(",", ":"))]
                if s.kind == "event_not_followed":
                    # Its B may have come first (events are not strictly ordered).
                    ops += ["expect", *timer, b_key(event.user_id)]
                else:
                    ops += ["add", *timer]
                n_ops += 1
        if n_ops:
            self._ops(keys=[DUE_KEY, INFLIGHT_KEY, TIMERS_KEY, DONE_KEY], args=[n_ops, *ops])
        if fires:
            funnel.add(self.sender.send(fires))
        pipe = self.redis.pipeline(transaction=False)
        for stream in (EVENTS_STREAM, MEMBERSHIP_STREAM):
            ids = [i for s, i, _ in entries if s == stream]
            if ids:
                pipe.xack(stream, GROUP, *ids)
        pipe.execute()
        return funnel

    # Timers --------------------------------------------------------------------------------

    def fire_due(self, limit: int = 1000) -> Funnel:
        """Fires every timer due by the clock's now, in batches; returns the send funnel."""
        funnel = Funnel()
        while True:
            raw = self._claim(keys=[DUE_KEY, INFLIGHT_KEY, TIMERS_KEY],
                              args=[self.clock(), limit, self.lease_ms])
            if not raw:
                return funnel
            fires, acks = [], []
            for i in range(0, len(raw), 2):
                timer = json.loads(raw[i + 1])
                fires.append(Fire(timer["plan"], timer["touch"], timer["user"], timer["event"]))
                acks += [_s(raw[i]), user_key(timer["user"])]
            funnel.add(self.sender.send(fires))
            self._ack(keys=[INFLIGHT_KEY, TIMERS_KEY, DONE_KEY],
                      args=[self.clock(), DONE_RETENTION_MS, *acks])
            if len(fires) < limit:
                return funnel

    def pending_timers(self) -> int:
        return int(self.redis.zcard(DUE_KEY)) + int(self.redis.zcard(INFLIGHT_KEY))

    def run(self, stop, block_ms: int = 1000) -> None:
        """The worker loop: read events, fire due timers, until ``stop`` is set. After a
        Redis or database outage the groups are created again before reading: a Redis that
        restarted without its data has lost the streams and their groups with them."""

        def once() -> None:
            self.poll(block_ms)
            self.fire_due()

        consume_until(stop, self._ensure_groups, once, log, "trigger")


def _not_key(d: Definition) -> str:
    return f"{d.plan_id}:{d.touch_id}:{d.spec.not_event_type}"


def _matches(spec: TriggerSpec, event: Event) -> bool:
    if spec.kind == "segment_entered":
        if not event.segment or event.segment not in (spec.segment,
                                                      spec.segment.removeprefix("segments/")):
            return False
    elif event.event_type != spec.event_type:
        return False
    return all(f.matches(event.properties) for f in spec.filters)


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(fields: dict) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in fields.items()}
