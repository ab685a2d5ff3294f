"""Feature schemas and their assembly from the profile store: one SQL statement per batch."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Float,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.engine import Engine

from services.common.errors import InvalidArgument
from services.common.profile_tables import (
    attribute_catalog,
    computed_traits,
    events,
    profile_attributes,
    profiles,
)

DAY_MS = 86_400_000

SOURCES = ("attribute", "trait", "event")
VALUE_TYPES = ("number", "bool", "string")
EVENT_AGGREGATES = ("count", "sum", "days_since_last")

# Computed traits a model may read, with the kind of value each holds.
TRAIT_TYPES = {
    "recency_days": "number",
    "frequency": "number",
    "monetary": "number",
    "r_score": "number",
    "f_score": "number",
    "m_score": "number",
    "rfm_group": "string",
    "lifecycle_stage": "string",
    "first_seen_ms": "number",
    "last_seen_ms": "number",
    "last_purchase_ms": "number",
}


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One model feature: where its value comes from, its type and the value used when missing.

    ``source`` is ``attribute`` (a profile attribute named ``key``), ``trait`` (a computed
    trait column named ``key``) or ``event`` (an aggregate of events of type ``key``: count,
    sum of values or days since the last one, over ``window_days`` before the instant scored;
    0 means all history). ``input`` names the ONNX input fed; empty means the model's single
    input. ``default`` None leaves a missing value as NaN (numbers) or "" (strings).
    """

    name: str
    source: str
    key: str
    value_type: str = "number"
    default: float | str | None = None
    aggregate: str = ""
    window_days: int = 0
    input: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in fields})

    @property
    def is_string(self) -> bool:
        return self.value_type == "string"


def validate_specs(specs: Sequence[FeatureSpec], field: str = "features") -> None:
    """Checks the shape of a schema (not whether the attributes exist: see ``check_known``)."""
    problems: list[tuple[str, str]] = []
    if not specs:
        problems.append((field, "at least one feature is required"))
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        where = f"{field}[{i}]"
        if not spec.name:
            problems.append((f"{where}.name", "is required"))
        elif spec.name in seen:
            problems.append((f"{where}.name", f"duplicate feature name {spec.name!r}"))
        seen.add(spec.name)
        if spec.source not in SOURCES:
            problems.append((f"{where}.source", f"must be one of {', '.join(SOURCES)}"))
        if not spec.key:
            problems.append((f"{where}.key", "is required"))
        if spec.value_type not in VALUE_TYPES:
            problems.append((f"{where}.value_type", f"must be one of {', '.join(VALUE_TYPES)}"))
        if spec.source == "trait" and spec.key and spec.key not in TRAIT_TYPES:
            problems.append((f"{where}.key", f"unknown computed trait {spec.key!r}; known: "
                             + ", ".join(sorted(TRAIT_TYPES))))
        if spec.source == "trait" and spec.key in TRAIT_TYPES:
            want = TRAIT_TYPES[spec.key]
            if (want == "string") != spec.is_string:
                problems.append((f"{where}.value_type", f"trait {spec.key!r} is a {want}"))
        if spec.source == "event":
            if spec.aggregate not in EVENT_AGGREGATES:
                problems.append((f"{where}.aggregate",
                                 f"must be one of {', '.join(EVENT_AGGREGATES)}"))
            if spec.is_string:
                problems.append((f"{where}.value_type", "event aggregates are numbers"))
        if spec.window_days < 0:
            problems.append((f"{where}.window_days", "must not be negative"))
        if spec.default is not None:
            if spec.is_string and not isinstance(spec.default, str):
                problems.append((f"{where}.default", "a string feature needs a string default"))
            if not spec.is_string and isinstance(spec.default, str):
                problems.append((f"{where}.default", "a numeric feature needs a number default"))
    if problems:
        raise InvalidArgument(violations=problems)


