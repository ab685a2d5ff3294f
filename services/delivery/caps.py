"""Frequency caps in Redis: one atomic Lua call checks and counts a whole batch of users.

Redis keys (all prefixed ``delivery:``):

- ``delivery:cap:{u:<user id>}:<rule>`` - sorted set for a rolling-window rule; members are
  send-ledger ids, scores the instant the slot was taken (epoch ms). Trimmed on every check,
  expires one window after the last send.
- ``delivery:cap:{u:<user id>}:<rule>:<bucket>`` - sorted set for a calendar rule; the bucket
  is the user's local day (``d20250105``) or ISO week (``w2025W01``); expires a day after the
  bucket ends.
- ``delivery:caps:ready`` - present once the counters are complete (rebuilt from the ledger).
  Redis losing its data loses this key too, so every check fails closed until a rebuild.
- ``delivery:caps:rebuild_lock`` - held by the one process rebuilding the counters.
- ``delivery:rate:<plan>:<touch>:<second>`` - sends granted in one second toward a channel.

The ``{u:<id>}`` hash tag keeps one user's keys on one Redis Cluster slot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
import zoneinfo
from collections.abc import Iterable, Sequence
from functools import lru_cache

import redis
from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Engine

from services.common.errors import Unavailable
from services.delivery.tables import sends

READY_KEY = "delivery:caps:ready"
REBUILD_LOCK_KEY = "delivery:caps:rebuild_lock"
DAY_MS = 86_400_000

# Result codes of the batch script, per user.
ALLOWED = 0


@dataclasses.dataclass(frozen=True)
class CapRule:
    """At most ``limit`` sends in a window, counted over the matching channels and categories.

    ``window`` is ``rolling`` (the last ``seconds``), ``day`` or ``week`` (calendar day or ISO
    week in the user's own time zone). ``channels`` ``("*",)`` counts every channel (a
    per-user cap across channels). Transactional messages are exempt unless listed in
    ``categories``.
    """

    name: str
    limit: int
    window: str = "day"
    seconds: int = 0
    channels: tuple[str, ...] = ("*",)
    categories: tuple[str, ...] = ("marketing",)

    def applies(self, channel: str, category: str) -> bool:
        return category in self.categories and ("*" in self.channels or channel in self.channels)

    @property
    def horizon_ms(self) -> int:
        """How far back a send can still count against this rule."""
        return {"rolling": self.seconds * 1000, "day": 2 * DAY_MS, "week": 8 * DAY_MS}[self.window]


DEFAULT_RULES = (
    CapRule("push_per_day", 2, "day", channels=("push",)),
    CapRule("sms_per_day", 1, "day", channels=("sms",)),
    CapRule("marketing_per_week", 5, "rolling", seconds=7 * 86_400),
)


def parse_rules(raw: str) -> tuple[CapRule, ...]:
    """Rules from JSON (``DELIVERY_FREQUENCY_CAPS``): a list of CapRule field objects."""
    try:
        items = json.loads(raw)
        rules = tuple(
            CapRule(
                name=item["name"], limit=int(item["limit"]), window=item.get("window", "day"),
                seconds=int(item.get("seconds", 0)),
                channels=tuple(item.get("channels", ["*"])),
                categories=tuple(item.get("categories", ["marketing"])),
            )
            for item in items
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"DELIVERY_FREQUENCY_CAPS is not a list of cap rules: {exc}") from exc
    for rule in rules:
        if rule.window not in ("rolling", "day", "week") or rule.limit < 0:
            raise ValueError(f"cap rule {rule.name!r}: bad window or limit")
        if rule.window == "rolling" and rule.seconds <= 0:
            raise ValueError(f"cap rule {rule.name!r}: a rolling window needs seconds")
    return rules


@lru_cache(maxsize=4096)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


@lru_cache(maxsize=65536)
def calendar_bucket(window: str, tz: str, minute: int) -> tuple[str, int]:
    """(bucket label, bucket end in epoch ms) of the local day or ISO week holding ``minute``
    (epoch minutes), in time zone ``tz``. Cached: a batch shares a handful of zones."""
    local = dt.datetime.fromtimestamp(minute * 60, _zone(tz))
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "day":
        end = (day_start + dt.timedelta(days=1)).replace(tzinfo=None)
        label = f"d{local:%Y%m%d}"
    else:
        week_start = day_start - dt.timedelta(days=local.weekday())
        end = (week_start + dt.timedelta(days=7)).replace(tzinfo=None)
        iso = local.isocalendar()
        label = f"w{iso.year}W{iso.week:02d}"
    end_ms = int(end.replace(tzinfo=_zone(tz)).timestamp() * 1000)
    return label, end_ms


@dataclasses.dataclass(frozen=True)
class CapRequest:
    """One user's send to check: ``member`` (the ledger id) is what gets counted."""

    user_id: int
    member: str
    channel: str
    category: str
    time_zone: str
    # Slots held for scheduled higher-priority sends, by rule name.
    reserved: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CapDecision:
    allowed: bool
    reason: str = ""  # "frequency_cap:<rule>" or "outranked"


