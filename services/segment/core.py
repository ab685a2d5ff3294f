"""Segment rules as resources: validation, estimates, snapshots, membership and scheduling."""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator

from pyroaring import BitMap, FrozenBitMap
from sqlalchemy import Integer, bindparam, func, select
from sqlalchemy.engine import Engine

from services.common import profile_tables as pt
from services.common.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.segment.catalog import CatalogCache
from services.segment.compiler import Compiler
from services.segment.prepared import PreparedRules, Shape
from services.segment.rules import Condition, referenced_segments
from services.segment.store import SegmentStore
from services.segment.text import RuleSyntaxError, format_rule, parse_rule_with_positions
from services.segment.validate import rule_violations

log = logging.getLogger("marketing.segment")

DAY_MS = 86_400_000
MINUTE_MS = 60_000
# Ids resolved to external ids per query when streaming members.
RESOLVE_BATCH = 1000
# Bitmaps kept decoded in memory, most recently used first.
BITMAP_CACHE_SIZE = 16
MAX_PAGE_SIZE = 1000
MAX_PREVIEW = 1000
# The parameter holding a preview's page size.
PREVIEW_LIMIT = "preview_limit"


@dataclasses.dataclass(frozen=True)
class Segment:
    id: int
    display_name: str
    description: str
    rule: Condition
    rule_text: str
    realtime: bool
    refresh_every_minutes: int | None
    refresh_daily_minute: int | None
    next_refresh_ms: int | None
    revision: int
    created_by: str
    created_ms: int
    updated_ms: int

    @property
    def name(self) -> str:
        return f"segments/{self.id}"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    segment_id: int
    version: int
    created_ms: int
    as_of_ms: int
    size: int
    rule_text: str
    trigger: str
    duration_ms: int

    @property
    def name(self) -> str:
        return f"segments/{self.segment_id}/snapshots/{self.version}"


@dataclasses.dataclass(frozen=True)
class Comparison:
    entered_count: int
    left_count: int
    stayed_count: int
    entered: list[tuple[int, str]]
    left: list[tuple[int, str]]


@dataclasses.dataclass(frozen=True)
class PreviewPage(Shape):
    """The members with the lowest ids and their external ids, ``preview_limit`` of them."""

    def build(self, compiler: Compiler, rule: Condition | None):
        members = compiler.statement(rule).subquery("members")
        profiles = pt.profiles
        return (select(profiles.c.id, profiles.c.external_id)
                .join_from(members, profiles, profiles.c.id == members.c.id)
                .order_by(members.c.id).limit(bindparam(PREVIEW_LIMIT, None, type_=Integer)))


PREVIEW_PAGE = PreviewPage()


def next_refresh(now_ms: int, every_minutes: int | None, daily_minute: int | None) -> int | None:
    """When a segment with this schedule is next refreshed after ``now_ms``."""
    if every_minutes:
        return now_ms + every_minutes * MINUTE_MS
    if daily_minute is not None:
        start_of_day = now_ms - now_ms % DAY_MS
        due = start_of_day + daily_minute * MINUTE_MS
        return due if due > now_ms else due + DAY_MS
    return None


