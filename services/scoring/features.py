"""Feature schemas and their assembly from the profile store: one SQL statement per batch."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import threading
import time
import weakref
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

from services.common.errors import InvalidArgument, connection_lost
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

    def __hash__(self) -> int:
        # Schemas are cache keys on every scoring call; hashing eight fields of twenty specs
        # each time costs more than the lookup, so the hash is computed once.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(dataclasses.astuple(self))
            object.__setattr__(self, "_hash", cached)
        return cached


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
    """1.0 / 0.0 / NULL: PostgreSQL has no cast from boolean to a floating type. The two
    numbers are written into the SQL text: as bound parameters, a twenty-feature schema would
    bind forty constants on every lookup, a third of the cost of reading one user."""
    return case((column.is_(True), literal_column("1.0", Float)),
                (column.is_(False), literal_column("0.0", Float)), else_=None)


def _name_constant(name: str):
    """An attribute name written into the SQL text as a quoted literal. Names are checked by
    the profile service (lower-case letters, digits, underscores); quotes are doubled all the
    same. Bound instead, a twenty-feature lookup binds twenty strings on every call."""
    return literal_column("'" + name.replace("'", "''") + "'", Text)


def _attribute_value(spec: FeatureSpec, alias):
    if spec.is_string:
        return alias.c.str_value
    flag = _bool_as_number(alias.c.bool_value)
    if spec.value_type == "bool":
        return flag
    # Timestamp attributes are read as epoch milliseconds, numbers as they are.
    return func.coalesce(alias.c.num_value, cast(alias.c.ts_value, Float), flag)


def _column_for(spec: FeatureSpec, index: int, as_of: Any, joins: dict[str, Any],
                scalar: bool = False):
    """The SQL expression of one feature, adding the outer joins it needs to ``joins``; with
    ``scalar``, attributes are read by correlated scalar subqueries instead of joins."""
    if spec.source == "attribute":
        alias = profile_attributes.alias(f"a{index}")
        on = and_(alias.c.user_id == profiles.c.id, alias.c.name == _name_constant(spec.key))
        if scalar:
            return select(_attribute_value(spec, alias)).where(on).scalar_subquery()
        joins[alias.name] = (alias, on)
        return _attribute_value(spec, alias)
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


def feature_select(specs: Sequence[FeatureSpec], as_of_ms: int | None = None, *,
                   single: bool = False):
    """SELECT id, external_id, <one column per feature> FROM profiles with the joins needed;
    callers add the WHERE clause choosing the batch and pass ``as_of_ms`` when executing.

    ``single`` shapes it for one user: each attribute a correlated scalar subquery, a lookup
    of one primary key that stops at its row, where an outer join goes on scanning the index
    for more matches. That is a third cheaper for one user and slower for thousands."""
    as_of = bindparam("as_of_ms", as_of_ms, type_=Float)
    joins: dict[str, Any] = {}
    columns = [_column_for(spec, i, as_of, joins, single).label(f"f{i}")
               for i, spec in enumerate(specs)]
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


@functools.lru_cache(maxsize=512)
def _defaults_by_value(specs: tuple[FeatureSpec, ...]):
    row = np.array([float(s.default) if s.default is not None and not s.is_string else np.nan
                    for s in specs], dtype=np.float64)
    has = ~np.isnan(row)
    strings = tuple((i, s.default if s.default is not None else "")
                    for i, s in enumerate(specs) if s.is_string)
    if not has.any():
        return None, None, strings
    row.setflags(write=False)
    has.setflags(write=False)
    return row, has, strings


# Schemas seen as tuple objects, by identity: a loaded model passes the same tuple on every
# call, and comparing twenty specs field by field (what a cache keyed by value does on each
# hit when the key was built from equal but distinct specs) costs more than the lookup.
_BY_IDENTITY: dict[tuple, tuple[tuple, Any, Any]] = {}
_BY_IDENTITY_MAX = 1024


def _by_identity(specs: Sequence[FeatureSpec], what, build, owner: Any = None):
    """``build(specs)`` remembered per schema tuple (by identity), ``what`` and ``owner``, an
    object also compared by identity (a dialect, for compiled statements)."""
    if not isinstance(specs, tuple):
        return build(tuple(specs))
    key = (id(specs), id(owner), what)
    entry = _BY_IDENTITY.get(key)
    if entry is not None and entry[0] is specs and entry[1] is owner:
        return entry[2]
    value = build(specs)
    if len(_BY_IDENTITY) >= _BY_IDENTITY_MAX:
        _BY_IDENTITY.clear()
    # The entry holds both objects, so neither id can be reused while the entry exists.
    _BY_IDENTITY[key] = (specs, owner, value)
    return value


def _defaults_of(specs: Sequence[FeatureSpec]) -> tuple[np.ndarray | None, np.ndarray | None,
                                                        tuple[tuple[int, str], ...]]:
    """The numeric defaults as one row (NaN where none) with the mask of columns having one
    (None when no numeric feature has a default), and the string features' fill values."""
    return _by_identity(specs, "defaults", _defaults_by_value)


