"""Erasure: deletes what the delivery service holds of an erased user's personal data.

Reads ``profile:erasures`` (fields ``user_id`` (internal), ``external_id``, ``aliases`` (JSON),
``kind`` (erased|deleted|merged), ``erasure_id``, ``ts_ms``) with the consumer group
``delivery-erasures``. For each erased or deleted user, in one transaction of set-based
statements for the whole batch:

- the recording sink's messages (rendered title, body, address) are deleted, found by the
  ledger's idempotency keys and by the external ids the sink stores as recipient;
- the ledger rows are kept (internal id only; caps and exactly-once need them) but their
  ``reason`` is cleared, since a dead letter's reason can quote the gateway's answer about the
  message or address;
- follow-up enrolments become ``dropped`` with nothing due. A deleted enrolment would be
  re-created from the kept ledger on the next pass, so a dropped row is what stops it; users
  sent a follow-up touch but not enrolled yet get a dropped row for the same reason.

Then one Lua call removes the users' pending trigger timers (``delivery:trg:*``, see
``services.delivery.triggers``) and marks them done, so a redelivered event cannot re-create
them, and deletes the B events recorded for them (order ids, event ids). A ``merged`` notice erases nobody: its id was folded into the surviving user.

At least once: the batch is acknowledged after the transaction and the script; every step is
idempotent, so a redelivered notice changes nothing. Entries a dead consumer left pending are
claimed after ``claim_idle_ms``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import redis
from sqlalchemy import and_, literal, or_, select, update
from sqlalchemy.engine import Engine

from services.common.streams import GroupReader, consume_until
from services.delivery.store import dialect_insert
from services.delivery.tables import sends, sink_messages
from services.delivery.tables_effects import followup_rules, followups
from services.delivery.triggers import (
    DONE_KEY,
    DONE_RETENTION_MS,
    DUE_KEY,
    INFLIGHT_KEY,
    TIMERS_KEY,
    b_key,
    user_key,
)

log = logging.getLogger(__name__)

ERASURES_STREAM = "profile:erasures"
GROUP = "delivery-erasures"
ERASING_KINDS = ("erased", "deleted")
KINDS = (*ERASING_KINDS, "merged")

# KEYS: due, inflight, timers, done, then per erased user its timer set and its recorded B
# events. ARGV: now, retention. Every timer of those users leaves the due and in-flight sets
# and the payload hash and is marked done, so the A event coming round again does not make it
# anew; the recorded B events (order ids, event ids) go.
FORGET_TIMERS_SCRIPT = """
local now, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed = 0
for k = 5, #KEYS, 2 do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[k])) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    removed = removed + redis.call('HDEL', KEYS[3], id)
    redis.call('ZADD', KEYS[4], now, id)
  end
  redis.call('DEL', KEYS[k], KEYS[k + 1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
return removed
"""


class ErasureConsumer:
    """Applies erasure notices to the delivery database and the trigger timers."""

    def __init__(self, engine: Engine, client: redis.Redis, consumer: str = "",
                 clock: Callable[[], int] | None = None, batch_size: int = 500,
                 claim_idle_ms: int = 60_000):
        self.engine = engine
        self.redis = client
        self.clock = clock or (lambda: int(time.time() * 1000))
        # Start at "0": notices published before the first start are still applied.
        self.reader = GroupReader(client, ERASURES_STREAM, GROUP, consumer, batch_size,
                                  claim_idle_ms)
        self.consumer = self.reader.consumer
        self._forget = client.register_script(FORGET_TIMERS_SCRIPT)

    def ensure_group(self) -> None:
        self.reader.ensure_group()

    def erase(self, user_ids: set[int], external_ids: set[str]) -> dict[str, int]:
        """Deletes or clears the users' personal data; returns rows and timers touched."""
        if not user_ids:
            return {"sink": 0, "ledger": 0, "followups": 0, "timers": 0}
        ids = sorted(user_ids)
        now = self.clock()
        with self.engine.begin() as conn:
            keys = select(sends.c.idempotency_key).where(sends.c.user_id.in_(ids))
            where = sink_messages.c.idempotency_key.in_(keys)
            if external_ids:
                where = or_(where, sink_messages.c.recipient.in_(sorted(external_ids)))
            sink = conn.execute(sink_messages.delete().where(where)).rowcount or 0
            ledger = conn.execute(
                update(sends).where(sends.c.user_id.in_(ids), sends.c.reason.is_not(None))
                .values(reason=None, updated_ms=now)).rowcount or 0
            dropped = conn.execute(
                update(followups).where(followups.c.user_id.in_(ids),
                                        followups.c.status == "waiting")
                .values(status="dropped", next_due_ms=None, outcome_ms=now,
                        updated_ms=now)).rowcount or 0
            sent = (
                select(sends.c.plan_id, sends.c.touch_id, sends.c.user_id,
                       literal("dropped"), literal(0), literal(now), literal(now), literal(now))
                .select_from(sends.join(followup_rules, and_(
                    followup_rules.c.plan_id == sends.c.plan_id,
                    followup_rules.c.touch_id == sends.c.touch_id)))
                .where(sends.c.user_id.in_(ids), sends.c.status == "sent")
                .distinct()
            )
            dropped += conn.execute(
                dialect_insert(conn, followups).from_select(
                    ["plan_id", "touch_id", "user_id", "status", "attempts", "enrolled_ms",
                     "outcome_ms", "updated_ms"], sent).on_conflict_do_nothing()
            ).rowcount or 0
        timers = self._forget(keys=[DUE_KEY, INFLIGHT_KEY, TIMERS_KEY, DONE_KEY,
                                    *[key for u in ids for key in (user_key(u), b_key(u))]],
                              args=[now, DONE_RETENTION_MS])
        return {"sink": sink, "ledger": ledger, "followups": dropped, "timers": int(timers)}

    def poll_once(self, block_ms: int = 1000) -> int:
        """Reads one batch, erases its users, acknowledges; returns the entries handled."""
        entries = self.reader.read(block_ms)
        if not entries:
            return 0
        user_ids: set[int] = set()
        external_ids: set[str] = set()
        for entry_id, fields in entries:
            kind = fields.get("kind")
            if kind not in KINDS:
                log.warning("erasure notice of unknown kind %r skipped (%s)", kind, entry_id)
                continue
            if kind not in ERASING_KINDS:
                continue
            try:
                user_ids.add(int(fields["user_id"]))
                aliases = json.loads(fields.get("aliases") or "[]")
            except (KeyError, ValueError):
                log.warning("unreadable erasure notice %s skipped", entry_id)
                continue
            external_ids.update(e for e in [fields.get("external_id"), *aliases] if e)
        self.erase(user_ids, external_ids)
        self.reader.ack(entries)
        return len(entries)

    def run(self, stop: threading.Event) -> None:
        """Consumes until ``stop`` is set; a Redis or database outage pauses, then retries."""
        consume_until(stop, self.ensure_group, self.poll_once, log, "erasure")
