"""How nothing the profile service commits goes unannounced on its Redis streams.

Streams (all owned by this service; ``profile:erasures`` has its own path in the core):

- ``profile:events``: one entry per newly stored event (``event_id``, ``user_id``,
  ``external_id``, ``event_type``, ``ts_ms``, ``value``, ``properties``), capped at about
  ``PROFILE_EVENTS_STREAM_MAXLEN`` entries.

At least once, across crashes. Each transaction that stores events also inserts one *marker*
row (``profile_announcements``) naming what it announces: the batch's row-id range. After the
commit the writer publishes, then *retires* the marker: a background thread deletes the
markers of many publications in one statement. A marker outlives its publication only when the process stopped between the commit
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

Re-announcing reads the rows again: events of erased users are gone, so a late announcement
never brings an erased user back. Markers hold row ids only.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Collection

from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Connection

from services.common.profile_tables import events, profiles
from services.profile import store
from services.profile.tables import announcements

# Markers' ``stream`` column.
EVENTS = "events"

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