def check_known(engine: Engine, specs: Sequence[FeatureSpec], field: str = "features") -> None:
    """Refuses attribute features the profile store's catalogue does not know, or whose
    catalogued type does not fit the declared one."""
    names = sorted({s.key for s in specs if s.source == "attribute"})
    if not names:
        return
    stmt = select(attribute_catalog.c.name, attribute_catalog.c.value_type).where(
        attribute_catalog.c.name.in_(bindparam("names", expanding=True))
    )
    with engine.connect() as conn:
        catalog = dict(conn.execute(stmt, {"names": names}).all())
    problems = []
    for i, spec in enumerate(specs):
        if spec.source != "attribute":
            continue
        kind = catalog.get(spec.key)
        if kind is None:
            problems.append((f"{field}[{i}].key", f"profile attribute {spec.key!r} does not exist"))
        elif kind == "string" and not spec.is_string:
            problems.append((f"{field}[{i}].value_type",
                             f"attribute {spec.key!r} holds strings, declared {spec.value_type}"))
        elif kind in ("number", "bool", "timestamp") and spec.is_string:
            problems.append((f"{field}[{i}].value_type",
                             f"attribute {spec.key!r} holds {kind} values, declared string"))
        elif kind == "string_list":
            problems.append((f"{field}[{i}].key",
                             f"attribute {spec.key!r} is a string list, not a model feature"))
    if problems:
        raise InvalidArgument(violations=problems)


def now_ms() -> int:
    return int(time.time() * 1000)


def _bool_as_number(column):
    """1.0 / 0.0 / NULL: PostgreSQL has no cast from boolean to a floating type."""
    return case((column.is_(True), 1.0), (column.is_(False), 0.0), else_=None)


def _column_for(spec: FeatureSpec, index: int, as_of: Any, joins: dict[str, Any]):
    """The SQL expression of one feature, adding the outer joins it needs to ``joins``."""
    if spec.source == "attribute":
        alias = profile_attributes.alias(f"a{index}")
        joins[alias.name] = (alias, and_(alias.c.user_id == profiles.c.id, alias.c.name == spec.key))
        if spec.is_string:
            return alias.c.str_value
        flag = _bool_as_number(alias.c.bool_value)
        if spec.value_type == "bool":
            return flag
        # Timestamp attributes are read as epoch milliseconds, numbers as they are.
        return func.coalesce(alias.c.num_value, cast(alias.c.ts_value, Float), flag)
    if spec.source == "trait":
        joins["traits"] = (computed_traits, computed_traits.c.user_id == profiles.c.id)
        column = computed_traits.c[spec.key]
        return column if spec.is_string else cast(column, Float)
    # Event aggregates read only events strictly before the instant scored, so a model trained
    # with a cut-off never sees what happened after it.
    conditions = [events.c.user_id == profiles.c.id, events.c.event_type == spec.key,
                  events.c.ts_ms < as_of]
    if spec.window_days:
        conditions.append(events.c.ts_ms >= as_of - spec.window_days * DAY_MS)
    if spec.aggregate == "count":
        expr = cast(func.count(), Float)
    elif spec.aggregate == "sum":
        expr = cast(func.coalesce(func.sum(events.c.value), 0.0), Float)
    else:
        expr = (as_of - func.max(events.c.ts_ms)) / float(DAY_MS)
    return select(expr).where(*conditions).scalar_subquery()


def feature_select(specs: Sequence[FeatureSpec], as_of_ms: int | None = None):
    """SELECT id, external_id, <one column per feature> FROM profiles with the joins needed;
    callers add the WHERE clause choosing the batch and pass ``as_of_ms`` when executing."""
    as_of = bindparam("as_of_ms", as_of_ms, type_=Float)
    joins: dict[str, Any] = {}
    columns = [_column_for(spec, i, as_of, joins).label(f"f{i}") for i, spec in enumerate(specs)]
    source = profiles
    for table, on in joins.values():
        source = source.outerjoin(table, on)
    return select(profiles.c.id, profiles.c.external_id, *columns).select_from(source)


