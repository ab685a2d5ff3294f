"""The profile domain: validation rules, transactions, stream publication and erasure."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import itertools
import json
import logging
import math
import operator
import re
import threading
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Sequence

import redis
from sqlalchemy import and_, bindparam, delete, not_, select, update
from sqlalchemy.engine import Engine

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
)
from services.common.profile_tables import (
    attribute_catalog,
    computed_traits,
    consents,
    events,
    profile_attributes,
    profile_tags,
    profiles,
    scores,
)
from services.profile import announce, store, traits
from services.profile.announce import (
    CHANGES_STREAM,
    NO_CHANGES,
    ChangeSet,
    ProfileChanges,
)
from services.profile.config import CHANNELS, DAY_MS, ProfileConfig
from services.profile.tables import erasure_audit, identity_links
from services.profile.values import (
    ATTRIBUTE_NAME,
    COLUMN_FOR_TYPE,
    VALUE_TYPES,
    attribute_row,
    check_value,
    value_from_row,
)

log = logging.getLogger(__name__)
# How long stopping waits for the last retirement of announcement markers.
RETIRE_ON_CLOSE_S = 5.0

# Redis keys owned by this service (see services/profile/announce.py); CHANGES_STREAM is
# profile:changes, see publish_changes().
EVENTS_STREAM = "profile:events"  # every newly stored event, see publish_events()
ERASURES_STREAM = "profile:erasures"  # one entry per erased or deleted user
ERASURES_STREAM_MAXLEN = 100_000

# KEYS[1]: the events stream; ARGV[1]: approximate length cap; ARGV[2]: a JSON array of
# seven columns (event_id, user_id, external_id, event_type, ts_ms, value, properties) of
# strings, value and properties null where the event has none. One entry per event; the
# stream is trimmed once per call (atomically, so no reader sees it longer than the cap).
PUBLISH_LUA = """
local c = cjson.decode(ARGV[2])
local ids, users, externals, types, stamps, values, props = c[1], c[2], c[3], c[4], c[5], c[6], c[7]
local call, key, null = redis.call, KEYS[1], cjson.null
for i = 1, #ids do
  local value, properties = values[i], props[i]
  if value == null then value = '' end
  if properties == null then properties = '{}' end
  call('XADD', key, '*', 'event_id', ids[i], 'user_id', users[i], 'external_id', externals[i],
    'event_type', types[i], 'ts_ms', stamps[i], 'value', value, 'properties', properties)
