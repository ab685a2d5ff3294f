"""SQL over the segment service's own tables (SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.segment.tables import segment_references, segments, snapshots

SNAPSHOT_META = [c for c in snapshots.c if c.name != "members"]


class SegmentStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # Segments.
    def insert_segment(self, values: dict, references: Iterable[int]) -> int:
        with self.engine.begin() as connection:
            segment_id = connection.execute(
                insert(segments).values(**values).returning(segments.c.id)
            ).scalar_one()
            self._set_references(connection, segment_id, references)
        return segment_id

    def _set_references(self, connection, segment_id: int, references: Iterable[int]) -> None:
        connection.execute(delete(segment_references).where(
            segment_references.c.segment_id == segment_id))
        rows = [dict(segment_id=segment_id, referenced_id=r) for r in sorted(set(references))]
        if rows:
            connection.execute(insert(segment_references), rows)

    def get_segment(self, segment_id: int) -> dict | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(segments).where(segments.c.id == segment_id)).mappings().first()
        return dict(row) if row else None

    def rule_texts(self, ids: Iterable[int]) -> dict[int, str]:
        ids = list(ids)
        if not ids:
            return {}
        with self.engine.connect() as connection:
            return dict(connection.execute(
                select(segments.c.id, segments.c.rule_text).where(segments.c.id.in_(ids))).all())

    def list_segments(self, after_id: int, limit: int) -> list[dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(segments).where(segments.c.id > after_id).order_by(segments.c.id)
                .limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def update_segment(self, segment_id: int, revision: int, values: dict,
                       references: Iterable[int] | None) -> bool:
        """Applies ``values`` if the stored revision is still ``revision``; False otherwise."""
        with self.engine.begin() as connection:
            done = connection.execute(
                update(segments)
                .where(segments.c.id == segment_id, segments.c.revision == revision)
                .values(**values, revision=revision + 1)
            ).rowcount
            if done and references is not None:
                self._set_references(connection, segment_id, references)
        return bool(done)

    def referencing(self, segment_id: int) -> list[int]:
        with self.engine.connect() as connection:
            return list(connection.execute(
                select(segment_references.c.segment_id)
                .where(segment_references.c.referenced_id == segment_id)
                .order_by(segment_references.c.segment_id)).scalars())

    def delete_segment(self, segment_id: int) -> bool:
        with self.engine.begin() as connection:
            done = connection.execute(delete(segments).where(segments.c.id == segment_id)).rowcount
            connection.execute(delete(segment_references).where(
                segment_references.c.segment_id == segment_id))
            connection.execute(delete(snapshots).where(snapshots.c.segment_id == segment_id))
        return bool(done)

    def realtime_segments(self) -> list[dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(segments).where(segments.c.realtime.is_(True)).order_by(segments.c.id)
            ).mappings().all()
        return [dict(r) for r in rows]

    def due_for_refresh(self, now_ms: int, limit: int = 50) -> list[dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(segments).where(segments.c.next_refresh_ms <= now_ms)
                .order_by(segments.c.next_refresh_ms).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def set_next_refresh(self, segment_id: int, expected_ms: int, next_ms: int | None) -> bool:
        """Moves the schedule on; False when another replica already took this refresh."""
        with self.engine.begin() as connection:
            return bool(connection.execute(
                update(segments)
                .where(segments.c.id == segment_id, segments.c.next_refresh_ms == expected_ms)
                .values(next_refresh_ms=next_ms)).rowcount)

    # Snapshots.
    def insert_snapshot(self, values: dict) -> int:
        """Stores a snapshot as the segment's next version; retries if a version races."""
        for _ in range(5):
            with self.engine.begin() as connection:
                latest = connection.execute(
                    select(func.coalesce(func.max(snapshots.c.version), 0))
                    .where(snapshots.c.segment_id == values["segment_id"])).scalar_one()
                try:
                    connection.execute(insert(snapshots).values(**values, version=latest + 1))
                except IntegrityError:
                    continue
                return latest + 1
        raise RuntimeError("could not allocate a snapshot version")

    def snapshot_meta(self, segment_id: int, version: int | None) -> dict | None:
        query = select(*SNAPSHOT_META).where(snapshots.c.segment_id == segment_id)
        if version:
            query = query.where(snapshots.c.version == version)
        else:
            query = query.order_by(snapshots.c.version.desc()).limit(1)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return dict(row) if row else None

    def snapshot_members(self, segment_id: int, version: int) -> bytes | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(snapshots.c.members).where(snapshots.c.segment_id == segment_id,
                                                  snapshots.c.version == version)
            ).scalar_one_or_none()

    def list_snapshots(self, segment_id: int, before_version: int | None,
                       limit: int) -> list[dict]:
        query = select(*SNAPSHOT_META).where(snapshots.c.segment_id == segment_id)
        if before_version is not None:
            query = query.where(snapshots.c.version < before_version)
        with self.engine.connect() as connection:
            rows = connection.execute(
                query.order_by(snapshots.c.version.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]
