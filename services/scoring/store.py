"""SQL over the scoring service's own tables (SQLAlchemy Core, bound parameters)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.scoring.features import FeatureSpec
from services.scoring.onnx_model import OutputSpec
from services.scoring.tables import alias_history, model_aliases, model_versions, operations


@dataclasses.dataclass
class ModelVersion:
    """A registered model version as the domain sees it (the ONNX bytes are loaded apart)."""

    model_name: str
    version: int
    task: str
    description: str
    sha256: str
    size_bytes: int
    features: list[FeatureSpec]
    output: OutputSpec
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    created_ms: int
    created_by: str
    aliases: list[str] = dataclasses.field(default_factory=list)

    @property
    def resource_name(self) -> str:
        return f"models/{self.model_name}/versions/{self.version}"


_SUMMARY_COLUMNS = [c for c in model_versions.c if c.name != "onnx_bytes"]


def _version_from_row(row, aliases: list[str]) -> ModelVersion:
    return ModelVersion(
        model_name=row.model_name, version=row.version, task=row.task,
        description=row.description, sha256=row.onnx_sha256, size_bytes=row.size_bytes,
        features=[FeatureSpec.from_dict(f) for f in row.feature_schema],
        output=OutputSpec.from_dict(row.output), metrics=row.metrics or {},
        lineage=row.lineage or {}, created_ms=row.created_ms, created_by=row.created_by,
        aliases=aliases,
    )


def _summary_select():
    return select(*_SUMMARY_COLUMNS,
                  func.length(model_versions.c.onnx_bytes).label("size_bytes"))


class ScoringStore:
    """Reads and writes model versions, aliases and operations."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # Model versions -------------------------------------------------------------------------

    def insert_version(self, values: dict[str, Any], attempts: int = 5) -> int:
        """Stores a version under the next free number of its model; returns the number."""
        for _ in range(attempts):
            try:
                with self.engine.begin() as conn:
                    latest = conn.execute(
                        select(func.max(model_versions.c.version)).where(
                            model_versions.c.model_name == values["model_name"])
                    ).scalar()
                    version = (latest or 0) + 1
                    conn.execute(insert(model_versions).values(**values, version=version))
                    return version
            except IntegrityError:
                # Another registration took the same number first; take the next one.
                continue
        raise RuntimeError("could not allocate a version number")

    def _aliases_for(self, conn: Connection, name: str) -> dict[int, list[str]]:
        rows = conn.execute(select(model_aliases.c.version, model_aliases.c.alias).where(
            model_aliases.c.model_name == name).order_by(model_aliases.c.alias)).all()
        out: dict[int, list[str]] = {}
        for version, alias in rows:
            out.setdefault(version, []).append(alias)
        return out

    def get_version(self, name: str, version: int) -> ModelVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(_summary_select().where(
                model_versions.c.model_name == name, model_versions.c.version == version)).first()
            if row is None:
                return None
            return _version_from_row(row, self._aliases_for(conn, name).get(version, []))

    def version_bytes(self, name: str, version: int) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(select(model_versions.c.onnx_bytes).where(
                model_versions.c.model_name == name, model_versions.c.version == version)).scalar()

    def list_versions(self, name: str, after_version: int, limit: int) -> list[ModelVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(_summary_select().where(
                model_versions.c.model_name == name, model_versions.c.version > after_version)
                .order_by(model_versions.c.version).limit(limit)).all()
            aliases = self._aliases_for(conn, name)
        return [_version_from_row(r, aliases.get(r.version, [])) for r in rows]

    def list_models(self, after_name: str, limit: int) -> list[dict[str, Any]]:
        """Model names with their version count, latest version, task and aliases."""
        stmt = (select(model_versions.c.model_name, func.count().label("versions"),
                       func.max(model_versions.c.version).label("latest"),
                       func.min(model_versions.c.created_ms).label("created_ms"))
                .where(model_versions.c.model_name > after_name)
                .group_by(model_versions.c.model_name)
                .order_by(model_versions.c.model_name).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            names = [r.model_name for r in rows]
            tasks: dict[str, str] = {}
            if names:
                latest = {r.model_name: r.latest for r in rows}
                for model, version, task in conn.execute(
                        select(model_versions.c.model_name, model_versions.c.version,
                               model_versions.c.task)
                        .where(model_versions.c.model_name.in_(names))).all():
                    if latest[model] == version:
                        tasks[model] = task
            alias_rows = conn.execute(select(model_aliases.c.model_name, model_aliases.c.alias,
                                             model_aliases.c.version)
                                      .where(model_aliases.c.model_name.in_(names))).all() \
                if names else []
        aliases: dict[str, dict[str, int]] = {}
        for model, alias, version in alias_rows:
            aliases.setdefault(model, {})[alias] = version
        return [{"name": r.model_name, "versions": r.versions, "latest": r.latest,
                 "created_ms": r.created_ms, "task": tasks.get(r.model_name, ""),
                 "aliases": aliases.get(r.model_name, {})} for r in rows]

    def delete_version(self, name: str, version: int) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(delete(model_versions).where(
                model_versions.c.model_name == name, model_versions.c.version == version))
            conn.execute(delete(alias_history).where(
                alias_history.c.model_name == name, alias_history.c.version == version))
            return result.rowcount > 0

    def alias_targets(self, name: str, version: int) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(model_aliases.c.alias).where(
                model_aliases.c.model_name == name, model_aliases.c.version == version)).scalars())

    # Aliases --------------------------------------------------------------------------------

    def resolve_alias(self, name: str, alias: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(model_aliases.c.version).where(
                model_aliases.c.model_name == name, model_aliases.c.alias == alias)).scalar()

    def all_aliases(self, alias: str) -> list[tuple[str, int]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(model_aliases.c.model_name, model_aliases.c.version)
                .where(model_aliases.c.alias == alias)).all()]

    def set_alias(self, name: str, alias: str, version: int, actor: str, now: int) -> int | None:
        """Points ``alias`` at ``version``; returns the version it pointed at before."""
        with self.engine.begin() as conn:
            previous = conn.execute(select(model_aliases.c.version).where(
                model_aliases.c.model_name == name, model_aliases.c.alias == alias)).scalar()
            if previous is None:
                conn.execute(insert(model_aliases).values(model_name=name, alias=alias,
                                                          version=version, updated_ms=now))
            else:
                conn.execute(update(model_aliases).where(
                    model_aliases.c.model_name == name, model_aliases.c.alias == alias)
                    .values(version=version, updated_ms=now))
            conn.execute(insert(alias_history).values(model_name=name, alias=alias,
                                                      version=version, set_ms=now, set_by=actor))
            return previous

    def rollback_alias(self, name: str, alias: str, now: int) -> tuple[int, int] | None:
        """Retires the alias's latest assignment and returns to the one before it (skipping
        assignments of the same version); returns (from, to) or None if there is nothing
        to return to."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(alias_history.c.id, alias_history.c.version).where(
                alias_history.c.model_name == name, alias_history.c.alias == alias,
                alias_history.c.rolled_back.is_(False)).order_by(alias_history.c.id.desc())).all()
            if not rows:
                return None
            current = rows[0].version
            retire = [r.id for r in rows if r.version == current and r.id >= rows[0].id]
            target = None
            for r in rows[1:]:
                if r.version != current:
                    target = r.version
                    break
                retire.append(r.id)
            if target is None:
                return None
            conn.execute(update(alias_history).where(alias_history.c.id.in_(retire))
                         .values(rolled_back=True))
            conn.execute(update(model_aliases).where(
                model_aliases.c.model_name == name, model_aliases.c.alias == alias)
                .values(version=target, updated_ms=now))
            return current, target

    # Operations -----------------------------------------------------------------------------

    def insert_operation(self, values: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(operations).values(**values))

    def update_operation(self, name: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(operations).where(operations.c.name == name).values(**values))

    def get_operation(self, name: str):
        with self.engine.connect() as conn:
            return conn.execute(select(operations).where(operations.c.name == name)).first()

    def list_operations(self, before: list | None, limit: int, kind: str = ""):
        """Newest first; ``before`` is the (created_ms, name) of the last row of a page."""
        stmt = select(operations)
        if kind:
            stmt = stmt.where(operations.c.kind == kind)
        if before:
            created, name = int(before[0]), str(before[1])
            stmt = stmt.where(or_(operations.c.created_ms < created,
                                  and_(operations.c.created_ms == created,
                                       operations.c.name > name)))
        stmt = stmt.order_by(operations.c.created_ms.desc(), operations.c.name).limit(limit)
        with self.engine.connect() as conn:
            return conn.execute(stmt).all()

    def fail_interrupted(self, now: int) -> int:
        """Marks operations left pending or running by a previous process as failed."""
        with self.engine.begin() as conn:
            result = conn.execute(update(operations).where(
                and_(operations.c.state.in_(("pending", "running"))))
                .values(state="failed", error_code=10,
                        error_message="interrupted: the service restarted while it ran",
                        updated_ms=now))
            return result.rowcount