def apply_defaults(specs: Sequence[FeatureSpec], numeric: np.ndarray,
                   strings: dict[int, np.ndarray]) -> None:
    """Fills missing values with each feature's default: the numeric columns in one
    vectorised call (only when something is missing), the string columns one by one."""
    row, has, string_fills = _defaults_of(specs)
    if row is not None and numeric.size:
        missing = np.isnan(numeric)
        if missing.any():
            np.copyto(numeric, row, where=missing & has)
    for i, fill in string_fills:
        column = strings[i]
        missing = np.equal(column, None)
        if missing.any():
            column[missing] = fill


def _frame_from_rows(specs: Sequence[FeatureSpec], rows: list) -> tuple[np.ndarray, dict]:
    n, width = len(rows), len(specs)
    string_idx = [i for i, _ in _defaults_of(specs)[2]]
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
        keys_value = json.dumps(keys) if self.keys_as_json else keys
        if self.positions is None:
            values = dict(self.defaults)
            values["keys"] = keys_value
            values["as_of_ms"] = as_of_ms
            return values
        # The constant parameters are laid out once; each call fills only the two slots.
        template, keys_at, as_of_at = self._layout
        values = list(template)
        for i in keys_at:
            values[i] = keys_value
        for i in as_of_at:
            values[i] = as_of_ms
        return values

    @functools.cached_property
    def _layout(self) -> tuple[tuple, tuple[int, ...], tuple[int, ...]]:
        names = self.positions or ()
        template = tuple(self.defaults.get(n) for n in names)
        return (template, tuple(i for i, n in enumerate(names) if n == "keys"),
                tuple(i for i, n in enumerate(names) if n == "as_of_ms"))


@functools.lru_cache(maxsize=512)
def _batch_statement(specs: tuple[FeatureSpec, ...], by_external: bool, dialect_name: str,
                     dialect, single: bool = False) -> CompiledBatch | Any:
    """The statement of a batch lookup, built and compiled once per schema and dialect;
    ``single`` is the one-user form, whose ``keys`` parameter is the key itself."""
    stmt = feature_select(specs, single=single)
    column = profiles.c.external_id if by_external else profiles.c.id
    if single:
        stmt = stmt.where(column == bindparam("keys"))
    else:
        stmt = stmt.where(_key_filter(column, dialect_name, by_external))
    if dialect_name not in ("sqlite", "postgresql"):
        return stmt
    compiled = stmt.compile(dialect=dialect)
    defaults = {k: v for k, v in compiled.params.items() if k not in ("keys", "as_of_ms")}
    positions = tuple(compiled.positiontup) if compiled.positional else None
    return CompiledBatch(compiled.string, defaults, positions,
                         dialect_name == "sqlite" and not single)


def _lookup_statement(specs: tuple[FeatureSpec, ...], dialect, by_external: bool,
                      single: bool = False):
    """The compiled lookup of a schema on a dialect (the engine's database and driver)."""
    return _by_identity(specs, ("lookup", by_external, single), lambda t: _batch_statement(
        t, by_external, dialect.name, dialect, single), owner=dialect)


# Driver connections kept open per engine for batch lookups, outside the engine's pool.
# A pool checkout and return (events, reset, weak references) costs about as much as reading
# one user's twenty attributes, so a lookup takes an idle connection from here instead.
# They form a stack (last in, first out): the connection used last, whose page cache and
# prepared statements are warm, serves the next lookup. Taking them in turn instead made a
# one-user lookup half as slow again once a batch had opened a second connection.
MAX_IDLE_CONNECTIONS = 4
_IDLE: weakref.WeakKeyDictionary[Engine, collections.deque] = weakref.WeakKeyDictionary()
_IDLE_LOCK = threading.Lock()


def _idle(engine: Engine) -> collections.deque:
    found = _IDLE.get(engine)
    if found is None:
        with _IDLE_LOCK:
            found = _IDLE.setdefault(engine, collections.deque())
    return found


def release_connections(engine: Engine) -> None:
    """Closes the connections kept for ``engine``'s batch lookups (before disposing of it)."""
    idle = _IDLE.get(engine)
    while idle:
        idle.pop().close()


def _open_detached(engine: Engine):
    """A new driver connection of ``engine``, detached: the pool neither counts it nor
    resets it; this module owns it now."""
    pooled = engine.raw_connection()
    pooled.detach()
    return pooled.dbapi_connection


def _fetch(engine: Engine, statement, keys, as_of_ms: int) -> list:
    """Rows of ``statement`` for ``keys`` (a list, or one key for the one-user form)."""
    if not isinstance(statement, CompiledBatch):
        with engine.connect() as conn:
            return conn.execute(statement, {"keys": keys, "as_of_ms": as_of_ms}).all()
    return _run_kept(engine, _idle(engine), statement.sql, statement.parameters(keys, as_of_ms),
                     False, engine.dialect.name != "sqlite")