@dataclasses.dataclass
class FeatureBatch:
    """Assembled features of a batch: numeric values as one float matrix (strings as NaN
    placeholders) plus the string columns, and which rows were found."""

    numeric: np.ndarray  # (rows, features) float64
    strings: dict[int, np.ndarray]  # feature index -> object array of str
    found: np.ndarray  # (rows,) bool: the user exists
    user_ids: np.ndarray  # (rows,) int64 internal ids (0 when not found)
    external_ids: list[str]

    def __len__(self) -> int:
        return self.numeric.shape[0]


def apply_defaults(specs: Sequence[FeatureSpec], numeric: np.ndarray,
                   strings: dict[int, np.ndarray]) -> None:
    """Fills missing values with each feature's default, column by column (vectorised)."""
    for i, spec in enumerate(specs):
        if spec.is_string:
            column = strings[i]
            missing = np.equal(column, None)
            if missing.any():
                column[missing] = spec.default if spec.default is not None else ""
        elif spec.default is not None:
            column = numeric[:, i]
            np.copyto(column, float(spec.default), where=np.isnan(column))


def _frame_from_rows(specs: Sequence[FeatureSpec], rows: list) -> tuple[np.ndarray, dict]:
    n, width = len(rows), len(specs)
    string_idx = [i for i, s in enumerate(specs) if s.is_string]
    if not string_idx:
        # None becomes NaN in a float array: one C-level conversion for the whole batch.
        numeric = np.array([r[2:] for r in rows], dtype=np.float64).reshape(n, width)
        return numeric, {}
    raw = np.array([r[2:] for r in rows], dtype=object).reshape(n, width)
    strings = {i: raw[:, i].copy() for i in string_idx}
    raw[:, string_idx] = None
    numeric = raw.astype(np.float64)
    return numeric, strings


def _key_filter(column, dialect: str, is_text: bool):
    """``column IN <the batch's keys>`` with the keys bound as ONE parameter: a JSON array
    on SQLite, an array on PostgreSQL. An expanding IN list would be re-rendered with ten
    thousand placeholders on every call, which costs more than the query itself."""
    keys = bindparam("keys")
    if dialect == "sqlite":
        return column.in_(select(literal_column("value")).select_from(func.json_each(keys)))
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam("keys", type_=ARRAY(Text if is_text else BigInteger)))
    return column.in_(bindparam("keys", expanding=True))


@dataclasses.dataclass(frozen=True)
class CompiledBatch:
    """A batch lookup compiled once for one schema and one database dialect: the SQL text
    and how to order its parameters, run on the driver's own cursor. Building, compiling and
    executing a twenty-join SELECT through the SQL layer costs more than running it for one
    user."""

    sql: str
    defaults: dict[str, Any]
    positions: tuple[str, ...] | None  # parameter names in order for positional drivers
    keys_as_json: bool

    def parameters(self, keys: list, as_of_ms: int):
        values = dict(self.defaults)
        values["keys"] = json.dumps(keys) if self.keys_as_json else keys
        values["as_of_ms"] = as_of_ms
        if self.positions is None:
            return values
        return [values[name] for name in self.positions]


@functools.lru_cache(maxsize=512)
def _batch_statement(specs: tuple[FeatureSpec, ...], by_external: bool, dialect_name: str,
                     dialect) -> CompiledBatch | Any:
    """The statement of a batch lookup, built and compiled once per schema and dialect."""
    stmt = feature_select(specs)
    column = profiles.c.external_id if by_external else profiles.c.id
    stmt = stmt.where(_key_filter(column, dialect_name, by_external))
    if dialect_name not in ("sqlite", "postgresql"):
        return stmt
    compiled = stmt.compile(dialect=dialect)
    defaults = {k: v for k, v in compiled.params.items() if k not in ("keys", "as_of_ms")}
    positions = tuple(compiled.positiontup) if compiled.positional else None
    return CompiledBatch(compiled.string, defaults, positions, dialect_name == "sqlite")


