"""Real-time membership: re-checks users as their events arrive or their profiles change, and
publishes entered/left.

Redis keys (all owned by the segment service):
- ``profile:events`` (read): the profile service's event stream, read by consumer group
  ``segment``.
- ``profile:changes`` (read): the profile service's announcements of other changes to a user
  (attributes, tags, traits, scores, consent, identity), read by the same consumer group: a
  rule like ``age >= 30 and tag vip`` must not wait for the user's next event.
- ``segment:{s<id>}:members``: a set of the internal ids currently in real-time segment <id>
  (the hash tag keeps one segment's key on one Redis Cluster shard).
- ``segment:membership``: a stream of changes with fields ``segment`` (segments/<id>),
  ``segment_id``, ``user_id`` (internal), ``external_id``, ``change`` (entered|left) and
  ``ts_ms``; capped at about ``SEGMENT_MEMBERSHIP_MAXLEN`` entries.
- ``segment:{s<id>}:reconcile:<period>``: held (SET NX PX, the period's length) by the
  replica that reconciles real-time segment <id> in that period of
  ``SEGMENT_REALTIME_RECONCILE_SECONDS`` (``<period>`` is the instant divided by the period),
  so one replica per period evaluates the segment in full.

Membership also changes with time alone (a window passes a user by, a tag lapses, a sequence
deadline passes) with no event or profile change to announce it; the periodic reconcile
catches those up.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from services.common.errors import InvalidArgument, Unavailable, translate
from services.common.streams import consume_until
from services.segment.core import SegmentCore
from services.segment.text import parse_rule

log = logging.getLogger("marketing.segment.realtime")

EVENTS_STREAM = "profile:events"
CHANGES_STREAM = "profile:changes"
# Both announce users whose membership may have changed; each entry carries ``user_id``.
STREAMS = (EVENTS_STREAM, CHANGES_STREAM)
GROUP = "segment"
MEMBERSHIP_STREAM = "segment:membership"
# Ids written to Redis per command when a segment's membership is loaded in full.
FILL_CHUNK = 10_000

# Removes ARGV's ids from the live set KEYS[1]. A set whose last member goes is deleted by
# Redis, and a missing set means "not loaded" (checks fall back to the snapshot); so when this
# removal empties a set that was there, the sentinel -1 keeps it loaded and empty. A set that
# was not there stays missing. Returns how many ids were members.
REMOVE_LUA = """
local removed = 0
for _, id in ipairs(ARGV) do
  removed = removed + redis.call('SREM', KEYS[1], id)