# One call for a batch. Per user: check every applicable cap (trimming rolling windows), then
# count the send in all of them or none. A member already present means this very send was
# counted before a crash, so it passes again without a second count.
BATCH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOTREADY frequency caps are not loaded')
end
local now = tonumber(ARGV[1])
local commit = tonumber(ARGV[2])
local ki = 2
local out = {}
for u = 3, #ARGV do
  -- One argument per user: "<member> <limit> <window start> <ttl> <reserved> ..." with four
  -- numbers per cap, in the order of that user's keys.
  local fields = {}
  for word in string.gmatch(ARGV[u], '%S+') do fields[#fields + 1] = word end
  local member = fields[1]
  local k = (#fields - 1) / 4
  local capped, outranked, counted = 0, 0, false
  for c = 0, k - 1 do
    local key = KEYS[ki + c]
    local limit = tonumber(fields[2 + c * 4])
    local wstart = tonumber(fields[3 + c * 4])
    local reserved = tonumber(fields[5 + c * 4])
    if wstart > 0 then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. wstart)
    end
    if redis.call('ZSCORE', key, member) then
      counted = true
    else
      local used = redis.call('ZCARD', key)
      if used >= limit then
        if capped == 0 then capped = c + 1 end
      elseif used + reserved >= limit then
        if outranked == 0 then outranked = c + 1 end
      end
    end
  end
  local code = 0
  if not counted then
    if capped > 0 then code = capped elseif outranked > 0 then code = -outranked end
  end
  if code == 0 and commit == 1 then
    for c = 0, k - 1 do
      local key = KEYS[ki + c]
      redis.call('ZADD', key, now, member)
      redis.call('PEXPIRE', key, tonumber(fields[4 + c * 4]))
    end
  end
  out[#out + 1] = code
  ki = ki + k
end
return out
"""


class CapGuard:
    """Checks and counts frequency caps for batches of sends, atomically in Redis."""

    def __init__(self, client: redis.Redis, rules: Sequence[CapRule] = DEFAULT_RULES):
        self.redis = client
        self.rules = tuple(rules)
        self._script = client.register_script(BATCH_SCRIPT)

    def rules_for(self, channel: str, category: str) -> list[CapRule]:
        return [r for r in self.rules if r.applies(channel, category)]

    def key_for(self, rule: CapRule, user_id: int, tz: str, at_ms: int) -> tuple[str, int, int]:
        """(key, window start ms or 0, ttl ms) of ``rule`` for a send at ``at_ms``."""
        if rule.window == "rolling":
            window_ms = rule.seconds * 1000
            return f"delivery:cap:{{u:{user_id}}}:{rule.name}", at_ms - window_ms, window_ms
        label, end_ms = calendar_bucket(rule.window, tz, at_ms // 60_000)
        key = f"delivery:cap:{{u:{user_id}}}:{rule.name}:{label}"
        return key, 0, max(end_ms - at_ms, 0) + DAY_MS

    def _script_args(self, requests: Sequence[CapRequest], now_ms: int, commit: bool):
        keys = [READY_KEY]
        args: list = [now_ms, 1 if commit else 0]
        rules_by_request = []
        for req in requests:
            rules = self.rules_for(req.channel, req.category)
            rules_by_request.append(rules)
            parts = [req.member]
            for rule in rules:
                key, wstart, ttl = self.key_for(rule, req.user_id, req.time_zone, now_ms)
                keys.append(key)
                parts.append(f"{rule.limit} {wstart} {ttl} {req.reserved.get(rule.name, 0)}")
            args.append(" ".join(parts))
        return keys, args, rules_by_request

    def check_and_count(
        self, requests: Sequence[CapRequest], now_ms: int | None = None, commit: bool = True
    ) -> list[CapDecision]:
        """One script call for the whole batch; raises Unavailable (send nothing) when the
        counters are not loaded or Redis cannot be reached. ``commit=False`` only checks
        (dry runs)."""
        if not requests:
            return []
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        keys, args, rules_by_request = self._script_args(requests, now_ms, commit)
        try:
            codes = self._script(keys=keys, args=args)
        except redis.ResponseError as exc:
            if "NOTREADY" in str(exc):
                raise Unavailable("frequency caps are being rebuilt; nothing is sent") from exc
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable("redis unreachable; nothing is sent") from exc
        decisions = []
        for code, rules in zip(codes, rules_by_request):
            code = int(code)
            if code == 0:
                decisions.append(CapDecision(True))
            elif code > 0:
                decisions.append(CapDecision(False, f"frequency_cap:{rules[code - 1].name}"))
            else:
                decisions.append(CapDecision(False, "outranked"))
        return decisions

    def release(self, items: Iterable[tuple[int, str, str, str, str, int]]) -> None:
        """Gives back slots of sends that were dead-lettered (user, member, channel,
        category, zone, counted at), in one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        for user_id, member, channel, category, tz, at_ms in items:
            for rule in self.rules_for(channel, category):
                pipe.zrem(self.key_for(rule, user_id, tz, at_ms)[0], member)
        pipe.execute()

    # Readiness and rebuild -------------------------------------------------------------

    def is_ready(self) -> bool:
        try:
            return bool(self.redis.exists(READY_KEY))
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def ensure_ready(self, engine: Engine) -> bool:
        """Rebuilds the counters from the ledger when they are missing; True when ready."""
        if self.is_ready():
            return True
        return self.rebuild(engine)

    def rebuild(self, engine: Engine, now_ms: int | None = None, chunk: int = 2000) -> bool:
        """Reloads every counter from the send ledger. While it runs the ready key is absent,
        so every check in every replica fails closed. False if another process holds the lock."""
        token = uuid.uuid4().hex
        try:
            if not self.redis.set(REBUILD_LOCK_KEY, token, nx=True, px=300_000):
                return False
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        try:
            self.redis.delete(READY_KEY)
            batch = []
            for key in self.redis.scan_iter(match="delivery:cap:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self.redis.unlink(*batch)
                    batch = []
            if batch:
                self.redis.unlink(*batch)
            now_ms = int(time.time() * 1000) if now_ms is None else now_ms
            horizon = max((r.horizon_ms for r in self.rules), default=0)
            # Sends counted and not given back, plus live claims that may be past the script
            # but not yet marked: over-counting those is safe, missing them is not.
            query = select(
                sends.c.id, sends.c.user_id, sends.c.channel, sends.c.category,
                sends.c.time_zone, sends.c.counted_ms, sends.c.updated_ms,
            ).where(
                or_(
                    and_(sends.c.counted_ms >= now_ms - horizon, sends.c.status != "dead"),
                    and_(sends.c.status == "claimed", sends.c.lease_until_ms >= now_ms),
                )
            )
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=chunk).execute(query)
                for rows in result.partitions(chunk):
                    pipe = self.redis.pipeline(transaction=False)
                    for send_id, user_id, channel, category, tz, counted, updated in rows:
                        at_ms = counted or updated
                        for rule in self.rules_for(channel, category):
                            key, wstart, ttl = self.key_for(rule, user_id, tz or "UTC", at_ms)
                            if wstart and at_ms < now_ms - rule.seconds * 1000:
                                continue
                            pipe.zadd(key, {str(send_id): at_ms})
                            pipe.pexpire(key, ttl + max(at_ms - now_ms, 0))
                    pipe.execute()
            self.redis.set(READY_KEY, str(now_ms))
            return True
        finally:
            self.redis.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
                "end return 0", 1, REBUILD_LOCK_KEY, token,
            )


class RateLimiter:
    """Sends per second toward a channel, shared by every replica through Redis."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def acquire(self, scope: str, wanted: int, per_second: int) -> int:
        """Blocks until some of ``wanted`` sends may go this second; returns how many."""
        if per_second <= 0:
            return wanted
        while True:
            second = int(time.time())
            key = f"delivery:rate:{scope}:{second}"
            pipe = self.redis.pipeline(transaction=False)
            pipe.incrby(key, wanted)
            pipe.expire(key, 5)
            total = pipe.execute()[0]
            granted = min(wanted, per_second - (total - wanted))
            if granted > 0:
                if granted < wanted:
                    self.redis.decrby(key, wanted - granted)
                return granted
            self.redis.decrby(key, wanted)
            time.sleep(max(0.0, second + 1 - time.time()) + 0.001)