class SegmentCore:
    """The segment service's rules; the servicer only translates protos to these calls."""

    def __init__(self, engine: Engine, read_engine: Engine, catalog: CatalogCache,
                 clock: Callable[[], float] = time.time, cache_ttl_s: float = 2.0):
        self.store = SegmentStore(engine)
        self.read_engine = read_engine
        self.catalog = catalog
        # Statements built and compiled once per rule: estimates, snapshots, previews,
        # insight and real-time re-checks.
        self.prepared = PreparedRules(read_engine.dialect)
        self.clock = clock
        # How long a decoded snapshot is served from memory before its stored metadata is
        # read again (one indexed row): another replica may have deleted the segment.
        self.cache_ttl_s = cache_ttl_s
        self._bitmaps: collections.OrderedDict[tuple[int, int], tuple] = (
            collections.OrderedDict())
        self._lock = threading.Lock()
        # Called with (segment, members, as_of_ms) after each snapshot (real-time reconcile).
        self.snapshot_listeners: list[Callable] = []

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # Rules.
    def parse(self, text: str, field: str = "rule_text") -> tuple[Condition, dict]:
        try:
            return parse_rule_with_positions(text)
        except RuleSyntaxError as exc:
            raise InvalidArgument(field, str(exc)) from None

    def resolve(self, segment_id: int) -> Condition | None:
        texts = self.store.rule_texts([segment_id])
        if segment_id not in texts:
            return None
        return parse_rule_with_positions(texts[segment_id])[0]

    def check(self, rule: Condition, field: str = "rule", segment_id: int | None = None,
              positions: dict | None = None) -> None:
        """Raises InvalidArgument naming each offending node (and its place in the text)."""
        problems = self.violations(rule, segment_id)
        if problems:
            out = []
            for path, message in problems:
                where = (positions or {}).get(path) or nearest_position(positions, path)
                suffix = f" (line {where[0]}, column {where[1]})" if where else ""
                out.append((field + path[len("rule"):], message + suffix))
            raise InvalidArgument(violations=out)

    def violations(self, rule: Condition, segment_id: int | None = None) -> list[tuple[str, str]]:
        problems = rule_violations(rule, self.catalog.get(), self.resolve, segment_id)
        if problems and self.catalog.refresh():
            # The cached catalogue may predate an attribute or a model's scores: look again.
            problems = rule_violations(rule, self.catalog.get(), self.resolve, segment_id)
        return problems

    def estimate(self, rule: Condition, now_ms: int | None = None) -> int:
        now = self.now_ms() if now_ms is None else now_ms
        with self.read_engine.connect() as connection:
            return self.prepared.count(connection, rule, self.catalog.get(), now, self.resolve)

    def preview(self, rule: Condition, limit: int, now_ms: int | None = None
                ) -> list[tuple[int, str]]:
        """Up to ``limit`` members with the lowest ids, with their external ids."""
        limit = max(1, min(limit or 20, MAX_PREVIEW))
        now = self.now_ms() if now_ms is None else now_ms
        with self.read_engine.connect() as connection:
            rows = self.prepared.rows(connection, PREVIEW_PAGE, rule, self.catalog.get(), now,
                                      self.resolve, {PREVIEW_LIMIT: limit})
        return [(int(i), e) for i, e in rows]

    def evaluate(self, rule: Condition, now_ms: int) -> BitMap:
        """Every member's internal id, as a bitmap built from the engine's result."""
        with self.read_engine.connect() as connection:
            return self.prepared.members(connection, rule, self.catalog.get(), now_ms,
                                         self.resolve)

    def among(self, rule: Condition, user_ids, now_ms: int) -> set[int]:
        """Which of ``user_ids`` match ``rule`` at ``now_ms``: one statement, kept per rule,
        with the ids bound as one parameter."""
        with self.read_engine.connect() as connection:
            return self.prepared.among(connection, rule, self.catalog.get(), now_ms, user_ids,
                                       self.resolve)

    # Segments.
    def _segment(self, row: dict) -> Segment:
        rule, _ = parse_rule_with_positions(row["rule_text"])
        return Segment(rule=rule, **{k: v for k, v in row.items()})

    def _check_schedule(self, every: int | None, daily: int | None, prefix: str) -> None:
        problems = []
        if every is not None and every <= 0:
            problems.append((f"{prefix}refresh_every_minutes", "must be positive"))
        if daily is not None and not 0 <= daily < 1440:
            problems.append((f"{prefix}refresh_daily_minute", "must be 0..1439"))
        if every and daily is not None:
            problems.append((f"{prefix}refresh_daily_minute",
                             "set either refresh_every_minutes or refresh_daily_minute"))
        if problems:
            raise InvalidArgument(violations=problems)

    def create(self, display_name: str, rule: Condition, description: str = "",
               realtime: bool = False, refresh_every_minutes: int | None = None,
               refresh_daily_minute: int | None = None, created_by: str = "",
               positions: dict | None = None, field_prefix: str = "segment.") -> Segment:
        if not display_name.strip():
            raise InvalidArgument(f"{field_prefix}display_name", "must not be empty")
        self._check_schedule(refresh_every_minutes, refresh_daily_minute, field_prefix)
        self.check(rule, f"{field_prefix}rule", None, positions)
        now = self.now_ms()
        values = dict(
            display_name=display_name, description=description, rule_text=format_rule(rule),
            realtime=realtime, refresh_every_minutes=refresh_every_minutes,
            refresh_daily_minute=refresh_daily_minute,
            next_refresh_ms=next_refresh(now, refresh_every_minutes, refresh_daily_minute),
            revision=1, created_by=created_by, created_ms=now, updated_ms=now,
        )
        segment_id = self.store.insert_segment(values, referenced_segments(rule))
        return self.get(segment_id)

    def get(self, segment_id: int) -> Segment:
        row = self.store.get_segment(segment_id)
        if row is None:
            raise NotFound("segment", f"segments/{segment_id}")
        return self._segment(row)

    def list(self, page_size: int, page_token: str) -> tuple[list[Segment], str]:
        size = max(1, min(page_size or 50, MAX_PAGE_SIZE))
        after = _token(page_token, "page_token")
        rows = self.store.list_segments(after, size + 1)
        items = [self._segment(r) for r in rows[:size]]
        return items, (str(items[-1].id) if len(rows) > size else "")

    def update(self, segment_id: int, changes: dict, expected_revision: int | None = None,
               positions: dict | None = None, field_prefix: str = "segment.") -> Segment:
        """Applies ``changes`` (keys among the create arguments) in one compare-and-set."""
        current = self.get(segment_id)
        if expected_revision and expected_revision != current.revision:
            raise Aborted(f"segments/{segment_id} changed (revision {current.revision}, "
                          f"expected {expected_revision}); read it again")
        values: dict = {}
        references = None
        if "display_name" in changes:
            if not changes["display_name"].strip():
                raise InvalidArgument(f"{field_prefix}display_name", "must not be empty")
            values["display_name"] = changes["display_name"]
        for key in ("description", "realtime"):
            if key in changes:
                values[key] = changes[key]
        if "rule" in changes:
            rule = changes["rule"]
            self.check(rule, f"{field_prefix}rule", segment_id, positions)
            values["rule_text"] = format_rule(rule)
            references = referenced_segments(rule)
        if "refresh_every_minutes" in changes or "refresh_daily_minute" in changes:
            every = changes.get("refresh_every_minutes", current.refresh_every_minutes)
            daily = changes.get("refresh_daily_minute", current.refresh_daily_minute)
            self._check_schedule(every, daily, field_prefix)
            values.update(refresh_every_minutes=every, refresh_daily_minute=daily,
                          next_refresh_ms=next_refresh(self.now_ms(), every, daily))
        values["updated_ms"] = self.now_ms()
        if not self.store.update_segment(segment_id, current.revision, values, references):
            raise Aborted(f"segments/{segment_id} changed during the update; retry")
        return self.get(segment_id)

    def delete(self, segment_id: int) -> None:
        users = self.store.referencing(segment_id)
        if users:
            raise FailedPrecondition(
                f"segments/{segment_id} is used by other segments",
                [("SEGMENT_REFERENCED", f"segments/{u}", f"refers to segments/{segment_id}")
                 for u in users])
        if not self.store.delete_segment(segment_id):
            raise NotFound("segment", f"segments/{segment_id}")
        with self._lock:
            for key in [k for k in self._bitmaps if k[0] == segment_id]:
                del self._bitmaps[key]

    # Snapshots.
    def create_snapshot(self, segment_id: int, now_ms: int | None = None,
                        trigger: str = "manual") -> Snapshot:
        segment = self.get(segment_id)
        as_of = self.now_ms() if now_ms is None else now_ms
        started = time.monotonic()
        members = self.evaluate(segment.rule, as_of)
        members.run_optimize()
        values = dict(
            segment_id=segment_id, created_ms=self.now_ms(), as_of_ms=as_of, size=len(members),
            rule_text=segment.rule_text, trigger=trigger,
            duration_ms=int((time.monotonic() - started) * 1000), members=members.serialize(),
        )
        version = self.store.insert_snapshot(values)
        snapshot = self.get_snapshot(segment_id, version)
        self._remember((segment_id, version), snapshot, FrozenBitMap(members))
        for listener in self.snapshot_listeners:
            try:
                listener(segment, members, as_of)
            except Exception:
                log.exception("snapshot listener failed", extra={"segment_id": segment_id})
        return snapshot

    def get_snapshot(self, segment_id: int, version: int | None = None) -> Snapshot:
        row = self.store.snapshot_meta(segment_id, version)
        if row is None:
            name = f"segments/{segment_id}/snapshots/{version or 'latest'}"
            if self.store.get_segment(segment_id) is None:
                name = f"segments/{segment_id}"
            raise NotFound("snapshot" if "snapshots" in name else "segment", name)
        return Snapshot(**row)

    def list_snapshots(self, segment_id: int, page_size: int, page_token: str
                       ) -> tuple[list[Snapshot], str]:
        self.get(segment_id)
        size = max(1, min(page_size or 50, MAX_PAGE_SIZE))
        before = _token(page_token, "page_token") if page_token else None
        rows = self.store.list_snapshots(segment_id, before, size + 1)
        items = [Snapshot(**r) for r in rows[:size]]
        return items, (str(items[-1].version) if len(rows) > size else "")

    def bitmap(self, segment_id: int, version: int | None = None) -> tuple[Snapshot, FrozenBitMap]:
        """A snapshot and its members, decoded once and then served from memory.

        A snapshot never changes, but its segment may be deleted (and ids reused) through
        another replica, whose deletion this one never sees. A cached entry is therefore
        trusted for ``cache_ttl_s`` only; after that one indexed read of the snapshot's
        metadata revalidates it (the metadata is its etag) or reports it gone.
        """
        now = time.monotonic()
        if version:
            with self._lock:
                cached = self._bitmaps.get((segment_id, version))
                if cached is not None and now - cached[2] < self.cache_ttl_s:
                    self._bitmaps.move_to_end((segment_id, version))
                    return cached[0], cached[1]
        snapshot = self.get_snapshot(segment_id, version)
        key = (segment_id, snapshot.version)
        with self._lock:
            cached = self._bitmaps.get(key)
            if cached is not None and cached[0] == snapshot:
                self._bitmaps[key] = (snapshot, cached[1], now)
                self._bitmaps.move_to_end(key)
                return snapshot, cached[1]
        data = self.store.snapshot_members(*key)
        if data is None:
            raise NotFound("snapshot", snapshot.name)
        members = FrozenBitMap.deserialize(data)
        self._remember(key, snapshot, members)
        return snapshot, members

    def _remember(self, key, snapshot: Snapshot, members: FrozenBitMap) -> None:
        with self._lock:
            self._bitmaps[key] = (snapshot, members, time.monotonic())
            self._bitmaps.move_to_end(key)
            while len(self._bitmaps) > BITMAP_CACHE_SIZE:
                self._bitmaps.popitem(last=False)

    def external_ids(self, ids: list[int]) -> list[tuple[int, str]]:
        """(id, external id) for each id still in the profile store, in id order."""
        out: list[tuple[int, str]] = []
        profiles = pt.profiles
        with self.read_engine.connect() as connection:
            for start in range(0, len(ids), RESOLVE_BATCH):
                chunk = ids[start:start + RESOLVE_BATCH]
                out.extend(connection.execute(
                    select(profiles.c.id, profiles.c.external_id)
                    .where(profiles.c.id.in_(chunk)).order_by(profiles.c.id)).all())
        return [(int(i), e) for i, e in out]

    def stream_members(self, segment_id: int, version: int | None = None,
                       batch_size: int = 1000) -> Iterator[tuple[Snapshot, list[tuple[int, str]]]]:
        """The snapshot's members in id order, ``batch_size`` at a time, one query per batch."""
        batch_size = max(1, min(batch_size or 1000, 10_000))
        snapshot, members = self.bitmap(segment_id, version)
        if not members:
            yield snapshot, []
            return
        for start in range(0, len(members), batch_size):
            ids = list(members[start:start + batch_size])
            yield snapshot, self.external_ids(ids)

    def user_id(self, external_id: str) -> int | None:
        with self.read_engine.connect() as connection:
            found = connection.execute(select(pt.profiles.c.id).where(
                pt.profiles.c.external_id == external_id)).scalar_one_or_none()
        return None if found is None else int(found)

    def check_membership(self, segment_id: int, external_id: str, version: int | None = None
                         ) -> tuple[Snapshot, int | None, bool]:
        if not external_id:
            raise InvalidArgument("external_id", "must not be empty")
        snapshot, members = self.bitmap(segment_id, version)
        uid = self.user_id(external_id)
        return snapshot, uid, uid is not None and uid in members

    def compare(self, segment_id: int, from_version: int, to_version: int | None,
                limit: int = 100) -> tuple[Snapshot, Snapshot, Comparison]:
        if not from_version:
            raise InvalidArgument("from_version", "name the earlier snapshot version")
        old_snapshot, old = self.bitmap(segment_id, from_version)
        new_snapshot, new = self.bitmap(segment_id, to_version)
        entered, left = new - old, old - new
        limit = max(0, min(limit, MAX_PREVIEW))
        return old_snapshot, new_snapshot, Comparison(
            entered_count=len(entered), left_count=len(left), stayed_count=len(new & old),
            entered=self.external_ids(list(entered[:limit])) if limit and entered else [],
            left=self.external_ids(list(left[:limit])) if limit and left else [],
        )

    # Scheduling.
    def refresh_due(self, now_ms: int | None = None) -> list[Snapshot]:
        """Snapshots every segment whose refresh is due; safe to run on several replicas."""
        now = self.now_ms() if now_ms is None else now_ms
        taken = []
        for row in self.store.due_for_refresh(now):
            following = next_refresh(now, row["refresh_every_minutes"],
                                     row["refresh_daily_minute"])
            if not self.store.set_next_refresh(row["id"], row["next_refresh_ms"], following):
                continue
            try:
                taken.append(self.create_snapshot(row["id"], now, trigger="scheduled"))
            except Exception:
                log.exception("scheduled refresh failed", extra={"segment_id": row["id"]})
        return taken

    def run_scheduler(self, stop: threading.Event, interval_s: float = 30.0) -> None:
        """Loops until ``stop`` is set, taking due snapshots every ``interval_s`` seconds."""
        while not stop.is_set():
            try:
                self.refresh_due()
            except Exception:
                log.exception("segment scheduler pass failed")
            stop.wait(interval_s)

    def insight(self, rule: Condition, fields: list[str], bounds: dict | None = None,
                top_tags: int = 10, rfm: bool = True, lifecycle: bool = True,
                now_ms: int | None = None):
        from services.segment.insight import build_insight

        now = self.now_ms() if now_ms is None else now_ms
        # Each breakdown's kept statement looks up the referenced segments' rules: once per
        # request is enough.
        resolve = functools.cache(self.resolve)
        with self.read_engine.connect() as connection:
            return build_insight(self.prepared, connection, rule, self.catalog.get(), now,
                                 fields, bounds, top_tags, rfm, lifecycle, resolve)

    def population(self) -> int:
        with self.read_engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(pt.profiles))
                       .scalar_one())


def nearest_position(positions: dict | None, path: str):
    """The text position of ``path`` or of its closest recorded ancestor."""
    if not positions:
        return None
    while path:
        if path in positions:
            return positions[path]
        path = path.rsplit(".", 1)[0] if "." in path else ""
    return None


def _token(token: str, field: str) -> int:
    if not token:
        return 0
    try:
        value = int(token)
    except ValueError:
        raise InvalidArgument(field, "is not a token this service issued") from None
    if value < 0:
        raise InvalidArgument(field, "is not a token this service issued")
    return value