end
call('XTRIM', key, 'MAXLEN', '~', ARGV[1])
return #ids
"""
# Events per publishing script call: bounds how long one call keeps Redis busy.
PUBLISH_CHUNK = 2000

# External ids become resource names (profiles/{external_id}), so '/' and spaces are refused.
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9._:@+\-]{1,256}$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
MAX_EVENT_ID = 128
# Threads writing stream batches, shared by all streams (one batch in flight per stream).
STREAM_WRITERS = 4
MIN_EVENT_TS_MS = -2_208_988_800_000  # 1900-01-01
MAX_VALUE = 1.7976931348623157e308  # the largest finite float; NaN and infinities fail
MAX_PROPERTIES = 64
MAX_TAG = 128
MAX_SOURCE = 128
MAX_MODEL_NAME = 128
MAX_MODEL_VERSION = 64

# The profile fields an update mask may name; "attributes.<name>" targets one attribute.
UPDATABLE_PATHS = (
    "attributes",
    "tags",
    "time_zone",
    "quiet_hours",
    "notifications_disabled",
    "app_uninstalled",
)

TypedValue = tuple[str, object]  # (value type, python value); timestamps are epoch ms


@dataclasses.dataclass
class Profile:
    """A user portrait as the domain sees it (internal id included)."""

    external_id: str
    user_id: int = 0
    created_ms: int = 0
    updated_ms: int = 0
    time_zone: str = "UTC"
    quiet_start_minute: int | None = None
    quiet_end_minute: int | None = None
    notifications_disabled: bool = False
    app_uninstalled: bool = False
    attributes: dict[str, TypedValue] = dataclasses.field(default_factory=dict)
    tags: list[tuple[str, int | None]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class EventIn:
    """One behaviour event to ingest; ``properties`` maps names to typed values."""

    event_id: str
    external_id: str
    event_type: str
    ts_ms: int | None
    value: float | None = None
    properties: dict[str, TypedValue] = dataclasses.field(default_factory=dict)


# A validated event as stored: (event_id, external_id, event_type, ts_ms, value, properties
# as JSON text or None). Streams build these straight from the wire, skipping EventIn.
EventRow = tuple[str, str, str, int, float | None, str | None]


@dataclasses.dataclass(frozen=True)
class EventColumns:
    """A batch of validated events column by column, as it is inserted and announced.

    Columns rather than one tuple per event: transposing a batch, binding its INSERT and
    encoding its announcement then run in C (``zip``, ``map``, ``json.dumps``) instead of
    a Python loop per event. ``user_ids`` is empty until the external ids are resolved.
    """

    event_ids: Sequence[str]
    external_ids: Sequence[str]
    event_types: Sequence[str]
    ts_ms: Sequence[int]
    values: Sequence[float | None]
    properties: Sequence[str | None]
    user_ids: Sequence[int] = ()
    # The marker committed with these events once stored (see services/profile/announce.py).
    marker: str = ""

    @classmethod
    def from_rows(cls, rows: Sequence[EventRow]) -> EventColumns:
        if not rows:
            return NO_EVENTS
        return cls(*zip(*rows))

    @classmethod
    def concat(cls, parts: Sequence[EventColumns]) -> EventColumns:
        """The events of ``parts`` one after the other (before their users are resolved)."""
        if len(parts) == 1:
            return parts[0]
        return cls(*(
            list(itertools.chain.from_iterable(getattr(part, name) for part in parts))
            for name in ("event_ids", "external_ids", "event_types", "ts_ms", "values",
                         "properties")
        ))

    def __len__(self) -> int:
        return len(self.event_ids)

    def take(self, indexes: Sequence[int]) -> EventColumns:
        """The events at ``indexes``, in that order."""
        return EventColumns(*(
            [column[i] for i in indexes] if column else column
            for column in (self.event_ids, self.external_ids, self.event_types, self.ts_ms,
                           self.values, self.properties, self.user_ids)
        ))

    def with_users(self, ids: dict[str, int]) -> EventColumns:
        """The events whose external id ``ids`` resolves, with their internal ids filled in."""
        try:
            return dataclasses.replace(self, user_ids=list(map(ids.__getitem__, self.external_ids)))
        except KeyError:
            known = self.take([i for i, e in enumerate(self.external_ids) if e in ids])
            return dataclasses.replace(known, user_ids=[ids[e] for e in known.external_ids])

    def storage_rows(self) -> Iterable[tuple]:
        """(event_id, user_id, event_type, ts_ms, value, properties) per event."""
        return zip(self.event_ids, self.user_ids, self.event_types, self.ts_ms, self.values,
                   self.properties)

    def announcements(self) -> list[str]:
        """The ``PUBLISH_LUA`` arguments announcing these events, one per ``PUBLISH_CHUNK``."""
        return [self.announcement(start, start + PUBLISH_CHUNK)
                for start in range(0, len(self), PUBLISH_CHUNK)]

    def announcement(self, start: int, stop: int) -> str:
        """The ``PUBLISH_LUA`` argument announcing events ``start``..``stop``."""
        values = self.values[start:stop]
        return json.dumps(
            [
                self.event_ids[start:stop],
                list(map(str, self.user_ids[start:stop])),
                self.external_ids[start:stop],
                self.event_types[start:stop],
                list(map(str, self.ts_ms[start:stop])),
                [None if v is None else repr(v) for v in values] if None in values
                else list(map(repr, values)),
                self.properties[start:stop],
            ],
            separators=(",", ":"),
        )


NO_EVENTS = EventColumns((), (), (), (), (), ())


class _AlreadyStored(Exception):
    """Some events of a batch were stored before: its transaction is redone, naming each one
    stored (see ``ProfileCore._store_rows``)."""


@dataclasses.dataclass
class EventOutcome:
    """What happened to one event of a batch: stored, a duplicate, or refused (``error``)."""

    index: int
    event_id: str
    duplicate: bool = False
    error: ServiceError | None = None


@dataclasses.dataclass
class IngestResult:
    outcomes: list[EventOutcome]
    accepted: int
    duplicates: int
    rejected: int
    touched_user_ids: set[int]


@dataclasses.dataclass
class ScoreIn:
    """One model score to write back, addressed by internal id or external id."""

    model_name: str
    score: float
    model_version: str
    user_id: int = 0
    external_id: str = ""
    scored_ms: int | None = None


@dataclasses.dataclass
class Contactability:
    """What delivery must know before contacting one user."""

    found: bool
    user_id: int = 0
    external_id: str = ""
    time_zone: str = "UTC"
    quiet_start_minute: int | None = None
    quiet_end_minute: int | None = None
    quiet_hours_active: bool = False
    notifications_disabled: bool = False
    app_uninstalled: bool = False
    # channel -> (subscribed, updated_ms or None when defaulted, source)
    consents: dict[str, tuple[bool, int | None, str]] = dataclasses.field(default_factory=dict)
    # channel -> may this user be contacted on it right now (ignoring quiet hours)
    contactable: dict[str, bool] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _ProfileWrite:
    """What the update changes of one call add up to for one user, applied in request order.

    A batch writes the sum per user, so each table is touched by a few set statements for
    all users together, and the result is what the changes would leave one after the other.
    """

    columns: dict[str, object] = dataclasses.field(default_factory=dict)  # profiles columns
    replace_attributes: bool = False  # the user's other attributes are dropped first
    attributes: dict[str, TypedValue] = dataclasses.field(default_factory=dict)  # None clears
    tags: dict[str, int | None] | None = None  # the replacement set; None leaves tags alone

    def add(
        self,
        columns: dict[str, object],
        replaced: dict[str, TypedValue] | None,
        chosen: dict[str, TypedValue],
        tags: Sequence[tuple[str, int | None]] | None,
    ) -> None:
        """Adds one change: its columns, a replacement attribute set and single attributes
        (in that order, as UpdateProfile writes them) and a replacement tag set."""
        self.columns.update(columns)
        if replaced is not None:
            self.replace_attributes = True
            self.attributes = dict(replaced)
        self.attributes.update(chosen)
        if tags is not None:
            self.tags = dict(tags)


def _within(prefix: str, error: ServiceError) -> ServiceError:
    """``error`` of one batch item with its fields named inside the item
    (``update_mask`` -> ``requests[3].update_mask``); other errors stay as they are."""
    if isinstance(error, InvalidArgument):
        return InvalidArgument(violations=[(f"{prefix}.{f}", d) for f, d in error.violations])
    return error


def _json_value(kind: str, value):
    return list(value) if kind == "string_list" else value


# The stream's parser hands the interpreter lock over every this many events (a power of
# two, less one). A batch being written needs the lock for a moment after each of its SQL
# statements, and otherwise waited up to the interpreter's switch interval (5 ms) for it
# each time while a message of thousands of events was being parsed.
YIELD_EVERY_MASK = 255

# The fields of an ``Event`` proto read in one call (see ``EventChecker.columns``).
_EVENT_FIELDS = operator.attrgetter(
    "event_id", "user_id", "event_type", "timestamp", "value", "properties"
)


class EventChecker:
    """Validates a stream's ``Event`` protos and turns them into columns, with the least work.

    An external id or event type that passed its pattern once is remembered, so a stream
    mostly does set lookups and comparisons. Anything failing a quick check goes through
    ``ProfileCore.validate_event``, so the error names the same field in the same words as
    the unary path.
    """

    # Remembered ids are forgotten past this many, bounding memory on endless streams.
    MAX_REMEMBERED = 200_000

    def __init__(self, core: ProfileCore, now_ms: int, to_event: Callable[[object], EventIn]):
        self.core = core
        self.to_event = to_event  # the full conversion of one Event proto
        self.users: set[str] = set()
        self.types: set[str] = set()
        self.at(now_ms)

    def at(self, now_ms: int) -> None:
        """Moves the wall clock that future and retention limits are measured from."""
        config = self.core.config
        self.now_ms = now_ms
        self.latest_ms = now_ms + config.max_future_skew_s * 1000
        self.earliest_ms = MIN_EVENT_TS_MS
        if config.retention_days:
            self.earliest_ms = max(self.earliest_ms, now_ms - config.retention_days * DAY_MS)

    def columns(self, messages, prefix: str) -> EventColumns:
        """The validated events of one message's ``Event`` protos (``prefix`` names them in
        errors).

        The loop binds everything it touches to locals: it runs once per streamed event. It
        appends each field to its column instead of building a tuple per event: thousands
        of tuples living until their batch commits set off the garbage collector, whose
        full passes over the heap cost more than the parsing itself.
        """
        event_ids: list[str] = []
        external_ids: list[str] = []
        event_types: list[str] = []
        stamps: list[int] = []
        values: list[float | None] = []
        properties: dict[int, str] = {}  # by position: most events carry none
        add_id, add_user, add_type = event_ids.append, external_ids.append, event_types.append
        add_ts, add_value = stamps.append, values.append
        users, types = self.users, self.types
        earliest, latest = self.earliest_ms, self.latest_ms
        fields, yield_mask = _EVENT_FIELDS, YIELD_EVERY_MASK
        for index, message in enumerate(messages):
            if not index & yield_mask:
                time.sleep(0)  # lets a waiting batch writer have the interpreter lock
            event_id, external_id, event_type, stamp, value, properties_map = fields(message)
            if not properties_map:
                # Presence is asked only of zero values: a set field is almost never zero.
                seconds, nanos = stamp.seconds, stamp.nanos
                if seconds or nanos or message.HasField("timestamp"):
                    ts_ms = seconds * 1000 + nanos // 1_000_000 if nanos else seconds * 1000
                    if not value and not message.HasField("value"):
                        value = None
                    if (
                        0 < len(event_id) <= MAX_EVENT_ID
                        and earliest <= ts_ms <= latest
                        and (value is None or -MAX_VALUE <= value <= MAX_VALUE)
                        and (external_id in users or self._remember_user(external_id))
                        and (event_type in types or self._remember_type(event_type))
                    ):
                        add_id(event_id)
                        add_user(external_id)
                        add_type(event_type)
                        add_ts(ts_ms)
                        add_value(value)
                        continue
            event_id, external_id, event_type, ts_ms, value, packed = self._checked(
                message, prefix, index
            )
            add_id(event_id)
            add_user(external_id)
            add_type(event_type)
            add_ts(ts_ms)
            add_value(value)
            if packed is not None:
                properties[index] = packed
        packed_column: list[str | None] = [None] * len(event_ids)
        for index, packed in properties.items():
            packed_column[index] = packed
        return EventColumns(event_ids, external_ids, event_types, stamps, values, packed_column)

    def _checked(self, message, prefix: str, index: int) -> EventRow:
        """The full checks of ``validate_event`` (which raise, naming the field)."""
        event = self.to_event(message)
        self.core.validate_event(event, f"{prefix}[{index}]", self.now_ms)
        return self.core.event_row(event)

    def _remember_user(self, external_id: str) -> bool:
        if not EXTERNAL_ID.match(external_id):
            return False
        if len(self.users) >= self.MAX_REMEMBERED:
            self.users.clear()
        self.users.add(external_id)
        return True

    def _remember_type(self, event_type: str) -> bool:
        if not EVENT_TYPE.match(event_type):
            return False
        if len(self.types) >= self.MAX_REMEMBERED:
            self.types.clear()
        self.types.add(event_type)
        return True


class StreamIngestion:
    """One client stream of events: commits, announcements and traits, overlapped.

    Validated events are buffered and committed every ``PROFILE_STREAM_FLUSH_EVENTS`` on a
    writer thread while the stream's next messages are parsed (database and Redis waits
    release the GIL). Each committed batch is announced on ``profile:events`` by one
    publishing thread, in commit order, while the next batch is written. A stream has at
    most one batch being written, so its batches commit in arrival order. Traits follow
    ``PROFILE_STREAM_TRAITS``: 'sync' refreshes them in each batch's own transaction, so
    events and traits commit together; 'background' leaves them to the refresher thread,
    asked at the stream's end and about every ``TRAITS_REFRESH_PERIOD_S`` while it lasts,
    so the refresh does not compete with the stream. A deferred refresh that failed is
    retried (see ``ProfileCore.refresh_traits``); one lost with the process is redone when
    the client re-sends the stream (see ``write_rows``) or by the next full recompute.
    """

    TRAITS_REFRESH_PERIOD_S = 1.0

    def __init__(self, core: ProfileCore):
        self.core = core
        self.accepted = 0
        self.duplicates = 0
        self._buffer: list[EventColumns] = []
        self._buffered = 0
        self._writing: list[concurrent.futures.Future] = []
        self._announcing: list[concurrent.futures.Future] = []
        self._refreshed = time.monotonic()

    def add(self, events: EventColumns | Sequence[EventRow]) -> None:
        """Accepts one message's validated events; commits a batch once enough are buffered."""
        if not isinstance(events, EventColumns):
            events = EventColumns.from_rows(events)
        self._buffer.append(events)
        self._buffered += len(events)
        if self._buffered >= self.core.config.stream_flush_events:
            self._settle(self._writing)
            self._writing.append(self.core._writers.submit(self._store, self._take_buffer()))

    def _take_buffer(self) -> EventColumns:
        batch = EventColumns.concat(self._buffer)
        self._buffer, self._buffered = [], 0
        return batch

    def finish(self) -> tuple[int, int]:
        """Commits and announces everything accepted; returns (stored, duplicates).

        Called whatever ended the stream, so the messages accepted before a bad one are
        kept. A failure of that work (say, the database) is raised once the rest settled.
        """
        try:
            self._settle(self._writing)
            if self._buffered:
                self._store(self._take_buffer())
        finally:
            self._settle(self._announcing)
            if self.core.config.stream_traits == "background":
                self.core.schedule_traits_refresh()
        return self.accepted, self.duplicates

    def _store(self, batch: EventColumns) -> None:
        core = self.core
        in_sync = core.config.stream_traits == "sync"
        prepared: list[tuple[EventColumns, concurrent.futures.Future]] = []

        def prepare(known: EventColumns) -> None:
            # The publishing thread encodes the announcement while the batch is written
            # (SQLite works without the interpreter lock), so the commit is announced at
            # once; it is used if exactly these events are stored, the usual case.
            try:
                prepared[:] = [(known, core._publisher.submit(known.announcements))]
            except RuntimeError:
                pass  # the service is stopping: the announcement is encoded when sent

        accepted, duplicates, stored, touched = core.write_rows(
            batch, refresh=in_sync, resolved=prepare
        )
        self.accepted += accepted
        self.duplicates += duplicates
        if not in_sync:
            core.defer_traits(touched)
        if stored:
            # The stored events carry their marker, in a copy sharing the columns.
            exact = prepared and prepared[0][0].event_ids is stored.event_ids
            encoded = prepared[0][1] if exact else None
            self._announcing.append(core._publisher.submit(self._announce, stored, encoded))
        if not in_sync and time.monotonic() - self._refreshed >= self.TRAITS_REFRESH_PERIOD_S:
            self._refreshed = time.monotonic()
            core.schedule_traits_refresh()

    def _announce(self, stored: EventColumns, encoded: concurrent.futures.Future | None) -> None:
        self.core.publish_events(stored, encoded.result() if encoded is not None else None)

    @staticmethod
    def _settle(futures: list[concurrent.futures.Future]) -> None:
        while futures:
            futures.pop(0).result()


# How long profile reads trust a cached attribute catalogue (another replica's new attribute
# is picked up at once anyway: a stored name the cache lacks forces a reload).
CATALOG_CACHE_TTL_S = 5.0