def _run_kept(engine: Engine, idle: collections.deque, sql: str, parameters, one: bool,
              rollback: bool):
    """Runs a lookup on a kept driver connection: the first row (``one``) or all rows.
    ``rollback`` ends the read transaction a PostgreSQL read opens, so that the next lookup
    sees the store as it is then; SQLite holds none after a finished SELECT (and says so).

    Kept connections are never pinged. When the server has dropped one (a restart, an idle
    timeout), the lookup fails with a lost connection; then every kept connection of the
    engine is closed (they predate the same outage) and the lookup runs once more on a new
    one. A failure on a new connection is the caller's."""
    try:
        connection = idle.pop()
        kept = True
    except IndexError:
        connection, kept = _open_detached(engine), False
    while True:
        try:
            cursor = connection.cursor()
            cursor.execute(sql, parameters)
            rows = cursor.fetchone() if one else cursor.fetchall()
            cursor.close()
            if rollback or connection.in_transaction:
                connection.rollback()
            break
        except BaseException as exc:
            _close_quietly(connection)
            if not (kept and rollback and connection_lost(exc)):
                raise
            while idle:
                _close_quietly(idle.pop())
            connection, kept = _open_detached(engine), False
    if len(idle) < MAX_IDLE_CONNECTIONS:
        idle.append(connection)
    else:
        connection.close()
    return rows


def _close_quietly(connection) -> None:
    with contextlib.suppress(Exception):  # already broken: nothing left to release
        connection.close()


class UserReader:
    """The one-user lookup of one schema on one engine, resolved once: what an online
    scoring call runs, with nothing to look up around the statement itself. Where the lookup
    runs on the driver's cursor (SQLite, PostgreSQL), the SQL, its parameter layout and the
    engine's idle connections are held here, so a read is a pop, one execute and a push."""

    __slots__ = (
        "_as_of_at",
        "_idle",
        "_key_at",
        "_rollback",
        "_sql",
        "_template",
        "engine",
        "statement",
    )

    def __init__(self, engine: Engine, specs: tuple[FeatureSpec, ...], by_external: bool):
        self.engine = engine
        self.statement = statement = _lookup_statement(specs, engine.dialect, by_external,
                                                       single=True)
        self._sql = None
        if isinstance(statement, CompiledBatch):
            self._sql = statement.sql
            self._idle = _idle(engine)
            if statement.positions is None:  # named parameters (PostgreSQL's driver)
                self._template = dict(statement.defaults)
                self._key_at, self._as_of_at = ("keys",), ("as_of_ms",)
            else:
                self._template, self._key_at, self._as_of_at = statement._layout
            self._rollback = engine.dialect.name != "sqlite"  # see _run_kept

    def read(self, key, as_of_ms: int | None = None) -> tuple | None:
        """``(id, external_id, value, ...)`` with None for missing values, or None when the
        user does not exist."""
        sql = self._sql
        if sql is None:
            rows = _fetch(self.engine, self.statement, key,
                          now_ms() if as_of_ms is None else int(as_of_ms))
            return rows[0] if rows else None
        template = self._template
        if len(template) == 1 and not self._as_of_at:
            values = (key,)  # attributes and traits only: the key is the one parameter
        else:
            values = template.copy() if isinstance(template, dict) else list(template)
            for i in self._key_at:
                values[i] = key
            if self._as_of_at:
                when = now_ms() if as_of_ms is None else int(as_of_ms)
                for i in self._as_of_at:
                    values[i] = when
        return _run_kept(self.engine, self._idle, sql, values, True, self._rollback)


def load_features(engine: Engine, specs: Sequence[FeatureSpec], *, external_ids=None,
                  user_ids=None, as_of_ms: int | None = None) -> FeatureBatch:
    """Features of the given users (by external or internal id), in the order asked, with one
    SQL statement; users that do not exist come back with ``found`` False."""
    as_of_ms = now_ms() if as_of_ms is None else as_of_ms
    specs = specs if isinstance(specs, tuple) else tuple(specs)
    by_external = external_ids is not None
    if by_external:
        wanted = list(external_ids)
        key_index = 1
    else:
        wanted = [int(u) for u in user_ids]
        key_index = 0
    n = len(wanted)
    if n == 1:
        stmt = _lookup_statement(specs, engine.dialect, by_external, single=True)
        rows: list = _fetch(engine, stmt, wanted[0], int(as_of_ms))
    else:
        stmt = _lookup_statement(specs, engine.dialect, by_external)
        keys = list(dict.fromkeys(wanted))
        rows = _fetch(engine, stmt, keys, int(as_of_ms)) if keys else []
    if len(rows) == n and (rows[0][key_index] == wanted[0] if n == 1 else
                           all(r[key_index] == k for r, k in zip(rows, wanted))):
        # Every user found, in the order asked (always so for one user): no reordering.
        numeric, strings = _frame_from_rows(specs, rows)
        apply_defaults(specs, numeric, strings)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return FeatureBatch(numeric, strings, np.ones(n, dtype=bool), ids,
                            [r[1] for r in rows])
    position = {row[key_index]: j for j, row in enumerate(rows)}
    numeric_found, strings_found = _frame_from_rows(specs, rows) if rows else (
        np.empty((0, len(specs))), {i: np.empty(0, dtype=object)
                                    for i, s in enumerate(specs) if s.is_string})
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