def _fetch(engine: Engine, statement, keys: list, as_of_ms: int) -> list:
    if not isinstance(statement, CompiledBatch):
        with engine.connect() as conn:
            return conn.execute(statement, {"keys": keys, "as_of_ms": as_of_ms}).all()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(statement.sql, statement.parameters(keys, as_of_ms))
            return cursor.fetchall()
        finally:
            cursor.close()
    finally:
        # Back to the pool, which rolls the read transaction back.
        raw.close()


def load_features(engine: Engine, specs: Sequence[FeatureSpec], *, external_ids=None,
                  user_ids=None, as_of_ms: int | None = None) -> FeatureBatch:
    """Features of the given users (by external or internal id), in the order asked, with one
    SQL statement; users that do not exist come back with ``found`` False."""
    as_of_ms = now_ms() if as_of_ms is None else as_of_ms
    dialect = engine.dialect
    stmt = _batch_statement(tuple(specs), external_ids is not None, dialect.name, dialect)
    if external_ids is not None:
        keys = list(dict.fromkeys(external_ids))
        key_index = 1
    else:
        keys = list(dict.fromkeys(int(u) for u in user_ids))
        key_index = 0
    rows: list = []
    if keys:
        rows = _fetch(engine, stmt, keys, int(as_of_ms))
    wanted = list(external_ids) if external_ids is not None else [int(u) for u in user_ids]
    position = {row[key_index]: j for j, row in enumerate(rows)}
    numeric_found, strings_found = _frame_from_rows(specs, rows) if rows else (
        np.empty((0, len(specs))), {i: np.empty(0, dtype=object)
                                    for i, s in enumerate(specs) if s.is_string})
    n = len(wanted)
    take = np.array([position.get(k, -1) for k in wanted], dtype=np.int64)
    found = take >= 0
    numeric = np.full((n, len(specs)), np.nan)
    numeric[found] = numeric_found[take[found]]
    strings = {}
    for i, column in strings_found.items():
        full = np.full(n, None, dtype=object)
        full[found] = column[take[found]]
        strings[i] = full
    apply_defaults(specs, numeric, strings)
    ids = np.zeros(n, dtype=np.int64)
    external: list[str] = []
    for j, k in enumerate(wanted):
        if found[j]:
            row = rows[take[j]]
            ids[j] = row[0]
            external.append(row[1])
        elif external_ids is not None:
            external.append(k)
        else:
            ids[j] = k
            external.append("")
    return FeatureBatch(numeric, strings, found, ids, external)


def iter_feature_chunks(engine: Engine, specs: Sequence[FeatureSpec], *, as_of_ms: int | None,
                        chunk_size: int, user_ids: Iterable[int] | None = None,
                        where=None):
    """Yields FeatureBatch chunks over the whole population (keyset pages on the internal id)
    or over the given internal ids (sorted), one SQL statement per chunk."""
    as_of_ms = now_ms() if as_of_ms is None else as_of_ms
    base = feature_select(specs, as_of_ms)
    if where is not None:
        base = base.where(where)
    if user_ids is not None:
        ordered = sorted(set(int(u) for u in user_ids))
        for start in range(0, len(ordered), chunk_size):
            yield load_features(engine, specs, user_ids=ordered[start:start + chunk_size],
                                as_of_ms=as_of_ms)
        return
    last = -1
    stmt = (base.where(profiles.c.id > bindparam("after")).order_by(profiles.c.id)
            .limit(chunk_size))
    while True:
        with engine.connect() as conn:
            rows = conn.execute(stmt, {"after": last, "as_of_ms": as_of_ms}).all()
        if not rows:
            return
        numeric, strings = _frame_from_rows(specs, rows)
        apply_defaults(specs, numeric, strings)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        yield FeatureBatch(numeric, strings, np.ones(len(rows), dtype=bool), ids,
                           [r[1] for r in rows])
        last = int(ids[-1])
        if len(rows) < chunk_size:
            return