class ProfileCore:
    """Every rule of the profile service, over a SQLAlchemy engine and a Redis client."""

    def __init__(
        self,
        engine: Engine,
        redis_client: redis.Redis | None,
        config: ProfileConfig | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.engine = engine
        self.redis = redis_client
        self.config = config or ProfileConfig()
        self.clock = clock
        # The attribute catalogue as profile reads see it: (loaded at, name -> row). Names
        # and types never change once created, so reads reuse it and reload only when it is
        # older than CATALOG_CACHE_TTL_S or a stored value names an attribute it lacks; this
        # process's own catalogue writes drop it. Writes always validate against the table.
        self._catalog_cache: tuple[float, dict[str, dict]] | None = None
        self._catalog_lock = threading.Lock()
        # Users whose events are committed but whose traits are not refreshed yet.
        self._stale_users: set[int] = set()
        self._stale_lock = threading.Lock()
        # Serializes deferred refreshes with full recomputes, so a refresh never lands on
        # top of a newer full recompute.
        self._traits_lock = threading.Lock()
        # Threads of stream ingestion (see StreamIngestion), started on first use: writers
        # shared by all streams, one publisher keeping commit order, one traits refresher
        # whose rounds each take every deferred user, so queued rounds coalesce.
        self._writers = concurrent.futures.ThreadPoolExecutor(
            max_workers=STREAM_WRITERS, thread_name_prefix="profile-stream-write"
        )
        self._publisher = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="profile-stream-publish"
        )
        self._refresher = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="profile-traits-refresh"
        )
        # SQLite files only: event batches' own connections, and the thread checkpointing
        # the write-ahead log after them (see ``_checkpoint_soon``), one at a time.
        self._batches = store.batch_engine(engine, STREAM_WRITERS)
        self._checkpointer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="profile-wal-checkpoint"
        )
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_queued = False
        # Announcement markers (see services/profile/announce.py): those published and not yet
        # deleted, deleted together by the retiring thread; and those whose publication
        # failed, which this process's next maintenance pass publishes without waiting.
        self._announce_lock = threading.Lock()
        self._published: set[str] = set()
        self._unpublished: set[str] = set()
        self._retire_queued = False
        self._scripts: tuple[redis.Redis, dict] | None = None  # see _script()
        self._retirer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="profile-announce-retire"
        )

    def close(self) -> None:
        """Finishes the stream batches being written, announced, refreshed and checkpointed,
        and retires the markers of what was announced."""
        self._writers.shutdown(wait=True)
        self._publisher.shutdown(wait=True)
        self._refresher.shutdown(wait=True)
        # Retiring is bookkeeping: a marker left behind costs a duplicate announcement later,
        # never a loss, so a database that does not answer must not hold the shutdown.
        try:
            last = self._retirer.submit(self._retire)
        except RuntimeError:  # closed already
            last = None
        self._retirer.shutdown(wait=False)
        try:
            if last is not None:
                last.result(timeout=RETIRE_ON_CLOSE_S)
        except concurrent.futures.TimeoutError:
            log.warning("announcement markers not retired within %s s of stopping; a "
                        "maintenance pass will announce them again", RETIRE_ON_CLOSE_S)
        self._checkpointer.shutdown(wait=True)
        if self._batches is not None:
            self._batches.dispose()

    def open_stream(self) -> StreamIngestion:
        """Ingestion state of one client stream (see ``StreamIngestion``)."""
        return StreamIngestion(self)

    def schedule_traits_refresh(self) -> None:
        """Asks the refresher thread for a round over every deferred user."""
        try:
            self._refresher.submit(self._refresh_deferred)
        except RuntimeError:
            # Shutting down: the users stay deferred until the next full recompute.
            log.warning("traits refresh not scheduled: the service is stopping")

    def _refresh_deferred(self) -> None:
        try:
            self.refresh_traits()
        except Exception:
            # The users stay deferred; the next round or the maintenance loop retries.
            log.exception("deferred traits refresh failed")

    # --- clocks --------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The wall clock, for stamps and for refusing events from the future."""
        return int(self.clock() * 1000)

    def as_of_ms(self, requested_ms: int | None = None) -> int:
        """The 'now' traits describe: the request's, else the configured one, else the clock."""
        if requested_ms:
            return requested_ms
        return self.config.as_of_ms if self.config.as_of_ms is not None else self.now_ms()

    # --- attribute catalogue -------------------------------------------------------------

    def create_attribute(self, name: str, value_type: str, description: str, pii: bool) -> dict:
        if not ATTRIBUTE_NAME.match(name or ""):
            raise InvalidArgument("attribute.name", "must match [a-z][a-z0-9_]{0,127}")
        if value_type not in VALUE_TYPES:
            raise InvalidArgument("attribute.value_type", "must be set to a known value type")
        row = {
            "name": name,
            "value_type": value_type,
            "description": description or "",
            "pii": bool(pii),
            "created_ms": self.now_ms(),
        }
        with self.engine.begin() as conn:
            if conn.execute(
                select(attribute_catalog.c.name).where(attribute_catalog.c.name == name)
            ).first():
                raise AlreadyExists("attribute", f"attributes/{name}")
            conn.execute(attribute_catalog.insert().values(row))
        self._catalog_cache = None
        return row

    def get_attribute(self, name: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(attribute_catalog).where(attribute_catalog.c.name == name)
            ).mappings().first()
        if row is None:
            raise NotFound("attribute", f"attributes/{name}")
        return dict(row)

    def list_attributes(self) -> list[dict]:
        with self.engine.connect() as conn:
            return sorted(store.catalog(conn).values(), key=lambda r: r["name"])

    def update_attribute(
        self, name: str, description: str | None, pii: bool | None
    ) -> dict:
        """Changes the description or PII flag; a type never changes once values exist."""
        values = {}
        if description is not None:
            values["description"] = description
        if pii is not None:
            values["pii"] = bool(pii)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(attribute_catalog).where(attribute_catalog.c.name == name).values(**values)
            ) if values else None
            if result is not None and result.rowcount == 0:
                raise NotFound("attribute", f"attributes/{name}")
        return self.get_attribute(name)

    def delete_attribute(self, name: str) -> int:
        """Removes an attribute and every user's value of it; returns values removed."""
        with self.engine.begin() as conn:
            removed = conn.execute(
                delete(profile_attributes).where(profile_attributes.c.name == name)
            ).rowcount
            if conn.execute(
                delete(attribute_catalog).where(attribute_catalog.c.name == name)
            ).rowcount == 0:
                raise NotFound("attribute", f"attributes/{name}")
        self._catalog_cache = None
        return removed

    def _check_attributes(
        self, catalog: dict[str, dict], attributes: dict[str, TypedValue], prefix: str
    ) -> None:
        violations = []
        for name, (kind, value) in attributes.items():
            field = f"{prefix}[{name}]"
            declared = catalog.get(name)
            if declared is None:
                violations.append((field, "unknown attribute; declare it in the catalogue"))
                continue
            if kind is None:
                continue  # an unset value clears the attribute
            if kind != declared["value_type"]:
                violations.append(
                    (field, f"expects a {declared['value_type']} value, got {kind}")
                )
                continue
            try:
                check_value(field, kind, value)
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        if violations:
            raise InvalidArgument(violations=violations)

    # --- profiles ------------------------------------------------------------------------

    def _check_profile_fields(self, profile: Profile, paths: Iterable[str]) -> None:
        paths = set(paths)
        if "time_zone" in paths:
            try:
                zoneinfo.ZoneInfo(profile.time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise InvalidArgument("profile.time_zone", "unknown IANA time zone") from None
        if "quiet_hours" in paths:
            for field, minute in (
                ("profile.quiet_hours.start_minute", profile.quiet_start_minute),
                ("profile.quiet_hours.end_minute", profile.quiet_end_minute),
            ):
                if minute is not None and not 0 <= minute < 1440:
                    raise InvalidArgument(field, "must be a minute of the day, 0..1439")
            if (profile.quiet_start_minute is None) != (profile.quiet_end_minute is None):
                raise InvalidArgument("profile.quiet_hours", "set both start and end, or neither")
        if "tags" in paths:
            for i, (tag, _expires) in enumerate(profile.tags):
                self._check_tag(f"profile.tags[{i}]", tag)

    @staticmethod
    def _check_tag(field: str, tag: str) -> None:
        if not tag or len(tag) > MAX_TAG or tag.strip() != tag:
            raise InvalidArgument(field, f"a tag is 1..{MAX_TAG} characters without edge spaces")

    @staticmethod
    def _check_external_id(field: str, external_id: str) -> None:
        if not EXTERNAL_ID.match(external_id or ""):
            raise InvalidArgument(field, "must be 1..256 of [A-Za-z0-9._:@+-]")

    def create_profile(self, profile: Profile) -> Profile:
        self._check_external_id("profile.external_id", profile.external_id)
        self._check_profile_fields(profile, UPDATABLE_PATHS)
        now = self.now_ms()
        with self.engine.begin() as conn:
            self._check_attributes(store.catalog(conn), profile.attributes, "profile.attributes")
            if store.resolve_ids(conn, [profile.external_id]):
                raise AlreadyExists("profile", f"profiles/{profile.external_id}")
            user_id = conn.execute(
                profiles.insert()
                .values(
                    external_id=profile.external_id,
                    created_ms=now,
                    updated_ms=now,
                    time_zone=profile.time_zone,
                    quiet_start_minute=profile.quiet_start_minute,
                    quiet_end_minute=profile.quiet_end_minute,
                    notifications_disabled=profile.notifications_disabled,
                    app_uninstalled=profile.app_uninstalled,
                )
                .returning(profiles.c.id)
            ).scalar_one()
            self._write_attributes(conn, user_id, profile.attributes)
            self._write_tags(conn, user_id, profile.tags, replace=True)
            changed = ChangeSet().add([user_id], "created")
            if any(kind is not None for kind, _v in profile.attributes.values()):
                changed.add([user_id], "attributes")
            if profile.tags:
                changed.add([user_id], "tags")
            pending = self._mark_changes(conn, changed, now)
        self.publish_changes(pending)
        return self.get_profile(profile.external_id)

    def _write_attributes(self, conn, user_id: int, attributes: dict) -> None:
        """Sets a profile's attributes to exactly ``attributes`` (CreateProfile); updates of
        existing profiles go through ``_write_profiles``."""
        conn.execute(delete(profile_attributes).where(profile_attributes.c.user_id == user_id))
        rows = [
            attribute_row(user_id, name, kind, value)
            for name, (kind, value) in attributes.items()
            if kind is not None
        ]
        store.upsert(conn, profile_attributes, rows, ["user_id", "name"])

    def _write_tags(self, conn, user_id: int, tags, replace: bool) -> bool:
        """Writes tags; returns whether any was new or had another expiry."""
        if replace:
            conn.execute(delete(profile_tags).where(profile_tags.c.user_id == user_id))
        rows = [{"user_id": user_id, "tag": t, "expires_ms": e} for t, e in dict(tags).items()]
        return bool(store.upsert(
            conn, profile_tags, rows, ["user_id", "tag"],
            where=lambda stmt: store.differs(stmt, profile_tags, ["expires_ms"]),
            returning=profile_tags.c.user_id,
        ))

    def _user_id(self, conn, external_id: str, field: str = "name") -> int:
        self._check_external_id(field, external_id)
        found = store.resolve_ids(conn, [external_id])
        if not found:
            raise NotFound("profile", f"profiles/{external_id}")
        return found[external_id]

    def get_profile(self, external_id: str) -> Profile:
        """One profile (an alias resolves to the merged user), read in one statement; the
        same Profile ``batch_get_profiles`` returns for that id."""
        self._check_external_id("name", external_id)
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One statement sees one snapshot by itself: without a transaction around
                # it, the driver's BEGIN and the pool's ROLLBACK are two round trips fewer
                # (they cost more than the read).
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = store.one_profile_rows(conn, external_id, self.now_ms())
            if not rows or rows[0][0] != 0:
                raise NotFound("profile", f"profiles/{external_id}")
            (_k, user_id, found_id, created_ms, updated_ms, time_zone, quiet_start, quiet_end,
             notifications_disabled, app_uninstalled) = rows[0][:10]
            profile = Profile(
                external_id=found_id,
                user_id=user_id,
                created_ms=created_ms,
                updated_ms=updated_ms,
                time_zone=time_zone,
                quiet_start_minute=quiet_start,
                quiet_end_minute=quiet_end,
                notifications_disabled=bool(notifications_disabled),
                app_uninstalled=bool(app_uninstalled),
            )
            attributes = [row for row in rows if row[0] == 1]
            if attributes:
                catalog = self._read_catalog(conn, {row[2] for row in attributes})
                for (_k, _, name, ts_value, _, str_value, _, _, bool_value, _, num_value,
                     list_value) in attributes:
                    declared = catalog.get(name)
                    if declared is None:
                        continue
                    kind = declared["value_type"]
                    stored = {"str_value": str_value, "num_value": num_value,
                              "bool_value": bool_value, "ts_value": ts_value,
                              "list_value": list_value}
                    profile.attributes[name] = (kind, value_from_row(kind, stored))
        profile.tags = [(row[2], row[3]) for row in rows if row[0] == 2]
        return profile

    def batch_get_profiles(self, external_ids: Sequence[str], field: str = "names") -> list[Profile]:
        """Profiles in the order asked (aliases resolve to the merged user); all or nothing."""
        if len(external_ids) > self.config.max_batch_items:
            raise InvalidArgument(field, f"at most {self.config.max_batch_items} per call")
        for i, external_id in enumerate(external_ids):
            self._check_external_id(f"{field}[{i}]" if field == "names" else field, external_id)
        with self.engine.connect() as conn:
            ids = store.resolve_ids(conn, external_ids)
            missing = [e for e in external_ids if e not in ids]
            if missing:
                raise NotFound("profile", f"profiles/{missing[0]}")
            by_id = self._load_profiles(conn, list(set(ids.values())))
        return [by_id[ids[e]] for e in external_ids]

    def _read_catalog(self, conn, names: set[str]) -> dict[str, dict]:
        """The catalogue for reading stored values of ``names`` (see ``_catalog_cache``)."""
        cached = self._catalog_cache
        if (cached is not None and time.monotonic() - cached[0] < CATALOG_CACHE_TTL_S
                and names <= cached[1].keys()):
            return cached[1]
        with self._catalog_lock:
            catalog = store.catalog(conn)
            self._catalog_cache = (time.monotonic(), catalog)
        return catalog

    def _load_profiles(self, conn, user_ids: list[int]) -> dict[int, Profile]:
        """Three set reads (profiles, attributes, live tags) for any number of users, and the
        attribute catalogue when the cached one is stale or lacks a stored name."""
        now = self.now_ms()
        by_id: dict[int, Profile] = {}
        for row in store.profile_rows(conn, user_ids):
            by_id[row["id"]] = Profile(
                external_id=row["external_id"],
                user_id=row["id"],
                created_ms=row["created_ms"],
                updated_ms=row["updated_ms"],
                time_zone=row["time_zone"],
                quiet_start_minute=row["quiet_start_minute"],
                quiet_end_minute=row["quiet_end_minute"],
                notifications_disabled=bool(row["notifications_disabled"]),
                app_uninstalled=bool(row["app_uninstalled"]),
            )
        attribute_rows = list(store.attribute_rows(conn, user_ids))
        catalog = self._read_catalog(conn, {row["name"] for row in attribute_rows})
        for row in attribute_rows:
            declared = catalog.get(row["name"])
            if declared is None or row["user_id"] not in by_id:
                continue
            kind = declared["value_type"]
            by_id[row["user_id"]].attributes[row["name"]] = (kind, value_from_row(kind, row))
        for row in store.live_tag_rows(conn, user_ids, now):
            if row["user_id"] in by_id:
                by_id[row["user_id"]].tags.append((row["tag"], row["expires_ms"]))
        return by_id

    def update_profile(self, patch: Profile, paths: Sequence[str]) -> Profile:
        """Applies the fields named by ``paths`` (an update mask) from ``patch``."""
        error = self._update_profiles([(patch, paths)])[0]
        if error is not None:
            raise error
        return self.get_profile(patch.external_id)

    def batch_update_profiles(
        self, items: Sequence[tuple[Profile | ServiceError, Sequence[str]]]
    ) -> list[ServiceError | None]:
        """Applies many UpdateProfile changes in one transaction; one error (or None when
        stored) per item, the fields it names prefixed ``requests[i].``.

        An item is (patch, update mask); the patch may already be the error of a malformed
        name. Each item is checked and applied exactly as ``update_profile`` does it, bad
        items and unknown users refused alone.
        """
        if not items:
            raise InvalidArgument("requests", "name at least one change")
        if len(items) > self.config.max_batch_items:
            raise InvalidArgument("requests", f"at most {self.config.max_batch_items} per call")
        errors = self._update_profiles(items)
        return [e if e is None else _within(f"requests[{i}]", e) for i, e in enumerate(errors)]

    def _update_profiles(
        self, items: Sequence[tuple[Profile | ServiceError, Sequence[str]]]
    ) -> list[ServiceError | None]:
        """The update path of UpdateProfile and BatchUpdateProfiles: one error (or None) per
        item, the valid items written in one transaction by set statements.

        An item's checks run in one order (mask, fields, external id, then inside the
        transaction its user and its attributes against the catalogue), so an item with
        several faults is refused for the same one whichever RPC carried it.
        """
        errors: list[ServiceError | None] = [None] * len(items)
        checked: dict[int, tuple[Profile, set[str], dict[str, object]]] = {}
        for i, (patch, paths) in enumerate(items):
            try:
                if isinstance(patch, ServiceError):
                    raise patch
                checked[i] = (patch, set(paths), self._checked_update(patch, paths))
            except ServiceError as error:
                errors[i] = error
        if not checked:
            return errors
        now = self.now_ms()
        with self.engine.begin() as conn:
            ids = store.resolve_ids(conn, [patch.external_id for patch, _, _ in checked.values()])
            touches_attributes = any(
                p.partition(".")[0] == "attributes" for _, mask, _ in checked.values() for p in mask
            )
            catalog = store.catalog(conn) if touches_attributes else {}
            writes: dict[int, _ProfileWrite] = {}
            for i, (patch, mask, columns) in checked.items():
                user_id = ids.get(patch.external_id)
                if user_id is None:
                    errors[i] = NotFound("profile", f"profiles/{patch.external_id}")
                    continue
                try:
                    replaced, chosen = self._attribute_changes(catalog, patch, mask)
                except InvalidArgument as error:
                    errors[i] = error
                    continue
                writes.setdefault(user_id, _ProfileWrite()).add(
                    columns, replaced, chosen, patch.tags if "tags" in mask else None
                )
            pending = self._mark_changes(conn, self._write_profiles(conn, writes, now), now)
        self.publish_changes(pending)
        return errors

    def _checked_update(self, patch: Profile, paths: Sequence[str]) -> dict[str, object]:
        """The checks of an update that need no database (mask, fields, external id);
        returns the profiles columns it sets."""
        if not paths:
            raise InvalidArgument("update_mask", "name at least one field to update")
        for path in paths:
            if path not in UPDATABLE_PATHS and not (
                path.startswith("attributes.") and ATTRIBUTE_NAME.match(path[len("attributes."):])
            ):
                raise InvalidArgument("update_mask", f"cannot update {path!r}")
        self._check_profile_fields(patch, paths)
        self._check_external_id("profile.name", patch.external_id)
        columns: dict[str, object] = {}
        if "time_zone" in paths:
            columns["time_zone"] = patch.time_zone
        if "quiet_hours" in paths:
            columns["quiet_start_minute"] = patch.quiet_start_minute
            columns["quiet_end_minute"] = patch.quiet_end_minute
        if "notifications_disabled" in paths:
            columns["notifications_disabled"] = patch.notifications_disabled
        if "app_uninstalled" in paths:
            columns["app_uninstalled"] = patch.app_uninstalled
        return columns

    def _attribute_changes(
        self, catalog: dict[str, dict], patch: Profile, paths: set[str]
    ) -> tuple[dict[str, TypedValue] | None, dict[str, TypedValue]]:
        """An update's attributes checked against the catalogue: the replacement set (None
        unless the mask names ``attributes``) and the single attributes it names (absent
        from the patch: cleared)."""
        replaced = None
        if "attributes" in paths:
            self._check_attributes(catalog, patch.attributes, "profile.attributes")
            replaced = patch.attributes
        single = sorted(p[len("attributes."):] for p in paths if p.startswith("attributes."))
        chosen = {name: patch.attributes.get(name, (None, None)) for name in single}
        if chosen:
            self._check_attributes(catalog, chosen, "profile.attributes")
        return replaced, chosen

    @staticmethod
    def _write_profiles(conn, writes: dict[int, _ProfileWrite], now: int) -> ChangeSet:
        """Writes the changes of many users with a few set statements: attributes and tags
        that go deleted, the others upserted, and the profiles rows updated with one
        executemany per combination of columns changed. Returns the users whose attributes
        or tags changed.

        Each statement says which rows it changed (RETURNING): a delete the rows it removed,
        an upsert the rows it inserted or found different. What it changed is read from the
        rows as they were when written, so a concurrent writer cannot make a change look
        like none. On PostgreSQL the users' profiles rows are locked first, in internal-id
        order: the statements below each touch a different subset of the users (one per
        combination of columns, attributes replaced or cleared), so two batches over the same
        users would otherwise take their row locks in different orders and deadlock.
        """
        changed = ChangeSet()
        if not writes:
            return changed
        writes = dict(sorted(writes.items()))
        if conn.dialect.name == "postgresql":
            conn.execute(select(profiles.c.id)
                         .where(store.in_set(conn, profiles.c.id, list(writes)))
                         .order_by(profiles.c.id).with_for_update())
        attributes, tags = profile_attributes, profile_tags
        replaced = [u for u, w in writes.items() if w.replace_attributes]
        if replaced:
            # Every other attribute of these users goes; those named are upserted below.
            kept = store.pair_keys(
                (u, name) for u in replaced
                for name, (kind, _v) in writes[u].attributes.items() if kind is not None
            )
            changed.add(conn.execute(
                delete(attributes).where(
                    store.in_set(conn, attributes.c.user_id, replaced),
                    not_(store.in_set(conn, store.pair_key(attributes.c.user_id, attributes.c.name),
                                      kept)),
                ).returning(attributes.c.user_id)
            ).scalars(), "attributes")
        cleared = store.pair_keys(
            (u, name)
            for u, w in writes.items() if not w.replace_attributes
            for name, (kind, _v) in w.attributes.items() if kind is None
        )
        if cleared:
            changed.add(conn.execute(
                delete(attributes).where(store.in_set(
                    conn, store.pair_key(attributes.c.user_id, attributes.c.name), cleared))
                .returning(attributes.c.user_id)
            ).scalars(), "attributes")
        changed.add(store.upsert(conn, attributes, [
            attribute_row(u, name, kind, value)
            for u, w in writes.items() for name, (kind, value) in w.attributes.items()
            if kind is not None
        ], ["user_id", "name"],
            where=lambda stmt: store.differs(stmt, attributes, store.ATTRIBUTE_VALUE_COLUMNS),
            returning=attributes.c.user_id,
        ), "attributes")
        retagged = [u for u, w in writes.items() if w.tags is not None]
        if retagged:
            kept = store.pair_keys((u, tag) for u in retagged for tag in writes[u].tags)
            removed = conn.execute(
                delete(tags).where(
                    store.in_set(conn, tags.c.user_id, retagged),
                    not_(store.in_set(conn, store.pair_key(tags.c.user_id, tags.c.tag), kept)),
                ).returning(tags.c.user_id, tags.c.expires_ms)
            ).all()
            # An expired tag was already out of every rule's sight.
            changed.add((u for u, expires in removed if expires is None or expires > now), "tags")
            changed.add(store.upsert(conn, tags, [
                {"user_id": u, "tag": tag, "expires_ms": expires}
                for u in retagged for tag, expires in writes[u].tags.items()
            ], ["user_id", "tag"],
                where=lambda stmt: store.differs(stmt, tags, ["expires_ms"]),
                returning=tags.c.user_id,
            ), "tags")
        by_columns: dict[tuple[str, ...], list[dict]] = {}
        for u, w in writes.items():
            names = tuple(sorted(w.columns))
            by_columns.setdefault(names, []).append(
                {"b_id": u, "b_updated_ms": now, **{f"b_{c}": w.columns[c] for c in names}}
            )
        for names, rows in by_columns.items():
            conn.execute(
                update(profiles).where(profiles.c.id == bindparam("b_id")).values(
                    updated_ms=bindparam("b_updated_ms"), **{c: bindparam(f"b_{c}") for c in names}
                ),
                rows,
            )
        return changed

    def list_profiles(
        self, page_size: int, after_id: int, filters: dict
    ) -> tuple[list[Profile], int | None]:
        """One page of profiles in internal-id order; returns the next page's start or None."""
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or 100, 1000)
        attribute = None
        with self.engine.connect() as conn:
            if filters.get("attribute"):
                name, (kind, value) = filters["attribute"]
                declared = store.catalog(conn).get(name)
                if declared is None:
                    raise InvalidArgument("attribute_equals.name", "unknown attribute")
                if kind != declared["value_type"] or kind == "string_list":
                    raise InvalidArgument(
                        "attribute_equals.value", f"expects a {declared['value_type']} value"
                    )
                attribute = (name, COLUMN_FOR_TYPE[kind], value)
            if filters.get("rfm_group") and filters["rfm_group"] not in traits.RFM_GROUPS:
                raise InvalidArgument("rfm_group", f"one of {', '.join(traits.RFM_GROUPS)}")
            ids = store.list_profile_ids(
                conn,
                after_id=after_id,
                limit=size + 1,
                now_ms=self.now_ms(),
                tag=filters.get("tag") or None,
                rfm_group=filters.get("rfm_group") or None,
                lifecycle_stage=filters.get("lifecycle_stage") or None,
                attribute=attribute,
                created_after_ms=filters.get("created_after_ms"),
            )
            page, more = ids[:size], len(ids) > size
            by_id = self._load_profiles(conn, page)
        return [by_id[i] for i in page if i in by_id], (page[-1] if more else None)

    def delete_profile(self, external_id: str) -> None:
        """Removes the profile and all its data and tells other services (no audit record)."""
        self._remove_user(external_id, audit=None)

    # --- tags ----------------------------------------------------------------------------

    def add_tags(self, external_id: str, tags: Sequence[tuple[str, int | None]]) -> Profile:
        if not tags:
            raise InvalidArgument("tags", "name at least one tag")
        now = self.now_ms()
        for i, (tag, expires_ms) in enumerate(tags):
            self._check_tag(f"tags[{i}].tag", tag)
            if expires_ms is not None and expires_ms <= now:
                raise InvalidArgument(f"tags[{i}].expire_time", "must be in the future")
        with self.engine.begin() as conn:
            user_id = self._user_id(conn, external_id)
            changed = ChangeSet()
            if self._write_tags(conn, user_id, tags, replace=False):
                changed.add([user_id], "tags")
            pending = self._mark_changes(conn, changed, now)
        self.publish_changes(pending)
        return self.get_profile(external_id)

    def remove_tags(self, external_id: str, tags: Sequence[str]) -> Profile:
        if not tags:
            raise InvalidArgument("tags", "name at least one tag")
        now = self.now_ms()
        with self.engine.begin() as conn:
            user_id = self._user_id(conn, external_id)
            removed = conn.execute(
                delete(profile_tags).where(
                    profile_tags.c.user_id == user_id, profile_tags.c.tag.in_(list(tags))
                ).returning(profile_tags.c.expires_ms)
            ).scalars().all()
            changed = ChangeSet()
            # Removing a tag that had expired changes nothing a rule sees.
            if any(expires is None or expires > now for expires in removed):
                changed.add([user_id], "tags")
            pending = self._mark_changes(conn, changed, now)
        self.publish_changes(pending)
        return self.get_profile(external_id)

    # --- identity ------------------------------------------------------------------------

    def merge_identity(self, alias: str, external_id: str) -> tuple[Profile, bool]:
        """Folds an anonymous id (and its profile, if any) into a known user.

        Returns the merged profile and whether an alias profile existed. Merging the same
        alias into the same user again is a no-op; into another user it is refused.
        """
        self._check_external_id("anonymous_id", alias)
        self._check_external_id("name", external_id)
        if alias == external_id:
            raise InvalidArgument("anonymous_id", "must differ from the known user's id")
        now = self.now_ms()
        with self.engine.begin() as conn:
            user_id = conn.execute(
                select(profiles.c.id).where(profiles.c.external_id == external_id)
            ).scalar()
            if user_id is None:
                raise NotFound("profile", f"profiles/{external_id}")
            linked = conn.execute(
                select(identity_links.c.user_id).where(identity_links.c.alias_external_id == alias)
            ).scalar()
            if linked is not None and linked != user_id:
                raise FailedPrecondition(
                    "the anonymous id is already merged into another user",
                    [("IDENTITY_LINKED", f"profiles/{alias}", "merged into another user")],
                )
            alias_id = conn.execute(
                select(profiles.c.id).where(profiles.c.external_id == alias)
            ).scalar()
            changed = ChangeSet()
            if alias_id is not None:
                moved = store.merge_user_rows(conn, alias_id, user_id)
                traits.refresh_users(conn, [user_id], self.config, self.as_of_ms(), now)
                for table, kind in ((events, "traits"), (profile_attributes, "attributes"),
                                    (profile_tags, "tags"), (consents, "consent")):
                    if moved[table.name]:
                        changed.add([user_id], kind)
            if linked is None:
                conn.execute(
                    identity_links.insert().values(
                        alias_external_id=alias, user_id=user_id, merged_ms=now
                    )
                )
            if alias_id is not None or linked is None:
                changed.add([user_id], "identity")
            conn.execute(update(profiles).where(profiles.c.id == user_id).values(updated_ms=now))
            pending = self._mark_changes(conn, changed, now)
        self.publish_changes(pending)
        if alias_id is not None:
            self._publish_erasure(alias_id, alias, "merged", now)
        return self.get_profile(external_id), alias_id is not None

    # --- events --------------------------------------------------------------------------

    def check_batch_size(self, count: int, field: str = "events") -> None:
        if count == 0:
            raise InvalidArgument(field, "must hold at least one event")
        if count > self.config.max_batch_events:
            raise InvalidArgument(
                field, f"holds {count} events; at most {self.config.max_batch_events} per call"
            )

    def validate_event(self, event: EventIn, field: str, now_ms: int) -> None:
        """Raises InvalidArgument naming the offending field of one event."""
        if not event.event_id or len(event.event_id) > MAX_EVENT_ID:
            raise InvalidArgument(f"{field}.event_id", f"must be 1..{MAX_EVENT_ID} characters")
        self._check_external_id(f"{field}.user_id", event.external_id)
        if not EVENT_TYPE.match(event.event_type or ""):
            raise InvalidArgument(f"{field}.event_type", "must be 1..128 of [A-Za-z0-9_.:-]")
        if event.ts_ms is None:
            raise InvalidArgument(f"{field}.timestamp", "is required")
        if event.ts_ms > now_ms + self.config.max_future_skew_s * 1000:
            raise InvalidArgument(
                f"{field}.timestamp",
                f"is more than {self.config.max_future_skew_s} s in the future",
            )
        if event.ts_ms < MIN_EVENT_TS_MS:
            raise InvalidArgument(f"{field}.timestamp", "is before 1900")
        if self.config.retention_days and event.ts_ms < now_ms - self.config.retention_days * DAY_MS:
            raise InvalidArgument(
                f"{field}.timestamp",
                f"is older than the {self.config.retention_days}-day retention window",
            )
        if event.value is not None and not math.isfinite(event.value):
            raise InvalidArgument(f"{field}.value", "must be a finite number")
        if len(event.properties) > MAX_PROPERTIES:
            raise InvalidArgument(f"{field}.properties", f"at most {MAX_PROPERTIES} properties")
        for name, (kind, value) in event.properties.items():
            if not PROPERTY_NAME.match(name):
                raise InvalidArgument(f"{field}.properties[{name}]", "invalid property name")
            check_value(f"{field}.properties[{name}]", kind, value)

    def event_row(self, event: EventIn) -> EventRow:
        """The storage tuple of one validated event (properties packed as JSON once)."""
        properties = (
            json.dumps(
                {k: _json_value(kind, v) for k, (kind, v) in event.properties.items()},
                separators=(",", ":"),
            )
            if event.properties
            else None
        )
        return (
            event.event_id, event.external_id, event.event_type, int(event.ts_ms), event.value,
            properties,
        )

    def event_checker(self, now_ms: int, to_event: Callable[[object], EventIn]) -> EventChecker:
        """A validator for a stream's events (see ``EventChecker``)."""
        return EventChecker(self, now_ms, to_event)

    def ingest_events(
        self, batch: Sequence[EventIn], field: str = "events", prevalidated: bool = False
    ) -> IngestResult:
        """Stores the valid events of a batch and reports every item.

        Invalid items (and, when unknown users are refused, their events) are reported with
        their error and skipped; valid items are committed together in one transaction.
        Re-sent event ids are reported as duplicates and stored once. ``prevalidated`` skips
        the per-event checks for a caller that already ran ``validate_event`` on each.
        """
        self.check_batch_size(len(batch), field)
        now = self.now_ms()
        outcomes = [EventOutcome(index=i, event_id=e.event_id) for i, e in enumerate(batch)]
        seen: set[str] = set()
        valid: list[int] = []
        for i, event in enumerate(batch):
            if not prevalidated:
                try:
                    self.validate_event(event, f"{field}[{i}]", now)
                except InvalidArgument as exc:
                    outcomes[i].error = exc
                    continue
            if event.event_id in seen:
                outcomes[i].duplicate = True
                continue
            seen.add(event.event_id)
            valid.append(i)
        stored, ids, _known = self._store_rows(
            EventColumns.from_rows([self.event_row(batch[i]) for i in valid]), now
        )
        self.publish_events(stored)
        stored_ids = set(stored.event_ids)
        touched: set[int] = set()
        for i in valid:
            event = batch[i]
            if event.external_id not in ids:
                outcomes[i].error = NotFound(
                    "profile",
                    f"profiles/{event.external_id}",
                    f"{field}[{i}].user_id: unknown user {event.external_id!r}",
                )
            elif event.event_id not in stored_ids:
                outcomes[i].duplicate = True
            else:
                touched.add(ids[event.external_id])
        rejected = sum(1 for o in outcomes if o.error is not None)
        duplicates = sum(1 for o in outcomes if o.duplicate)
        return IngestResult(outcomes, len(stored), duplicates, rejected, touched)

    def write_rows(
        self,
        rows: EventColumns | Sequence[EventRow],
        refresh: bool = True,
        resolved: Callable[[EventColumns], None] | None = None,
    ) -> tuple[int, int, EventColumns, set[int]]:
        """Commits validated events of a stream and, with ``refresh``, their users' traits.

        Returns (stored, duplicates, the stored events, users whose traits are due). Any number
        of rows is committed in one transaction. A repeated id within ``rows`` or one already
        stored counts as a duplicate; events of unknown users (when they are refused) count
        as neither, as the stream checked them before buffering. The caller passes the
        stored events to ``publish_events``. Without ``refresh`` the returned users include
        those of events already stored: a client re-sends a stream after a failure, and the
        refresh of its earlier commit may have been lost with the process, so it is redone.
        ``resolved`` is called, inside the transaction, with the events of known users once
        their internal ids are known.
        """
        batch = rows if isinstance(rows, EventColumns) else EventColumns.from_rows(rows)
        if not batch:
            return 0, 0, NO_EVENTS, set()
        unique = batch
        if len(set(batch.event_ids)) < len(batch):
            # The first occurrence of each id, in arrival order.
            first = dict(zip(reversed(batch.event_ids), range(len(batch) - 1, -1, -1)))
            unique = batch.take(sorted(first.values()))
        stored, ids, known = self._store_rows(unique, self.now_ms(), refresh, resolved)
        touched = set(stored.user_ids)
        if not refresh and known > len(stored):
            touched |= {ids[e] for e in unique.external_ids if e in ids}
        duplicates = len(batch) - len(unique) + known - len(stored)
        return len(stored), duplicates, stored, touched

    def defer_traits(self, user_ids: Iterable[int]) -> None:
        """Marks users whose traits the next ``refresh_traits`` call must refresh."""
        with self._stale_lock:
            self._stale_users.update(user_ids)

    def refresh_traits(self, user_ids: Iterable[int] = ()) -> int:
        """Refreshes ``user_ids`` and every deferred user in one pass; returns users done.

        Users whose refresh failed (the database went away after their events' commit)
        stay deferred and are retried by the next call or maintenance round, so their
        traits lag at most until then (or until the next full recompute if the process
        stops first). The users are announced on ``profile:changes`` (kind traits): their
        events were announced before their traits were fresh.
        """
        with self._traits_lock:
            with self._stale_lock:
                wanted = set(user_ids) | self._stale_users
                self._stale_users = set()
            if not wanted:
                return 0
            now = self.now_ms()
            try:
                with self.engine.begin() as conn:
                    done = traits.refresh_users(conn, wanted, self.config, self.as_of_ms(), now)
                    pending = self._mark_changes(conn, ChangeSet().add(wanted, "traits"), now)
            except Exception:
                self.defer_traits(wanted)
                raise
        self.publish_changes(pending)
        return done

    def _store_rows(
        self,
        batch: EventColumns,
        now: int,
        refresh: bool = True,
        resolved: Callable[[EventColumns], None] | None = None,
    ) -> tuple[EventColumns, dict[str, int], int]:
        """Inserts rows with distinct event ids; with ``refresh``, their users' traits too.

        Returns (the events stored now, external id -> internal id, how many rows name a
        known user). The INSERT first only counts what it stored: a batch of new events,
        the usual case, needs nothing more (RETURNING would cost SQLite another pass over
        the rows). When the count falls short, some ids were stored before (a re-sent
        stream, or a concurrent call with the same ids), and the transaction is rolled back
        and redone with RETURNING, which names exactly the rows stored.
        """
        if not batch:
            return NO_EVENTS, {}, 0
        try:
            return self._store_columns(batch, now, refresh, resolved, exact=False)
        except _AlreadyStored:
            return self._store_columns(batch, now, refresh, resolved, exact=True)

    def _store_columns(
        self, batch: EventColumns, now: int, refresh: bool, resolved, exact: bool
    ) -> tuple[EventColumns, dict[str, int], int]:
        with (self._batches or self.engine).begin() as conn:
            stored, ids, known = self._store_in(conn, batch, now, refresh, resolved, exact)
        if self._batches is not None:
            self._checkpoint_soon()
        return stored, ids, known

    def _store_in(
        self, conn, batch: EventColumns, now: int, refresh: bool, resolved, exact: bool
    ) -> tuple[EventColumns, dict[str, int], int]:
        ids = self._user_ids_for_events(conn, batch.external_ids, now)
        known = batch.with_users(ids)
        if resolved is not None:
            resolved(known)
        if not exact:
            count, first, last = store.insert_new_events(conn, known.storage_rows())
            if count < len(known):
                raise _AlreadyStored  # rolls the transaction back
            stored = known
        else:
            stored_ids = store.insert_events(conn, list(known.storage_rows()))
            stored = known
            if len(stored_ids) < len(known):
                stored = known.take([i for i, e in enumerate(known.event_ids) if e in stored_ids])
            first, last = min(stored_ids.values(), default=0), max(stored_ids.values(), default=0)
        if stored and self.redis is not None:
            # Committed with the events, so they are announced even if this process stops
            # before publishing them (see services/profile/announce.py).
            stored = dataclasses.replace(stored, marker=announce.mark_events(
                conn, first, last, now, self.config.announce_grace_s * 1000))
        if stored and refresh:
            traits.refresh_users(conn, set(stored.user_ids), self.config, self.as_of_ms(), now)
        return stored, ids, len(known)

    def _checkpoint_soon(self) -> None:
        """Asks the checkpoint thread to copy the SQLite write-ahead log into the database.

        Event batches commit without checkpointing (see ``store.batch_engine``). Here it
        runs beside the next batch instead (a passive checkpoint does not block writers);
        requests made while one is queued share it.
        """
        with self._checkpoint_lock:
            if self._checkpoint_queued:
                return
            self._checkpoint_queued = True
        try:
            self._checkpointer.submit(self._checkpoint)
        except RuntimeError:
            # Shutting down: the next commit of any connection checkpoints as usual.
            self._checkpoint_queued = False

    def _checkpoint(self) -> None:
        with self._checkpoint_lock:
            self._checkpoint_queued = False
        try:
            with self.engine.connect() as conn:
                store.checkpoint(conn)
        except Exception:
            # The log keeps growing until a later checkpoint, by this thread or a commit.
            log.exception("write-ahead log checkpoint failed")

    def unknown_users(self, external_ids: Iterable[str]) -> list[str]:
        """The ids among ``external_ids`` that name no profile (nor merged alias)."""
        wanted = list(dict.fromkeys(external_ids))
        with self.engine.connect() as conn:
            found = store.resolve_ids(conn, wanted)
        return [e for e in wanted if e not in found]

    def _user_ids_for_events(self, conn, external_ids: Iterable[str], now: int) -> dict[str, int]:
        wanted = list(dict.fromkeys(external_ids))
        ids = store.resolve_ids(conn, wanted)
        missing = [e for e in wanted if e not in ids]
        if missing and self.config.unknown_user == "create":
            created = store.create_bare_profiles(conn, missing, now)
            ids.update(created)
            raced = [e for e in missing if e not in created]
            if raced:  # created by a concurrent call since the lookup
                ids.update(store.resolve_ids(conn, raced))
        return ids

    def publish_events(self, stored: EventColumns, encoded: Sequence[str] | None = None) -> int:
        """Appends stored events to ``profile:events``, one Lua call per ``PUBLISH_CHUNK``.

        Each chunk travels as a single JSON argument, column by column, that the script
        unpacks server side: packing every field as its own command argument cost more than
        the SQL insert. The events are already committed with their marker; once published
        the marker is retired, and if Redis is unreachable it stays for the maintenance pass,
        so no stored event goes unannounced (see services/profile/announce.py). ``encoded``
        is ``stored.announcements()`` when the caller has it already. Returns how many were
        announced.
        """
        if not stored or self.redis is None:
            return 0
        try:
            self._send_events(stored, encoded)
        except redis.RedisError as exc:
            log.warning("profile:events publication deferred: %s", exc)
            self._publication_failed(stored.marker)
            return 0
        self._publication_done(stored.marker)
        return len(stored)

    def _send_events(self, stored: EventColumns, encoded: Sequence[str] | None = None) -> None:
        for number, start in enumerate(range(0, len(stored), PUBLISH_CHUNK)):
            self._script(PUBLISH_LUA)(
                keys=[EVENTS_STREAM],
                args=[self.config.events_stream_maxlen,
                      encoded[number] if encoded is not None
                      else stored.announcement(start, start + PUBLISH_CHUNK)],
            )

    def publish_changes(self, changes: ProfileChanges) -> int:
        """Appends one entry per changed user to ``profile:changes``, one Lua call per
        ``CHANGES_CHUNK`` users; the marker committed with the changes is retired once they
        are published, or left for the maintenance pass if Redis is unreachable. Returns how
        many were announced."""
        if not changes or self.redis is None:
            return 0
        try:
            self._send_changes(changes)
        except redis.RedisError as exc:
            log.warning("profile:changes publication deferred: %s", exc)
            self._publication_failed(changes.marker)
            return 0
        self._publication_done(changes.marker)
        return len(changes)

    def _send_changes(self, changes: ProfileChanges) -> None:
        for encoded in changes.announcements():
            self._script(announce.CHANGES_LUA)(
                keys=[CHANGES_STREAM], args=[self.config.changes_stream_maxlen, encoded])

    def _mark_changes(self, conn, changed: ChangeSet, now: int) -> ProfileChanges:
        """Records, in the transaction that made them, the changes to publish after its
        commit (nothing when there are none, or no Redis to announce them on)."""
        if not changed or self.redis is None:
            return NO_CHANGES
        return announce.mark_changes(conn, changed, now, self.config.announce_grace_s * 1000)

    def _script(self, source: str):
        """The registered Lua script of ``source`` on the current Redis client."""
        scripts = self._scripts
        if scripts is None or scripts[0] is not self.redis:
            scripts = self._scripts = (self.redis, {})
        script = scripts[1].get(source)
        if script is None:
            script = scripts[1][source] = self.redis.register_script(source)
        return script

    def _publication_done(self, marker: str) -> None:
        """Has the retiring thread delete ``marker``; retirements asked for while one is
        queued share its statement."""
        if not marker:
            return
        with self._announce_lock:
            self._unpublished.discard(marker)
            self._published.add(marker)
            if self._retire_queued:
                return
            self._retire_queued = True
        try:
            self._retirer.submit(self._retire)
        except RuntimeError:
            # Shutting down: close() retires what is left.
            with self._announce_lock:
                self._retire_queued = False

    def _publication_failed(self, marker: str) -> None:
        if marker:
            with self._announce_lock:
                self._unpublished.add(marker)

    def _retire(self) -> None:
        """Deletes the markers of published announcements, all in one statement. They stay
        in ``_published`` until deleted, so this process's maintenance pass never takes
        them for left behind while they are being deleted."""
        with self._announce_lock:
            self._retire_queued = False
            markers = set(self._published)
        if not markers:
            return
        try:
            with (self._batches or self.engine).begin() as conn:
                announce.retire(conn, markers)
        except Exception:
            # Kept for the next retirement; if the process stops first, a maintenance pass
            # announces them once more (a duplicate, never a loss).
            log.exception("retiring %d announcement markers failed", len(markers))
            return
        with self._announce_lock:
            self._published -= markers

    def announce_left_behind(self, limit: int = 500) -> int:
        """Announces what committed writes left unannounced; returns the entries published.

        Takes the markers due (committed at least ``PROFILE_ANNOUNCE_GRACE_SECONDS`` ago: a
        process stopped before publishing or retiring them) and those whose publication this
        process saw fail, re-reads what each names, publishes it and deletes the marker. A
        Redis failure ends the pass; what is left waits for the next one.
        """
        if self.redis is None:
            return 0
        self._retire()
        total = 0
        while True:
            with self._announce_lock:
                # What this process published is not announced again, deleted or not.
                failed, retiring = set(self._unpublished), set(self._published)
            with self.engine.connect() as conn:
                markers = [m for m in announce.due(conn, self.now_ms(), failed, limit)
                           if m.marker not in retiring]
            done: list[str] = []
            try:
                for marker in markers:
                    total += self._announce_again(marker)
                    done.append(marker.marker)
            except redis.RedisError as exc:
                log.warning("announcements left behind wait for Redis: %s", exc)
                markers = []
            finally:
                with self.engine.begin() as conn:
                    announce.retire(conn, done)
                with self._announce_lock:
                    self._unpublished.difference_update(done)
            if len(markers) < limit:
                return total

    def _announce_again(self, marker: announce.Marker) -> int:
        """Publishes what one marker names, as read now; returns the entries published."""
        if marker.stream == announce.CHANGES:
            with self.engine.connect() as conn:
                changes = announce.marked_changes(conn, marker)
            if changes:
                self._send_changes(changes)
            return len(changes)
        with self.engine.connect() as conn:
            rows = announce.event_rows(conn, marker)
        if rows:
            self._send_events(EventColumns(
                event_ids=[r["event_id"] for r in rows],
                external_ids=[r["external_id"] for r in rows],
                event_types=[r["event_type"] for r in rows],
                ts_ms=[r["ts_ms"] for r in rows],
                values=[r["value"] for r in rows],
                properties=[
                    json.dumps(r["properties"], separators=(",", ":")) if r["properties"] else None
                    for r in rows
                ],
                user_ids=[r["user_id"] for r in rows],
            ))
        return len(rows)

    def list_events(
        self,
        external_id: str,
        *,
        event_type: str = "",
        start_ms: int | None = None,
        end_ms: int | None = None,
        page_size: int = 100,
        before_row_id: int | None = None,
    ) -> tuple[list[dict], int | None]:
        """One page of a user's events, newest first; returns the next page's cursor or None."""
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or 100, 1000)
        with self.engine.connect() as conn:
            user_id = self._user_id(conn, external_id, "name")
            query = select(events).where(events.c.user_id == user_id)
            if event_type:
                query = query.where(events.c.event_type == event_type)
            if start_ms is not None:
                query = query.where(events.c.ts_ms >= start_ms)
            if end_ms is not None:
                query = query.where(events.c.ts_ms < end_ms)
            if before_row_id is not None:
                query = query.where(events.c.id < before_row_id)
            rows = conn.execute(
                query.order_by(events.c.id.desc()).limit(size + 1)
            ).mappings().all()
        page = [dict(r) for r in rows[:size]]
        return page, (page[-1]["id"] if len(rows) > size else None)

    # --- traits --------------------------------------------------------------------------

    def recompute_traits(self, as_of_ms: int | None = None, external_ids: Sequence[str] = ()) -> dict:
        """A full recompute, or an incremental refresh of the named users only."""
        as_of = self.as_of_ms(as_of_ms)
        now = self.now_ms()
        if not external_ids:
            with self._traits_lock:
                # Everyone is recomputed, so nobody waits for a deferred refresh any more.
                with self._stale_lock:
                    self._stale_users = set()
                with self.engine.begin() as conn:
                    summary = traits.recompute_all(conn, self.config, as_of, now,
                                                   changes=self.redis is not None)
                    pending = self._mark_changes(
                        conn, ChangeSet().add(summary.pop("changed"), "traits"), now)
            self.publish_changes(pending)
            return {**summary, "full": True, "as_of_ms": as_of}
        if len(external_ids) > self.config.max_batch_items:
            raise InvalidArgument("names", f"at most {self.config.max_batch_items}")
        with self.engine.begin() as conn:
            ids = store.resolve_ids(conn, external_ids)
            missing = [e for e in external_ids if e not in ids]
            if missing:
                raise NotFound("profile", f"profiles/{missing[0]}")
            before = traits.visible(conn, ids.values())
            users = traits.refresh_users(conn, list(ids.values()), self.config, as_of, now)
            after = traits.visible(conn, ids.values())
            pending = self._mark_changes(conn, ChangeSet().add(
                (u for u in set(before) | set(after) if before.get(u) != after.get(u)), "traits",
            ), now)
        self.publish_changes(pending)
        return {"users": users, "full": False, "as_of_ms": as_of}

    def get_traits(self, external_id: str) -> dict:
        """The computed traits, per-event-type counts and model scores of one user."""
        self._check_external_id("name", external_id)
        found = self._traits_of([external_id])[0]
        if found is None:
            raise NotFound("profile", f"profiles/{external_id}")
        return found

    def batch_get_traits(self, external_ids: Sequence[str]) -> list[dict | None]:
        """Traits of many users in request order (None for an unknown user), read by one query
        after the names are resolved."""
        if not external_ids:
            raise InvalidArgument("names", "name at least one profile")
        if len(external_ids) > self.config.max_batch_items:
            raise InvalidArgument("names", f"at most {self.config.max_batch_items} per call")
        for i, external_id in enumerate(external_ids):
            self._check_external_id(f"names[{i}]", external_id)
        return self._traits_of(external_ids)

    def _traits_of(self, external_ids: Sequence[str]) -> list[dict | None]:
        with self.engine.connect() as conn:
            ids = store.resolve_ids(conn, external_ids)
            rows = store.traits_rows(conn, ids.values())
        by_user: dict[int, dict] = {}
        trait_columns = [c.name for c in computed_traits.c]
        for row in rows:
            entry = by_user.setdefault(
                row["profile_id"], {"traits": None, "event_counts": [], "scores": []}
            )
            if row["user_id"] is not None and entry["traits"] is None:
                entry["traits"] = {c: row[c] for c in trait_columns}
            if row["d_kind"] == "count":
                entry["event_counts"].append({
                    "event_type": row["d_key"], "count_7d": row["count_7d"],
                    "count_30d": row["count_30d"], "count_90d": row["count_90d"],
                    "count_total": row["count_total"],
                })
            elif row["d_kind"] == "score":
                entry["scores"].append({
                    "model_name": row["d_key"], "score": row["score"],
                    "model_version": row["model_version"], "scored_ms": row["scored_ms"],
                })
        out: list[dict | None] = []
        for external_id in external_ids:
            user_id = ids.get(external_id)
            entry = by_user.get(user_id) if user_id is not None else None
            # A user erased between the two reads is as unknown as one never created.
            out.append(None if entry is None else
                       {"user_id": user_id, "external_id": external_id, **entry})
        return out

    def write_scores(self, items: Sequence[ScoreIn]) -> list[ServiceError | None]:
        """Upserts model scores; returns one error (or None when stored) per item.

        Items naming an unknown user or carrying a bad value are refused one by one; the
        others are stored together.
        """
        if not items:
            raise InvalidArgument("scores", "must hold at least one score")
        if len(items) > self.config.max_batch_events:
            raise InvalidArgument("scores", f"at most {self.config.max_batch_events} per call")
        now = self.now_ms()
        errors: list[ServiceError | None] = [None] * len(items)
        for i, item in enumerate(items):
            field = f"scores[{i}]"
            if not item.model_name or len(item.model_name) > MAX_MODEL_NAME:
                errors[i] = InvalidArgument(f"{field}.model_name", "must be 1..128 characters")
            elif not item.model_version or len(item.model_version) > MAX_MODEL_VERSION:
                errors[i] = InvalidArgument(f"{field}.model_version", "must be 1..64 characters")
            elif item.score != item.score or item.score in (float("inf"), float("-inf")):
                errors[i] = InvalidArgument(f"{field}.score", "must be a finite number")
            elif not item.user_id and not item.external_id:
                errors[i] = InvalidArgument(f"{field}.user_id", "set user_id or external_id")
        with self.engine.begin() as conn:
            by_external = store.resolve_ids(
                conn, [it.external_id for it, e in zip(items, errors) if e is None and it.external_id]
            )
            known = store.existing_user_ids(
                conn, [it.user_id for it, e in zip(items, errors) if e is None and it.user_id]
            )
            rows: dict[tuple[int, str], dict] = {}
            for i, item in enumerate(items):
                if errors[i] is not None:
                    continue
                user_id = item.user_id if item.user_id else by_external.get(item.external_id)
                if user_id is None or (item.user_id and item.user_id not in known):
                    errors[i] = NotFound(
                        "profile",
                        f"profiles/{item.external_id}" if item.external_id else f"users/{item.user_id}",
                        f"scores[{i}].user_id: unknown user",
                    )
                    continue
                rows[(user_id, item.model_name)] = {
                    "user_id": user_id,
                    "model_name": item.model_name,
                    "score": float(item.score),
                    "model_version": item.model_version,
                    "scored_ms": item.scored_ms or now,
                }
            written = store.upsert(
                conn, scores, list(rows.values()), ["user_id", "model_name"],
                where=lambda stmt: store.differs(
                    stmt, scores, ["score", "model_version", "scored_ms"]),
                returning=scores.c.user_id,
            )
            pending = self._mark_changes(conn, ChangeSet().add(written, "scores"), now)
        self.publish_changes(pending)
        return errors

    # --- consent and contactability ------------------------------------------------------

    def _consent_rows(
        self, changes: Sequence[tuple[str, bool, str, int | None]], field: str, now: int
    ) -> list[dict]:
        """Checks (channel, subscribed, source, time) changes; rows without the user id."""
        if not changes:
            raise InvalidArgument(field, "name at least one channel")
        rows = []
        for i, (channel, subscribed, source, at_ms) in enumerate(changes):
            if channel not in CHANNELS:
                raise InvalidArgument(f"{field}[{i}].channel", "must be set to a known channel")
            if not source or len(source) > MAX_SOURCE:
                raise InvalidArgument(
                    f"{field}[{i}].source", f"say where the choice was made (1..{MAX_SOURCE})"
                )
            if at_ms is not None and at_ms > now + self.config.max_future_skew_s * 1000:
                raise InvalidArgument(f"{field}[{i}].update_time", "is in the future")
            rows.append(
                {"channel": channel, "subscribed": bool(subscribed), "source": source,
                 "updated_ms": at_ms or now}
            )
        return rows

    @staticmethod
    def _store_consents(conn, rows: list[dict]) -> ChangeSet:
        """One upsert for all rows; a change older than the stored one never wins, and one
        equal to it writes nothing. Returns the users whose consent records changed."""
        return ChangeSet().add(store.upsert(
            conn,
            consents,
            rows,
            ["user_id", "channel"],
            where=lambda stmt: and_(
                consents.c.updated_ms <= stmt.excluded.updated_ms,
                store.differs(stmt, consents, ["subscribed", "updated_ms", "source"]),
            ),
            returning=consents.c.user_id,
        ), "consent")

    def update_consents(
        self, external_id: str, changes: Sequence[tuple[str, bool, str, int | None]]
    ) -> dict[str, tuple[bool, int | None, str]]:
        """Records (channel, subscribed, source, time) changes; an older change never wins."""
        now = self.now_ms()
        rows = self._consent_rows(changes, "consents", now)
        with self.engine.begin() as conn:
            user_id = self._user_id(conn, external_id)
            for row in rows:
                row["user_id"] = user_id
            pending = self._mark_changes(conn, self._store_consents(conn, rows), now)
        self.publish_changes(pending)
        return self.get_consents(external_id)

    def batch_update_consents(
        self,
        items: Sequence[tuple[str | ServiceError, Sequence[tuple[str, bool, str, int | None]]]],
    ) -> list[ServiceError | None]:
        """Records consent changes of many users in one transaction; one error (or None when
        stored) per item.

        An item is (external id, changes); the external id may already be the error of a
        malformed name. Bad items and unknown users are refused alone; the valid changes are
        written by one upsert. Several items for one user are applied together, the newest
        change per channel winning as in UpdateConsent.
        """
        if not items:
            raise InvalidArgument("requests", "name at least one change")
        if len(items) > self.config.max_batch_items:
            raise InvalidArgument("requests", f"at most {self.config.max_batch_items} per call")
        now = self.now_ms()
        errors: list[ServiceError | None] = [None] * len(items)
        checked: dict[int, list[dict]] = {}
        for i, (external_id, changes) in enumerate(items):
            try:
                if isinstance(external_id, ServiceError):
                    raise external_id
                self._check_external_id(f"requests[{i}].name", external_id)
                checked[i] = self._consent_rows(changes, f"requests[{i}].consents", now)
            except ServiceError as error:
                errors[i] = error
        with self.engine.begin() as conn:
            ids = store.resolve_ids(conn, [items[i][0] for i in checked])
            newest: dict[tuple[int, str], dict] = {}
            for i, rows in checked.items():
                user_id = ids.get(items[i][0])
                if user_id is None:
                    errors[i] = NotFound("profile", f"profiles/{items[i][0]}")
                    continue
                for row in rows:
                    key = (user_id, row["channel"])
                    # One statement cannot upsert a key twice (PostgreSQL refuses), so the
                    # newest change per user and channel is the one sent.
                    if key not in newest or newest[key]["updated_ms"] <= row["updated_ms"]:
                        newest[key] = {**row, "user_id": user_id}
            pending = self._mark_changes(
                conn, self._store_consents(conn, list(newest.values())), now)
        self.publish_changes(pending)
        return errors

    def get_consents(self, external_id: str) -> dict[str, tuple[bool, int | None, str]]:
        with self.engine.connect() as conn:
            user_id = self._user_id(conn, external_id)
            return self._consents_of(conn, [user_id])[user_id]

    def _consents_of(self, conn, user_ids: list[int]) -> dict[int, dict]:
        out = {u: {c: (c in self.config.opt_out_channels, None, "default") for c in CHANNELS}
               for u in user_ids}
        for part in store.chunks(user_ids):
            for row in conn.execute(
                select(consents).where(consents.c.user_id.in_(part))
            ).mappings():
                out[row["user_id"]][row["channel"]] = (
                    bool(row["subscribed"]), row["updated_ms"], row["source"]
                )
        return out

    def batch_contactability(
        self,
        external_ids: Sequence[str] = (),
        user_ids: Sequence[int] = (),
        channels: Sequence[str] = (),
        at_ms: int | None = None,
    ) -> list[Contactability]:
        """Per user, in request order (external ids first): consent, flags and quiet hours.

        Unknown users come back with ``found`` false rather than failing the batch, so a
        delivery run over a stale audience skips them.
        """
        total = len(external_ids) + len(user_ids)
        if total == 0:
            raise InvalidArgument("names", "name at least one user")
        if total > self.config.max_batch_items:
            raise InvalidArgument("names", f"at most {self.config.max_batch_items} users per call")
        for i, channel in enumerate(channels):
            if channel not in CHANNELS:
                raise InvalidArgument(f"channels[{i}]", "must be set to a known channel")
        wanted_channels = list(channels) or list(CHANNELS)
        at = at_ms or self.now_ms()
        with self.engine.connect() as conn:
            ids = store.resolve_ids(conn, external_ids)
            keys = [ids.get(e) for e in external_ids] + list(user_ids)
            present = [k for k in keys if k is not None]
            rows = {r["id"]: r for r in store.profile_rows(conn, present)}
            consent_map = self._consents_of(conn, list(rows))
        out = []
        for position, key in enumerate(keys):
            row = rows.get(key)
            if row is None:
                name = external_ids[position] if position < len(external_ids) else ""
                out.append(Contactability(found=False, user_id=key or 0, external_id=name))
                continue
            user_consents = {c: consent_map[key][c] for c in wanted_channels}
            disabled, uninstalled = bool(row["notifications_disabled"]), bool(row["app_uninstalled"])
            contactable = {}
            for channel, (subscribed, _at, _src) in user_consents.items():
                blocked = (channel == "push" and (disabled or uninstalled)) or (
                    channel == "in_app" and uninstalled
                )
                contactable[channel] = subscribed and not blocked
            out.append(
                Contactability(
                    found=True,
                    user_id=row["id"],
                    external_id=row["external_id"],
                    time_zone=row["time_zone"],
                    quiet_start_minute=row["quiet_start_minute"],
                    quiet_end_minute=row["quiet_end_minute"],
                    quiet_hours_active=quiet_hours_active(
                        row["time_zone"], row["quiet_start_minute"], row["quiet_end_minute"], at
                    ),
                    notifications_disabled=disabled,
                    app_uninstalled=uninstalled,
                    consents=user_consents,
                    contactable=contactable,
                )
            )
        return out

    # --- erasure and retention -----------------------------------------------------------

    def erase_user(self, external_id: str, requested_by: str, reason: str) -> dict:
        """Right to be forgotten: removes everything, announces it, keeps a PII-free audit row."""
        if len(reason or "") > 256:
            raise InvalidArgument("reason", "at most 256 characters")
        return self._remove_user(
            external_id, audit={"requested_by": requested_by or "unknown", "reason": reason or ""}
        )

    def _remove_user(self, external_id: str, audit: dict | None) -> dict:
        now = self.now_ms()
        erasure_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            user_id = self._user_id(conn, external_id)
            real_external = conn.execute(
                select(profiles.c.external_id).where(profiles.c.id == user_id)
            ).scalar_one()
            aliases = list(
                conn.execute(
                    select(identity_links.c.alias_external_id).where(
                        identity_links.c.user_id == user_id
                    )
                ).scalars()
            )
            counts = store.delete_user_data(conn, user_id)
            if audit is not None:
                conn.execute(
                    erasure_audit.insert().values(
                        erasure_id=erasure_id,
                        user_id=user_id,
                        erased_ms=now,
                        requested_by=audit["requested_by"][:128],
                        reason=audit["reason"],
                        rows_deleted=counts,
                    )
                )
        self._publish_erasure(
            user_id, real_external, "erased" if audit else "deleted", now, erasure_id, aliases
        )
        return {"erasure_id": erasure_id, "user_id": user_id, "erased_ms": now, "rows": counts}

    def _publish_erasure(
        self, user_id: int, external_id: str, kind: str, now: int, erasure_id: str = "",
        aliases: Sequence[str] = (),
    ) -> None:
        """Announces on ``profile:erasures`` that a user id is gone (erased, deleted, merged).

        The entry carries the external id and aliases because other services may key their
        own records by them; the stream is capped so these entries age out.
        """
        if self.redis is None:
            return
        self.redis.xadd(
            ERASURES_STREAM,
            {
                "user_id": user_id,
                "external_id": external_id,
                "aliases": json.dumps(list(aliases)),
                "kind": kind,
                "erasure_id": erasure_id,
                "ts_ms": now,
            },
            maxlen=ERASURES_STREAM_MAXLEN,
            approximate=True,
        )

    def erasure_audit(self, user_id: int) -> list[dict]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    select(erasure_audit).where(erasure_audit.c.user_id == user_id)
                ).mappings()
            ]

    def prune(self) -> dict[str, int]:
        """Deletes events past the retention window and expired tags; returns rows removed."""
        now = self.now_ms()
        removed = {"events": 0, "tags": 0}
        with self.engine.begin() as conn:
            if self.config.retention_days > 0:
                cutoff = now - self.config.retention_days * DAY_MS
                removed["events"] = conn.execute(
                    delete(events).where(events.c.ts_ms < cutoff)
                ).rowcount
            removed["tags"] = conn.execute(
                delete(profile_tags).where(
                    and_(profile_tags.c.expires_ms.is_not(None), profile_tags.c.expires_ms <= now)
                )
            ).rowcount
        return removed


def quiet_hours_active(
    time_zone: str, start_minute: int | None, end_minute: int | None, at_ms: int
) -> bool:
    """Whether ``at_ms`` falls in the user's quiet hours (which may wrap past midnight)."""
    if start_minute is None or end_minute is None or start_minute == end_minute:
        return False
    try:
        zone = zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    local = dt.datetime.fromtimestamp(at_ms / 1000, tz=zone)
    minute = local.hour * 60 + local.minute
    if start_minute < end_minute:
        return start_minute <= minute < end_minute
    return minute >= start_minute or minute < end_minute
