"""What the profile service announces on Redis streams, and how nothing committed goes unannounced.

Streams (all owned by this service; ``profile:erasures`` has its own path in the core):

- ``profile:events``: one entry per newly stored event (``event_id``, ``user_id``,
  ``external_id``, ``event_type``, ``ts_ms``, ``value``, ``properties``), capped at about
  ``PROFILE_EVENTS_STREAM_MAXLEN`` entries.
- ``profile:changes``: one entry per user whose data segment rules read was changed by a
  committed write other than an event: ``user_id`` (internal), ``external_id``, ``kinds``
  (comma-separated, in the order of ``KINDS``) and ``ts_ms`` (the commit's instant), capped at
  about ``PROFILE_CHANGES_STREAM_MAXLEN``. An entry is a hint to look again, not the data:
  a consumer reads the user's current state.

Kinds and the writes that announce them (a write that changes nothing announces nothing;
each write detects it in the statement that writes, so a concurrent writer cannot hide a
change):

- ``created``: CreateProfile (with ``attributes`` and ``tags`` when it set some);
- ``attributes``, ``tags``: UpdateProfile and BatchUpdateProfiles (rows deleted or written
  with other values), AddTags (a tag new or with another expiry), RemoveTags (a live tag
  removed); the profile's own fields (time zone, quiet hours, device flags) are read by no
  rule and are not announced;
- ``consent``: UpdateConsent, BatchUpdateConsent (a record newer and different);
- ``scores``: WriteScores (a score, version or time different from the stored one);
- ``traits``: RecomputeTraits (users whose rule-visible traits changed; ``recency_days`` counts
  in whole days, ``monetary`` in cents), the deferred refresh of streamed events' users
  (``PROFILE_STREAM_TRAITS=background``) and MergeIdentity when events moved. Traits refreshed
  in the transaction of the events that caused them are not announced again: those events'
  own entries on ``profile:events`` name the same users and follow the same commit;
- ``identity``: MergeIdentity (with the kinds of the rows moved from the anonymous profile).

At least once, across crashes. Each transaction that stores events or changes also inserts
one *marker* row (``profile_announcements``) naming what it announces: the batch's row-id
range, or the changed users and their kinds. After the commit the writer publishes, then
*retires* the marker: a background thread deletes the markers of many publications in one
statement. A marker outlives its publication only when the process stopped between the commit
and the publication (or the retirement), or when Redis failed. The maintenance pass (at start
and every ``PROFILE_MAINTENANCE_INTERVAL_SECONDS``) announces every marker that has been there
``PROFILE_ANNOUNCE_GRACE_SECONDS`` since its commit, re-reading the rows it names, and deletes
it. A writer that saw Redis fail keeps the marker in memory, so its own next pass publishes it
without waiting out the grace. Hot paths gain one small INSERT per batch (thousands of
events) inside the transaction they already run; the retirement is coalesced off the
request's path.

Why not a watermark of announced row ids: replicas (and the stream writers of one process)
commit concurrently, and row ids are drawn before commit, so a later-drawn batch often commits
and publishes first. A watermark advanced by that publication passes over the ids of a batch
whose writer died between its commit and its publication: that batch is never found. Finding
it needs a record, per batch, of whether it was published, made visible by the same commit as
the batch, which is what a marker is. Several replicas on one database (SQLite file or
PostgreSQL) need nothing more: each marker belongs to the transaction that wrote it, any
replica's pass may announce a marker left behind, and the grace keeps passes off the markers
of writers that are publishing that moment (the clocks of replicas must agree within it).

Duplicates, by design rare: an entry may be published twice after a crash (the publications
not yet retired, at most the last moments'), after a publication Redis applied but did not
acknowledge, after Redis failed part way through a batch, when two replicas' passes take the
same marker at once, and on PostgreSQL, where concurrent batches draw ids from one sequence,
re-announcing one batch's range also re-announces the rows of batches interleaved with it.
Consumers read through consumer groups (at least once anyway) and handle an entry twice
without effect: segment re-checks the users named (membership changes are computed against
the live set), delivery's send ledger is keyed by the triggering event id and its timers by
the event id, and attribution inserts each conversion once.

Re-announcing reads the rows again: events of erased users are gone, and changed users that
no longer exist are dropped, so a late announcement never brings an erased user back. Markers
hold internal ids only.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Collection, Iterable, Sequence

from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Connection

from services.common.profile_tables import events, profiles
from services.profile import store
from services.profile.tables import announcements

CHANGES_STREAM = "profile:changes"

# What a change entry's ``kinds`` may name, in the order they are listed.
KINDS = ("created", "attributes", "tags", "traits", "scores", "consent", "identity")

# Markers' ``stream`` column.
EVENTS = "events"
CHANGES = "changes"

# KEYS[1]: the changes stream; ARGV[1]: approximate length cap; ARGV[2]: a JSON array of
# four parts (user ids, external ids, kinds, the instant), ids and instant as strings. One
# entry per user; the stream is trimmed once per call.
CHANGES_LUA = """
local c = cjson.decode(ARGV[2])
local users, externals, kinds, ts = c[1], c[2], c[3], c[4]
local call, key = redis.call, KEYS[1]
for i = 1, #users do
  call('XADD', key, '*', 'user_id', users[i], 'external_id', externals[i], 'kinds', kinds[i],
    'ts_ms', ts)