end
if removed > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SADD', KEYS[1], -1)
end
return removed
"""


def members_key(segment_id: int) -> str:
    return f"segment:{{s{segment_id}}}:members"


def reconcile_lock_key(segment_id: int, period: int) -> str:
    """The lock on reconciling segment <id> in period number ``period``."""
    return f"segment:{{s{segment_id}}}:reconcile:{period}"


class RealtimeMembership:
    """Consumes ``profile:events`` and ``profile:changes`` in batches: one SQL statement per
    real-time segment per batch of users, one pipelined round trip for current membership and
    one for the changes."""

    def __init__(self, core: SegmentCore, client: redis.Redis, consumer: str = "segment-1",
                 batch_size: int = 500, maxlen: int = 1_000_000, segments_ttl_s: float = 5.0):
        self.core = core
        self.redis = client
        self.consumer = consumer
        self.batch_size = batch_size
        self.maxlen = maxlen
        self.segments_ttl_s = segments_ttl_s
        self._segments: list[tuple[int, object]] = []
        # When the segments were last read (monotonic seconds); None: never, or forgotten.
        self._segments_loaded: float | None = None
        self._pending_checked = False
        self._remove = client.register_script(REMOVE_LUA)  # see REMOVE_LUA

    def ensure_group(self) -> None:
        for stream in STREAMS:
            try:
                self.redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def segments(self) -> list[tuple[int, object]]:
        """The real-time segments and their rules, re-read every few seconds."""
        loaded = self._segments_loaded
        if loaded is None or time.monotonic() - loaded > self.segments_ttl_s:
            self._segments = self._read_segments()
            self._segments_loaded = time.monotonic()
        return self._segments

    def _read_segments(self) -> list[tuple[int, object]]:
        return [(row["id"], parse_rule(row["rule_text"]))
                for row in self.core.store.realtime_segments()]

    def forget_segments(self) -> None:
        self._segments_loaded = None

    def initialize(self, segment_id: int, now_ms: int | None = None) -> int:
        """Loads a segment's full current membership without publishing changes."""
        rule = self.core.get(segment_id).rule
        members = self.core.evaluate(rule, self.core.now_ms() if now_ms is None else now_ms)
        return self._fill(segment_id, members)

    def _fill(self, segment_id: int, members) -> int:
        """Replaces a segment's live set with ``members``, in one transaction."""
        key = members_key(segment_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        ids = list(members)
        for start in range(0, len(ids), FILL_CHUNK):
            pipe.sadd(key, *ids[start:start + FILL_CHUNK])
        if not ids:
            # An empty set does not exist in Redis; a sentinel marks the segment as loaded.
            pipe.sadd(key, -1)
        pipe.execute()
        return len(ids)

    def check(self, segment_id: int, external_id: str) -> tuple[int | None, bool] | None:
        """(internal id, member) from a real-time segment's live set, in one round trip.

        None when the segment is not real-time or its set is not loaded yet (or Redis cannot
        answer): the caller then answers from the latest snapshot.
        """
        if not external_id:
            raise InvalidArgument("external_id", "must not be empty")
        if not self.core.get(segment_id).realtime:
            return None
        uid = self.core.user_id(external_id)
        key = members_key(segment_id)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.exists(key)
            pipe.sismember(key, -1 if uid is None else uid)
            loaded, member = pipe.execute()
        except redis.RedisError:
            log.warning("live membership unavailable; answering from the snapshot",
                        extra={"segment_id": segment_id})
            return None
        if not loaded:
            return None
        return uid, uid is not None and bool(member)

    def drop(self, segment_id: int) -> None:
        self.redis.delete(members_key(segment_id))

    def recheck(self, user_ids, now_ms: int | None = None) -> list[dict]:
        """Re-evaluates every real-time segment for ``user_ids``; publishes and returns changes."""
        ids = sorted({int(u) for u in user_ids})
        if not ids:
            return []
        now = self.core.now_ms() if now_ms is None else now_ms
        segments = self.segments()
        if not segments:
            return []
        keys = [members_key(sid) for sid, _ in segments]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
            pipe.smismember(key, ids)
        replies = pipe.execute()
        changes: list[tuple[int, int, str]] = []
        for index, (segment_id, rule) in enumerate(segments):
            try:
                if not replies[2 * index]:
                    self.initialize(segment_id, now)
                    continue
                matched = self.core.among(rule, ids, now)
            except Exception as exc:
                if isinstance(exc, redis.RedisError) or isinstance(translate(exc), Unavailable):
                    raise  # an outage: the batch stays unacknowledged and is read again
                # This segment's rule alone fails (a field since removed from the catalogue,
                # say): the other segments still follow their users.
                log.exception("real-time re-check of a segment failed",
                              extra={"segment_id": segment_id})
                continue
            current = {uid for uid, flag in zip(ids, replies[2 * index + 1]) if flag}
            changes.extend((segment_id, uid, "entered") for uid in sorted(matched - current))
            changes.extend((segment_id, uid, "left") for uid in sorted(current - matched))
        if not changes:
            return []
        external = dict(self.core.external_ids(sorted({uid for _, uid, _ in changes})))
        published = []
        pipe = self.redis.pipeline(transaction=True)
        remove = self._remove
        for segment_id, uid, change in changes:
            key = members_key(segment_id)
            if change == "entered":
                pipe.sadd(key, uid)
            else:
                remove(keys=[key], args=[uid], client=pipe)
            event = {"segment": f"segments/{segment_id}", "segment_id": str(segment_id),
                     "user_id": str(uid), "external_id": external.get(uid, ""),
                     "change": change, "ts_ms": str(now)}
            pipe.xadd(MEMBERSHIP_STREAM, event, maxlen=self.maxlen, approximate=True)
            published.append(event)
        pipe.execute()
        return published

    def reconcile(self, segment_id: int, members, now_ms: int, rule=None) -> list[dict]:
        """Publishes the changes between the live set and a full evaluation (``members``), for
        users who moved without an event (a window passed them by).

        The evaluation took time, and the live set read afterwards may already hold a newer
        re-check (an event's, on this replica or another): with ``rule``, the users that
        differ are evaluated once more, now, and only a difference that still holds is
        applied, so a user who just entered is not taken out by an older evaluation."""
        key = members_key(segment_id)
        current = {int(m) for m in self.redis.smembers(key)} - {-1}
        fresh = set(members)
        entered, left = sorted(fresh - current), sorted(current - fresh)
        if rule is not None and (entered or left):
            confirmed = self.core.among(rule, entered + left, self.core.now_ms())
            entered = [u for u in entered if u in confirmed]
            left = [u for u in left if u not in confirmed]
            fresh = (current | set(entered)) - set(left)
        if not entered and not left:
            return []
        external = dict(self.core.external_ids(entered + left))
        pipe = self.redis.pipeline(transaction=True)
        if not fresh:
            # Removing the last member would delete the set, and an absent set sends
            # membership checks back to a snapshot that may still list the users.
            pipe.sadd(key, -1)
        published = []
        for uids, change in ((entered, "entered"), (left, "left")):
            for start in range(0, len(uids), FILL_CHUNK):
                chunk = uids[start:start + FILL_CHUNK]
                (pipe.sadd if change == "entered" else pipe.srem)(key, *chunk)
            for uid in uids:
                event = {"segment": f"segments/{segment_id}", "segment_id": str(segment_id),
                         "user_id": str(uid), "external_id": external.get(uid, ""),
                         "change": change, "ts_ms": str(now_ms)}
                pipe.xadd(MEMBERSHIP_STREAM, event, maxlen=self.maxlen, approximate=True)
                published.append(event)
        pipe.execute()
        return published

    def reconcile_due(self, period_ms: int, now_ms: int | None = None) -> dict[int, list[dict]]:
        """One periodic pass: evaluates in full each real-time segment no replica has
        reconciled in the current period yet, and publishes what time alone changed.

        Returns the segments this replica reconciled, each with the changes it published. A
        segment whose set is not loaded is loaded without publishing, as a re-check does. On
        a failure the segment's lock is given back, so the retry (or another replica) takes
        it again in the same period.
        """
        period = (self.core.now_ms() if now_ms is None else now_ms) // period_ms
        done: dict[int, list[dict]] = {}
        # Read afresh: a pass every few minutes can afford it, and a segment deleted or made
        # batch-only since the consumer's last read must not be filled again.
        for segment_id, rule in self._read_segments():
            lock = reconcile_lock_key(segment_id, period)
            if not self.redis.set(lock, self.consumer, nx=True, px=period_ms):
                continue
            # Each segment at its own instant: the ones before it took time.
            now = self.core.now_ms() if now_ms is None else now_ms
            try:
                done[segment_id] = self._reconcile_segment(segment_id, rule, now)
            except redis.RedisError:
                raise  # an outage: the loop pauses and retries; the lock lapses with the period
            except Exception as exc:
                self.redis.delete(lock)
                if isinstance(translate(exc), Unavailable):
                    raise  # the database is away: the loop pauses and retries
                # This segment alone (a field since removed from the catalogue, say): the
                # others are still reconciled, and this one is tried again next period.
                log.exception("real-time reconcile of a segment failed",
                              extra={"segment_id": segment_id})
        return done

    def _reconcile_segment(self, segment_id: int, rule, now_ms: int) -> list[dict]:
        members = self.core.evaluate(rule, now_ms)
        if not self.redis.exists(members_key(segment_id)):
            self._fill(segment_id, members)
            return []
        return self.reconcile(segment_id, members, now_ms, rule)

    def run_reconciler(self, stop: threading.Event, period_s: float) -> None:
        """Reconciles every ``period_s`` seconds until ``stop`` is set; a Redis or database
        outage pauses, then retries (segments already done this period stay done)."""
        period_ms = max(1, int(period_s * 1000))

        def one_pass() -> None:
            self.reconcile_due(period_ms)
            stop.wait(period_s)

        consume_until(stop, lambda: None, one_pass, log, "real-time reconcile")

    def poll_once(self, block_ms: int = 1000) -> int:
        """Reads one batch from both streams (first any left unacknowledged by a crash),
        re-checks the users they name together, acks."""
        replies = []
        if not self._pending_checked:
            replies = self.redis.xreadgroup(GROUP, self.consumer, dict.fromkeys(STREAMS, "0"),
                                            count=self.batch_size) or []
            self._pending_checked = not any(entries for _, entries in replies)
        if not any(entries for _, entries in replies):
            replies = self.redis.xreadgroup(GROUP, self.consumer, dict.fromkeys(STREAMS, ">"),
                                            count=self.batch_size, block=block_ms) or []
        users = set()
        for _, entries in replies:
            for _, fields in entries:
                raw = fields.get(b"user_id") or fields.get("user_id")
                try:
                    users.add(int(raw))
                except (TypeError, ValueError):
                    log.warning("entry without a usable user_id", extra={"fields": str(fields)})
        if users:
            self.recheck(users)
        read = 0
        for stream, entries in replies:
            if entries:
                self.redis.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
                read += len(entries)
        return read

    def run(self, stop: threading.Event) -> None:
        """Consumes until ``stop`` is set; a Redis or database outage pauses, then retries."""
        consume_until(stop, self.ensure_group, self.poll_once, log, "real-time membership")
