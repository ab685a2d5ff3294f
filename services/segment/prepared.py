"""Rules built and compiled once, then run at any instant with new bound values."""

from __future__ import annotations

import array
import collections
import dataclasses
import threading
from collections.abc import Callable, Collection, Mapping
from typing import ClassVar

from pyroaring import BitMap
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect

from services.segment.catalog import Catalog
from services.segment.compiler import RESTRICT_IDS, Compiler
from services.segment.rules import Condition, referenced_segments

# Statements kept per read engine, most recently used last.
CACHE_SIZE = 256
# Ids taken from a streamed result at a time (engines without a columnar fetch).
FETCH_ROWS = 65_536
# The largest id a roaring bitmap holds, and the array type it reads without a Python loop.
MAX_ID = 0xFFFF_FFFF
UINT32 = next(code for code in ("I", "L") if array.array(code).itemsize == 4)


@dataclasses.dataclass(frozen=True)
class DriverSql:
    """A statement's SQL text in the driver's own parameter style, with its bound values.

    ``order`` lists the parameter names in the order a positional driver takes them (None:
    the driver takes a mapping). ``values`` are the values as the driver receives them (after
    each type's bind processing); ``names`` maps each bound parameter's key to its name
    there, so a call's values (``now - ms`` for the instants, the arguments as given) replace
    the ones the statement was built with.
    """

    sql: str
    order: tuple[str, ...] | None
    values: dict
    instants: dict[str, int]
    names: dict[str, str]
    processors: dict[str, Callable]
    sequence: Callable

    @classmethod
    def of(cls, statement, dialect: Dialect, instants: dict[str, int]) -> DriverSql | None:
        """The statement compiled for ``dialect``; None when its text depends on its values
        (expanding or literal-execute parameters are rendered at execution)."""
        compiled = statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            return None
        raw = compiled.construct_params(escape_names=False)
        processors, names = {}, {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
            names[bind.key] = name
        values = {k: (processors[k](v) if k in processors else v) for k, v in raw.items()}
        order = tuple(compiled.positiontup) if compiled.positional else None
        escaped = compiled.escaped_bind_names
        if escaped and order is None:
            # A mapping is keyed by the names as the SQL text spells them.
            values = {escaped.get(k, k): v for k, v in values.items()}
            processors = {escaped.get(k, k): v for k, v in processors.items()}
            names = {key: escaped.get(name, name) for key, name in names.items()}
        # An instant the statement does not use (its node was folded away) takes no value.
        instants = {key: ms for key, ms in instants.items() if key in names}
        return cls(compiled.string, order, values, instants, names, processors,
                   dialect.execute_sequence_format)

    def parameters(self, now_ms: int, arguments: Mapping[str, object] | None = None):
        values = self.values
        if self.instants or arguments:
            values = dict(values)
            given = {key: now_ms - ms for key, ms in self.instants.items()}
            given.update(arguments or {})
            for key, value in given.items():
                name = self.names[key]
                processor = self.processors.get(name)
                values[name] = processor(value) if processor is not None else value
        if self.order is None:
            return values
        return self.sequence([values[name] for name in self.order])


@dataclasses.dataclass
class Prepared:
    """One statement built around a rule (its ids, their count, a preview page...), once.

    ``instants`` names the parameters derived from the evaluation instant; running the
    statement with new values for them is the same as building it again at that instant.
    Other per-call values (a page size, the ids of a re-check) are parameters named by the
    statement's shape and passed as ``arguments``. ``driver`` is the compiled text, kept for
    engines whose SQLAlchemy dialect keeps no compiled statements of its own (DuckDB); it is
    made on first use.
    """

    statement: object
    instants: dict[str, int]
    driver: DriverSql | None = None
    compiled: bool = False

    def values(self, now_ms: int, arguments: Mapping[str, object] | None = None) -> dict:
        values = {name: int(now_ms) - ms for name, ms in self.instants.items()}
        if arguments:
            values.update(arguments)
        return values


class Shape:
    """What a kept statement selects around a rule: its members' ids, their count, a
    preview page, an insight breakdown...

    Shapes are frozen dataclasses whose fields are part of the key the statement is kept
    under, so a shape holds what the statement's text depends on, and every value that
    changes from call to call is a named parameter of the statement (an argument).
    """

    # False for statements that read no rule (kept once, whatever the rule).
    uses_rule: ClassVar[bool] = True
    # True for statements limited to the ids bound as ``restrict_ids``.
    restricted: ClassVar[bool] = False

    def build(self, compiler: Compiler, rule: Condition | None):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Ids(Shape):
    """The ids of the rule's members."""

    def build(self, compiler: Compiler, rule: Condition | None):
        return compiler.statement(rule)


@dataclasses.dataclass(frozen=True)
class Count(Shape):
    """How many users the rule selects."""

    def build(self, compiler: Compiler, rule: Condition | None):
        return compiler.count_statement(rule)


@dataclasses.dataclass(frozen=True)
class IdsAmong(Shape):
    """The ids of the rule's members among the ids bound as ``restrict_ids``."""

    restricted: ClassVar[bool] = True

    def build(self, compiler: Compiler, rule: Condition | None):
        return compiler.statement(rule)


IDS, COUNT, IDS_AMONG = Ids(), Count(), IdsAmong()


class PreparedRules:
    """Evaluates rules on one read engine, building and compiling each statement once.

    Building a rule's statement (the compiler's set algebra) and compiling it to SQL take
    0.5-1.5 ms of Python per evaluation, as much as a small store takes to answer. A rule's
    statement depends on the rule, the catalogue, the rules of the segments it refers to and
    its shape (ids, count, a preview page, an insight breakdown, a re-check of some users);
    the evaluation instant only changes the values of the instant parameters, and a call's
    other values (page size, bucket bounds, the ids re-checked) are parameters too. Entries
    are kept per shape and rule (and referenced rules) and dropped when the catalogue's
    content changes.

    SQLite and PostgreSQL run the kept statement through SQLAlchemy, whose statement cache
    then compiles it once. DuckDB's dialect keeps no compiled statements, so there the kept
    SQL text runs on the driver connection with bound values, and ids come back as one
    NumPy column instead of Python rows.
    """

    def __init__(self, dialect: Dialect, size: int = CACHE_SIZE):
        self.dialect = dialect
        self.native = dialect.name == "duckdb"
        self.size = size
        self._entries: collections.OrderedDict[tuple, Prepared] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._catalog_content: tuple | None = None

    def count(self, connection: Connection, rule: Condition, catalog: Catalog, now_ms: int,
              resolve: Callable[[int], Condition | None] | None = None) -> int:
        """How many users match ``rule`` at ``now_ms``."""
        prepared = self.prepare(COUNT, rule, catalog, now_ms, resolve)
        driver = self._driver(prepared)
        if driver is not None:
            cursor = self._run(connection, driver, now_ms)
            return int(cursor.fetchone()[0])
        return int(connection.execute(prepared.statement, prepared.values(now_ms)).scalar_one())

    def members(self, connection: Connection, rule: Condition, catalog: Catalog, now_ms: int,
                resolve: Callable[[int], Condition | None] | None = None) -> BitMap:
        """Every matching user's id at ``now_ms``, as a bitmap."""
        prepared = self.prepare(IDS, rule, catalog, now_ms, resolve)
        driver = self._driver(prepared)
        members = BitMap()
        if driver is not None:
            (column,) = self._run(connection, driver, now_ms).fetchnumpy().values()
            members.update(_id_array(column))
            return members
        result = connection.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(
            prepared.statement, prepared.values(now_ms))
        for part in result.scalars().partitions(FETCH_ROWS):
            members.update(part)
        return members

    def among(self, connection: Connection, rule: Condition, catalog: Catalog, now_ms: int,
              user_ids: Collection[int],
              resolve: Callable[[int], Condition | None] | None = None) -> set[int]:
        """Which of ``user_ids`` match ``rule`` at ``now_ms`` (real-time re-checks)."""
        rows = self.rows(connection, IDS_AMONG, rule, catalog, now_ms, resolve,
                         {RESTRICT_IDS: list(user_ids)})
        return {int(row[0]) for row in rows}

    def rows(self, connection: Connection, shape: Shape, rule: Condition | None,
             catalog: Catalog, now_ms: int,
             resolve: Callable[[int], Condition | None] | None = None,
             arguments: Mapping[str, object] | None = None) -> list:
        """Every row of the kept statement of ``shape`` around ``rule``, run at ``now_ms``
        with ``arguments`` bound to the shape's parameters."""
        prepared = self.prepare(shape, rule, catalog, now_ms, resolve)
        driver = self._driver(prepared)
        if driver is not None:
            return self._run(connection, driver, now_ms, arguments).fetchall()
        return connection.execute(prepared.statement,
                                  prepared.values(now_ms, arguments)).all()

    def prepare(self, shape: Shape, rule: Condition | None, catalog: Catalog, now_ms: int,
                resolve: Callable[[int], Condition | None] | None = None) -> Prepared:
        """The kept statement of ``shape`` for ``rule`` (built now when there is none)."""
        if not shape.uses_rule:
            rule = None
        references = _references(rule, resolve) if rule is not None else ()
        lookup = dict(references).get if resolve is not None else None
        key = (shape, rule, references)
        try:
            hash(key)
        except TypeError:  # a tree holding a mutable value: build it every time
            return self._build(shape, rule, catalog, now_ms, lookup)
        with self._lock:
            self._check_catalog(catalog)
            prepared = self._entries.get(key)
            if prepared is not None:
                self._entries.move_to_end(key)
                return prepared
        prepared = self._build(shape, rule, catalog, now_ms, lookup)
        with self._lock:
            if self._catalog is catalog:
                self._entries[key] = prepared
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return prepared

    def _check_catalog(self, catalog: Catalog) -> None:
        if catalog is self._catalog:
            return
        content = (tuple(sorted(catalog.attributes.items())), catalog.models)
        if content != self._catalog_content:
            self._entries.clear()
            self._catalog_content = content
        self._catalog = catalog

    def _build(self, shape: Shape, rule: Condition | None, catalog: Catalog, now_ms: int,
               lookup: Callable[[int], Condition | None] | None) -> Prepared:
        # Referenced rules come from the key, so the statement inlines what the key names.
        # A restricted statement is built for no user; each call binds its own ids.
        compiler = Compiler(catalog, now_ms, lookup, [] if shape.restricted else None,
                            self.dialect.name)
        statement = shape.build(compiler, rule)
        return Prepared(statement, dict(compiler.instants))

    def _driver(self, prepared: Prepared) -> DriverSql | None:
        if not self.native:
            return None
        if not prepared.compiled:
            # Two threads may both compile a new entry; either result is the same text.
            prepared.driver = DriverSql.of(prepared.statement, self.dialect, prepared.instants)
            prepared.compiled = True
        return prepared.driver

    def _run(self, connection: Connection, driver: DriverSql, now_ms: int,
             arguments: Mapping[str, object] | None = None):
        """Executes on the driver connection; errors are wrapped as SQLAlchemy wraps them."""
        parameters = driver.parameters(int(now_ms), arguments)
        try:
            return connection.connection.driver_connection.execute(driver.sql, parameters)
        except self.dialect.loaded_dbapi.Error as exc:
            raise sa_exc.DBAPIError.instance(
                driver.sql, parameters, exc, self.dialect.loaded_dbapi.Error,
                dialect=self.dialect) from exc


def _references(rule: Condition, resolve: Callable[[int], Condition | None] | None
                ) -> tuple[tuple[int, Condition | None], ...]:
    """Every segment ``rule`` refers to, directly or through others, with its rule (None
    when it does not exist), in id order: the compiled statement inlines them."""
    if resolve is None:
        return ()
    found: dict[int, Condition | None] = {}
    pending = sorted(referenced_segments(rule))
    while pending:
        segment_id = pending.pop()
        if segment_id in found:
            continue
        found[segment_id] = resolved = resolve(segment_id)
        if resolved is not None:
            pending.extend(referenced_segments(resolved) - found.keys())
    return tuple(sorted(found.items(), key=lambda item: item[0]))


def _id_array(column):
    """Ids from a NumPy column as an array of 32-bit unsigned integers, which a bitmap takes
    in one call; a column a bitmap cannot hold (NULLs, ids beyond 32 bits) is given back as a
    list, so the bitmap raises its own error as it did for rows."""
    import numpy as np

    if (np.ma.isMaskedArray(column) and np.ma.getmaskarray(column).any()) or (
        column.size and (column.min() < 0 or column.max() > MAX_ID)
    ):
        return column.tolist()
    return array.array(UINT32, np.asarray(column, dtype=np.uint32).tobytes())


__all__ = ["COUNT", "IDS", "IDS_AMONG", "Count", "DriverSql", "Ids", "IdsAmong", "Prepared",
           "PreparedRules", "Shape"]