end
call('XTRIM', key, 'MAXLEN', '~', ARGV[1])
return #users
"""
# Users per publishing script call: bounds how long one call keeps Redis busy.
CHANGES_CHUNK = 2000


class ChangeSet:
    """The users one transaction changed, with what changed of each (see ``KINDS``)."""

    def __init__(self) -> None:
        self.by_user: dict[int, set[str]] = {}

    def add(self, user_ids: Iterable[int], kind: str) -> ChangeSet:
        for user_id in user_ids:
            self.by_user.setdefault(int(user_id), set()).add(kind)
        return self

    def __bool__(self) -> bool:
        return bool(self.by_user)


def kinds_text(kinds: Collection[str]) -> str:
    """``kinds`` as an entry carries them: comma-separated, in ``KINDS`` order."""
    return ",".join(kind for kind in KINDS if kind in kinds)


@dataclasses.dataclass(frozen=True)
class ProfileChanges:
    """The entries of one commit on ``profile:changes`` and the marker awaiting them."""

    user_ids: Sequence[int]
    external_ids: Sequence[str]
    kinds: Sequence[str]
    ts_ms: int
    marker: str = ""

    def __len__(self) -> int:
        return len(self.user_ids)

    def announcements(self) -> list[str]:
        """The ``CHANGES_LUA`` arguments announcing these changes, one per ``CHANGES_CHUNK``."""
        return [
            json.dumps(
                [
                    list(map(str, self.user_ids[start:start + CHANGES_CHUNK])),
                    list(self.external_ids[start:start + CHANGES_CHUNK]),
                    list(self.kinds[start:start + CHANGES_CHUNK]),
                    str(self.ts_ms),
                ],
                separators=(",", ":"),
            )
            for start in range(0, len(self), CHANGES_CHUNK)
        ]


NO_CHANGES = ProfileChanges((), (), (), 0)


@dataclasses.dataclass(frozen=True)
class Marker:
    """A marker as a maintenance pass reads it."""

    marker: str
    stream: str
    first_row_id: int | None
    last_row_id: int | None
    changes: str | None
    created_ms: int


def _new_marker() -> str:
    return uuid.uuid4().hex


def mark_events(conn: Connection, first_row_id: int, last_row_id: int, now_ms: int,
                grace_ms: int) -> str:
    """Records, in the transaction storing them, that the events of row ids ``first_row_id``
    ..``last_row_id`` are to be announced; returns the marker."""
    marker = _new_marker()
    conn.execute(announcements.insert().values(
        marker=marker, stream=EVENTS, first_row_id=first_row_id, last_row_id=last_row_id,
        created_ms=now_ms, due_ms=now_ms + grace_ms,
    ))
    return marker


def mark_changes(conn: Connection, changed: ChangeSet, now_ms: int,
                 grace_ms: int) -> ProfileChanges:
    """Records, in the transaction making them, the changes to announce; returns their entries
    (users that no longer exist are left out)."""
    external = store.external_ids(conn, changed.by_user)
    if not external:
        return NO_CHANGES
    user_ids = sorted(external)
    kinds = [kinds_text(changed.by_user[u]) for u in user_ids]
    marker = _new_marker()
    conn.execute(announcements.insert().values(
        marker=marker, stream=CHANGES,
        changes=json.dumps([list(pair) for pair in zip(user_ids, kinds)], separators=(",", ":")),
        created_ms=now_ms, due_ms=now_ms + grace_ms,
    ))
    return ProfileChanges(user_ids, [external[u] for u in user_ids], kinds, now_ms, marker)


def due(conn: Connection, now_ms: int, failed: Collection[str], limit: int) -> list[Marker]:
    """Markers left behind: due by ``now_ms``, or among ``failed`` (this process saw their
    publication fail); oldest first."""
    condition = announcements.c.due_ms <= now_ms
    if failed:
        condition = or_(condition, store.in_set(conn, announcements.c.marker, failed))
    rows = conn.execute(
        select(announcements.c.marker, announcements.c.stream, announcements.c.first_row_id,
               announcements.c.last_row_id, announcements.c.changes, announcements.c.created_ms)
        .where(condition)
        .order_by(announcements.c.created_ms, announcements.c.marker)
        .limit(limit)
    ).all()
    return [Marker(*row) for row in rows]


def retire(conn: Connection, markers: Collection[str]) -> int:
    """Deletes markers whose announcements are published; returns how many were there."""
    if not markers:
        return 0
    return conn.execute(
        delete(announcements).where(store.in_set(conn, announcements.c.marker, markers))
    ).rowcount


def event_rows(conn: Connection, marker: Marker) -> list:
    """The stored events a marker names, in row-id order, with their users' external ids."""
    return conn.execute(
        select(
            events.c.event_id, events.c.user_id, events.c.event_type, events.c.ts_ms,
            events.c.value, events.c.properties, profiles.c.external_id,
        )
        .select_from(events.join(profiles, profiles.c.id == events.c.user_id))
        .where(events.c.id.between(marker.first_row_id, marker.last_row_id))
        .order_by(events.c.id)
    ).mappings().all()


def marked_changes(conn: Connection, marker: Marker) -> ProfileChanges:
    """The entries a changes marker names, stamped with its commit's instant; users that no
    longer exist are left out."""
    pairs = json.loads(marker.changes or "[]")
    external = store.external_ids(conn, [user_id for user_id, _kinds in pairs])
    kept = [(user_id, kinds) for user_id, kinds in pairs if user_id in external]
    return ProfileChanges(
        [user_id for user_id, _ in kept], [external[user_id] for user_id, _ in kept],
        [kinds for _, kinds in kept], marker.created_ms, marker.marker,
    )
