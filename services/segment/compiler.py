"""Compiles a rule tree into one SQLAlchemy Core statement over the profile store."""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable, Sequence

from sqlalchemy import (
    Double,
    bindparam,
    cast,
    distinct,
    exists,
    func,
    intersect,
    literal,
    not_,
    or_,
    select,
    true,
    union,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FunctionElement, Select
from sqlalchemy.types import Boolean, TypeDecorator, UserDefinedType

from services.common import profile_tables as pt
from services.segment.catalog import TRAITS, Catalog
from services.segment.rules import (
    VALUE_MEASURE,
    AbsoluteWindow,
    Aggregate,
    And,
    AttributeCondition,
    Condition,
    ConsentCondition,
    Duration,
    EventAggregateCondition,
    EventSpec,
    LifecycleCondition,
    Not,
    Op,
    Or,
    PropertyFilter,
    RfmCondition,
    SegmentCondition,
    SequenceCondition,
    Source,
    TagCondition,
    Window,
)
from services.segment.validate import parse_instant

DAY_MS = 86_400_000
# The name of the parameter holding the ids an evaluation is restricted to.
RESTRICT_IDS = "restrict_ids"

VALUE_COLUMNS = {
    "string": pt.profile_attributes.c.str_value,
    "number": pt.profile_attributes.c.num_value,
    "bool": pt.profile_attributes.c.bool_value,
    "timestamp": pt.profile_attributes.c.ts_value,
    "string_list": pt.profile_attributes.c.list_value,
}

_PY_OPS: dict[Op, Callable] = {
    Op.EQ: operator.eq, Op.NE: operator.ne, Op.LT: operator.lt, Op.LE: operator.le,
    Op.GT: operator.gt, Op.GE: operator.ge,
}


class CompileError(ValueError):
    """A tree the compiler cannot translate (validation should have refused it)."""


class json_list_contains(FunctionElement):
    """True when a JSON array column holds the given string; each engine spells it its way."""

    type = Boolean()
    inherit_cache = True
    name = "json_list_contains"


@compiles(json_list_contains, "sqlite")
def _contains_sqlite(element, compiler, **kw):
    column, value = list(element.clauses)
    return (
        f"EXISTS (SELECT 1 FROM json_each({compiler.process(column, **kw)}) "
        f"WHERE json_each.value = {compiler.process(value, **kw)})"
    )


@compiles(json_list_contains, "postgresql")
def _contains_postgresql(element, compiler, **kw):
    column, value = list(element.clauses)
    return (
        f"jsonb_exists(CAST({compiler.process(column, **kw)} AS JSONB), "
        f"{compiler.process(value, **kw)})"
    )


@compiles(json_list_contains, "duckdb")
def _contains_duckdb(element, compiler, **kw):
    column, value = list(element.clauses)
    return (
        f"json_contains({compiler.process(column, **kw)}, "
        f"to_json(CAST({compiler.process(value, **kw)} AS VARCHAR)))"
    )


@compiles(json_list_contains)
def _contains_default(element, compiler, **kw):
    raise CompileError(f"'contains' on a string list is not supported on {compiler.dialect.name}")


class IdListType(UserDefinedType):
    """The engine type of an id list parameter (only ever bound, never stored)."""

    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "BIGINT[]"


class IdList(TypeDecorator):
    """User ids bound as one parameter: a JSON array on SQLite (read back with json_each),
    a list the driver sends as an array elsewhere. The statement's text is the same for any
    number of ids, so it is compiled once and the engine prepares it once."""

    impl = IdListType
    cache_ok = True

    def process_bind_param(self, value, dialect):
        ids = [int(v) for v in value]
        return json.dumps(ids) if dialect.name == "sqlite" else ids


class in_id_list(FunctionElement):
    """True when the id column's value is in a bound id list (``IdList``)."""

    type = Boolean()
    inherit_cache = True
    name = "in_id_list"

    def self_group(self, against=None):
        # Already a predicate: never "... = 1" on engines without a boolean type, which
        # would keep SQLite from looking the ids up in an index.
        return self


@compiles(in_id_list, "sqlite")
def _in_ids_sqlite(element, compiler, **kw):
    column, ids = list(element.clauses)
    return (f"{compiler.process(column, **kw)} IN "
            f"(SELECT value FROM json_each({compiler.process(ids, **kw)}))")


@compiles(in_id_list, "postgresql")
def _in_ids_postgresql(element, compiler, **kw):
    column, ids = list(element.clauses)
    ids_sql = compiler.process(ids, **kw)
    return f"{compiler.process(column, **kw)} = ANY(CAST({ids_sql} AS BIGINT[]))"


@compiles(in_id_list, "duckdb")
def _in_ids_duckdb(element, compiler, **kw):
    column, ids = list(element.clauses)
    return (f"{compiler.process(column, **kw)} IN "
            f"(SELECT UNNEST(CAST({compiler.process(ids, **kw)} AS BIGINT[])))")


@compiles(in_id_list)
def _in_ids_default(element, compiler, **kw):
    raise CompileError(f"id lists are not supported on {compiler.dialect.name}")


def bound_list(column, values: Sequence) -> list:
    """One bound parameter per value: an IN list rendered in the SQL text, not expanded at
    execution, so the compiled text of a rule can be kept and run again as it is."""
    return [literal(v, column.type) for v in values]


def compare(column, op: Op, values: Sequence, list_column: bool = False) -> ColumnElement:
    """``column <op> values`` with every value a bound parameter."""
    if op is Op.EXISTS:
        return column.is_not(None)
    if op is Op.BETWEEN:
        return column.between(values[0], values[1])
    if op is Op.IN:
        return column.in_(bound_list(column, values))
    if op is Op.NOT_IN:
        return column.not_in(bound_list(column, values))
    if op is Op.CONTAINS:
        if list_column:
            return json_list_contains(column, bindparam(None, values[0]))
        return column.contains(values[0], autoescape=True)
    return _PY_OPS[op](column, values[0])


def satisfied_by(op: Op, values: Sequence[float], value: float) -> bool:
    """Whether ``value <op> values`` holds, for aggregates whose empty value is known."""
    if op is Op.BETWEEN:
        return values[0] <= value <= values[1]
    return bool(_PY_OPS[op](value, values[0]))


@dataclasses.dataclass(frozen=True)
class Members:
    """A set of user ids: the ids a query selects, or every profile except those.

    ``query`` selects one column named ``user_id``. ``unique`` says each id appears at most
    once (keys of the attribute, trait, tag, score and consent tables, grouped aggregates,
    set operations), so no DISTINCT is needed. ``correlate`` builds the same test as an
    EXISTS correlated with an outer id column, for engines that run semi-joins best that
    way; it is None for queries with no table to correlate (groups, set operations).
    ``index_only`` says an index answers the correlated form without reading table rows
    (event tests on type and time only: ``(user_id, event_type, ts_ms)``). ``rank`` orders
    candidate drivers of an AND: lower ranks are expected to be smaller and cheaper to
    enumerate. ``wide`` marks event tests over a long or unbounded window, whose id lists
    are long.
    """

    query: Select
    positive: bool = True
    unique: bool = False
    correlate: Callable[[ColumnElement], ColumnElement] | None = None
    rank: int = 5
    index_only: bool = False
    wide: bool = False

    def negated(self) -> Members:
        return dataclasses.replace(self, positive=not self.positive)


# Driver ranks: an indexed key lookup on a typed value first, then event existence tests
# (one index range), then grouped aggregates, which must read and group every event in
# their window before a single id comes out.
RANK_KEYED, RANK_EVENTS, RANK_GROUPED, RANK_COMPOSITE = 1, 2, 3, 4

# Event windows longer than this (or none) are "wide": their events are many.
WIDE_WINDOW_MS = 30 * DAY_MS


def window_ms(window: Window) -> int | None:
    """The length of a window; None when it is unbounded (all events up to now)."""
    if isinstance(window, Duration):
        return window.ms
    if isinstance(window, AbsoluteWindow):
        return window.end_ms - window.start_ms
    return None


class Compiler:
    """Turns trees into statements selecting user ids; one instance per evaluation.

    ``now_ms`` anchors every relative window, so the same rule gives the same audience for
    the same instant. Every value derived from it is a named bound parameter (``before_now``,
    recorded in ``instants``), so a statement built once can run at another instant with new
    values for those names alone (``PreparedRules``). ``restrict_ids`` limits the evaluation
    to some users (real-time re-checks): it is pushed into every subquery so engines never
    scan the whole store. The ids are one parameter (``restrict_ids``, an ``IdList``), so a
    statement built for some users re-checks any others with new values for that name.
    ``dialect`` (the read engine's dialect name) picks the semi-join spelling that engine
    plans best; the result is the same on every engine.

    Every node compiles to a set of ids (``Members``), not to a predicate over all profiles:
    an AND is driven from its most promising positive condition, with the other positive
    conditions as semi-joins and the negative ones as anti-joins, so the statement starts
    from the selective rows instead of scanning every profile. Only a rule whose every
    branch is negative (``count(order) == 0`` alone) reads the profiles table, as the
    complement of what it excludes. The read path holds rows only for existing profiles
    (the profile service deletes a user's rows with the profile), so ids drawn from the
    other tables are profiles.
    """

    def __init__(self, catalog: Catalog, now_ms: int,
                 resolve_segment: Callable[[int], Condition | None] | None = None,
                 restrict_ids: Sequence[int] | None = None, dialect: str | None = None):
        self.catalog = catalog
        self.now_ms = int(now_ms)
        self.resolve_segment = resolve_segment
        self.dialect = dialect
        self.restrict = (
            bindparam(RESTRICT_IDS, list(restrict_ids), type_=IdList())
            if restrict_ids is not None else None
        )
        self._inlining: list[int] = []
        # Bound parameter name -> how many ms before ``now_ms`` its value lies.
        self.instants: dict[str, int] = {}

    # Entry points.
    def statement(self, rule: Condition):
        """SELECT DISTINCT user ids matching ``rule``; the column is named ``id``."""
        members = self.members(rule)
        if not members.positive:
            profiles = pt.profiles
            where = [self._excludes(profiles.c.id, members)]
            if self.restrict is not None:
                where.insert(0, in_id_list(profiles.c.id, self.restrict))
            return select(profiles.c.id).where(*where)
        found = members.query.subquery("members")
        statement = select(found.c.user_id.label("id"))
        return statement if members.unique else statement.distinct()

    def count_statement(self, rule: Condition):
        return select(func.count()).select_from(self.statement(rule).subquery())

    # Set algebra.
    def members(self, node: Condition) -> Members:
        if isinstance(node, And):
            return self._intersection([self.members(c) for c in node.conditions])
        if isinstance(node, Or):
            parts = [self.members(c) for c in node.conditions]
            if all(p.positive for p in parts):
                return Members(union(*(p.query for p in parts)), unique=True,
                               rank=RANK_COMPOSITE)
            # a or not b == not (not a and b): the complement of an intersection.
            return self._intersection([p.negated() for p in parts]).negated()
        if isinstance(node, Not):
            return self.members(node.condition).negated()
        handler = getattr(self, "_" + type(node).__name__, None)
        if handler is None:
            raise CompileError(f"cannot compile {type(node).__name__}")
        return handler(node)

    def _intersection(self, parts: list[Members]) -> Members:
        positives = [p for p in parts if p.positive]
        negatives = [p for p in parts if not p.positive]
        if not positives:
            # not a and not b == not (a or b).
            union_query = union(*(p.query for p in negatives)) if len(negatives) > 1 \
                else negatives[0].query
            return Members(union_query, positive=False, unique=True, rank=RANK_COMPOSITE)
        if len(parts) == 1:
            return parts[0]
        order = sorted(range(len(positives)), key=lambda i: (positives[i].rank, i))
        driver = positives[order[0]]
        others = [positives[i] for i in order[1:]]
        if self.dialect == "duckdb" and others:
            # DuckDB runs INTERSECT as hash semi-joins between the sets and picks the build
            # sides itself, which beats any fixed driver when the sets' sizes are unknown.
            source, others = intersect(*(p.query for p in positives)), []
        else:
            source = driver.query if driver.unique else driver.query.distinct()
        ids = source.subquery()
        where = [self._includes(ids.c.user_id, p) for p in others]
        where += [self._excludes(ids.c.user_id, p) for p in negatives]
        return Members(select(ids.c.user_id).where(*where), unique=True, rank=RANK_COMPOSITE)

    def _includes(self, column, members: Members) -> ColumnElement:
        # PostgreSQL plans EXISTS as a hash or merge semi-join. SQLite runs a correlated
        # EXISTS as one index probe per outer row, which wins when the index alone answers
        # it; otherwise each probe reads table rows and IN (one pass building a temporary
        # index of the ids) is faster. DuckDB turns IN into a hash semi-join directly.
        if self.dialect == "postgresql" or (
            self.dialect == "sqlite" and members.index_only and members.correlate is not None
        ):
            return self._correlated(column, members)
        return column.in_(members.query)

    def _excludes(self, column, members: Members) -> ColumnElement:
        # PostgreSQL runs NOT IN (subquery) as a hashed subplan only while the ids fit in
        # work_mem and as a nested loop beyond, so it gets NOT EXISTS (a hash anti-join).
        # SQLite and DuckDB build the excluded ids once (a temporary index, a hash table),
        # cheaper than probing per outer row, except on SQLite when the excluded events
        # span a long window (many ids to index) and the index alone answers each probe.
        if self.dialect == "postgresql" or (
            self.dialect == "sqlite" and members.index_only and members.wide
            and members.correlate is not None
        ):
            return not_(self._correlated(column, members))
        return column.not_in(members.query)

    def _correlated(self, column, members: Members) -> ColumnElement:
        if members.correlate is not None:
            return members.correlate(column)
        found = members.query.subquery()
        return exists(select(literal(1)).select_from(found).where(found.c.user_id == column)
                      .correlate_except(found))

    def _leaf(self, user_id, where: list, *, unique: bool, rank: int,
              positive: bool = True, select_from=None, index_only: bool = False,
              wide: bool = False) -> Members:
        """A filtered table as a set of ids, with its correlated (EXISTS) spelling."""
        source = user_id.table if select_from is None else select_from
        where = [*where, *self._users(user_id)]
        # Never correlated: the same tables may appear in statements embedding this one.
        query = (select(user_id.label("user_id")).select_from(source).where(*where)
                 .correlate(None))

        def correlate(outer):
            return exists(select(literal(1)).select_from(source).where(user_id == outer, *where)
                          .correlate_except(source))

        return Members(query, positive=positive, unique=unique, correlate=correlate, rank=rank,
                       index_only=index_only, wide=wide)

    # Helpers.
    def _users(self, column) -> list:
        return [in_id_list(column, self.restrict)] if self.restrict is not None else []

    def before_now(self, column, ms: int = 0):
        """The instant ``ms`` before now, as a parameter named after ``ms`` (one per offset:
        every use of it has the same value)."""
        name = f"as_of_minus_{ms}" if ms else "as_of"
        self.instants[name] = ms
        return bindparam(name, self.now_ms - ms, type_=column.type)

    def window(self, ts, window: Window) -> list:
        if isinstance(window, Duration):
            return [ts > self.before_now(ts, window.ms), ts <= self.before_now(ts)]
        if isinstance(window, AbsoluteWindow):
            return [ts >= window.start_ms, ts < window.end_ms]
        return [ts <= self.before_now(ts)]

    def property_filter(self, table, item: PropertyFilter) -> ColumnElement:
        element = table.c.properties[item.property]
        kinds = {type(v) for v in item.values}
        if item.op is Op.EXISTS:
            return element.as_string().is_not(None)
        if bool in kinds:
            column = element.as_boolean()
        elif kinds & {int, float} and item.op is not Op.CONTAINS:
            column = self.json_number(element)
        else:
            column = element.as_string()
        return compare(column, item.op, item.values)

    def event_filters(self, table, spec: EventSpec) -> list:
        clauses = []
        if spec.event_type is not None:
            clauses.append(table.c.event_type == spec.event_type)
        clauses.extend(self.property_filter(table, f) for f in spec.filters)
        return clauses

    def measure(self, table, measure: str | None):
        if measure is None or measure == VALUE_MEASURE:
            return table.c.value
        return self.json_number(table.c.properties[measure])

    def json_number(self, element):
        """A JSON property as a double, spelled the way each engine reads it fastest.

        SQLite's JSON_EXTRACT already yields a number, so it is cast directly instead of
        through text; the other engines extract text (``->>``) and cast it.
        """
        if self.dialect == "sqlite":
            return element.as_float()
        return cast(element.as_string(), Double)

    # Nodes.
    def _AttributeCondition(self, node: AttributeCondition) -> Members:
        resolved = self.catalog.resolve(node.field)
        if resolved is None:
            raise CompileError(f"unknown field {node.field.name!r}")
        values = node.values
        if resolved.value_type == "timestamp":
            values = tuple(parse_instant(v) if isinstance(v, str) else v for v in values)
        is_list = resolved.value_type == "string_list"
        if resolved.source is Source.ATTRIBUTE:
            table = pt.profile_attributes
            column = VALUE_COLUMNS[resolved.value_type]
            where = [table.c.name == resolved.name, compare(column, node.op, values, is_list)]
        elif resolved.source is Source.TRAIT:
            table = pt.computed_traits
            column = TRAITS[resolved.name][1]
            where = [compare(column, node.op, values)]
        else:
            table = pt.scores
            where = [table.c.model_name == resolved.name,
                     compare(table.c.score, node.op, values)]
        return self._leaf(table.c.user_id, where, unique=True, rank=RANK_KEYED)

    def _TagCondition(self, node: TagCondition) -> Members:
        tags = pt.profile_tags
        expires = tags.c.expires_ms
        where = [tags.c.tag == node.tag,
                 or_(expires.is_(None), expires > self.before_now(expires))]
        return self._leaf(tags.c.user_id, where, unique=True, rank=RANK_KEYED,
                          positive=node.present)

    def _EventAggregateCondition(self, node: EventAggregateCondition) -> Members:
        ev = pt.events
        where = [*self.event_filters(ev, node.event), *self.window(ev.c.ts_ms, node.window)]
        values = [float(v) for v in node.values]
        index_only = not node.event.filters
        wide = window_ms(node.window) is None or window_ms(node.window) > WIDE_WINDOW_MS
        if node.aggregate is Aggregate.COUNT:
            # Existence tests need no grouping: "count >= 1" is "has such an event" and
            # "count == 0" is "has no such event".
            zero, one = satisfied_by(node.op, values, 0), satisfied_by(node.op, values, 1)
            if (node.op in (Op.GT, Op.GE) and one and not zero) or (
                node.op is Op.NE and values[0] == 0
            ):
                return self._leaf(ev.c.user_id, where, unique=False, rank=RANK_EVENTS,
                                  index_only=index_only, wide=wide)
            if node.op in (Op.EQ, Op.LT, Op.LE) and zero and not one:
                return self._leaf(ev.c.user_id, where, unique=False, rank=RANK_EVENTS,
                                  positive=False, index_only=index_only, wide=wide)
            aggregate = func.count()
        elif node.aggregate is Aggregate.ACTIVE_DAYS:
            aggregate = func.count(distinct(ev.c.ts_ms - ev.c.ts_ms % DAY_MS))
        elif node.aggregate is Aggregate.SUM:
            aggregate = func.coalesce(func.sum(self.measure(ev, node.measure)), 0.0)
        else:
            measure = self.measure(ev, node.measure)
            where.append(measure.is_not(None))
            aggregate = {Aggregate.AVG: func.avg, Aggregate.MIN: func.min,
                         Aggregate.MAX: func.max}[node.aggregate](measure)
        test = compare(aggregate, node.op, values)
        grouped = (select(ev.c.user_id.label("user_id"))
                   .where(*where, *self._users(ev.c.user_id)).group_by(ev.c.user_id)
                   .correlate(None))
        # Users without a matching event have count 0 (sum 0); when 0 satisfies the test they
        # belong unless their events make the test fail, hence the complement form.
        empty_matches = node.aggregate in (Aggregate.COUNT, Aggregate.ACTIVE_DAYS,
                                           Aggregate.SUM) and satisfied_by(node.op, values, 0)
        if empty_matches:
            return Members(grouped.having(not_(test)), positive=False, unique=True,
                           rank=RANK_GROUPED)
        return Members(grouped.having(test), unique=True, rank=RANK_GROUPED)

    def _SequenceCondition(self, node: SequenceCondition) -> Members:
        first = pt.events.alias("seq_first")
        second = pt.events.alias("seq_second")
        follow = [
            second.c.user_id == first.c.user_id,
            *self.event_filters(second, node.second),
            second.c.ts_ms > first.c.ts_ms,
        ]
        where = [*self.event_filters(first, node.first), *self.window(first.c.ts_ms, node.window)]
        if node.within is not None:
            follow.append(second.c.ts_ms <= first.c.ts_ms + node.within.ms)
        follow.append(second.c.ts_ms <= self.before_now(second.c.ts_ms))
        followed = exists(select(literal(1)).select_from(second).where(*follow))
        if node.then_absent:
            if node.within is not None:
                # Only a first event whose deadline has passed can show the absence.
                where.append(first.c.ts_ms <= self.before_now(first.c.ts_ms, node.within.ms))
            where.append(not_(followed))
        else:
            where.append(followed)
        return self._leaf(first.c.user_id, where, unique=False, rank=RANK_GROUPED,
                          select_from=first)

    def _RfmCondition(self, node: RfmCondition) -> Members:
        traits = pt.computed_traits
        groups = traits.c.rfm_group.in_(bound_list(traits.c.rfm_group, node.groups))
        return self._leaf(traits.c.user_id, [groups], unique=True, rank=RANK_KEYED)

    def _LifecycleCondition(self, node: LifecycleCondition) -> Members:
        traits = pt.computed_traits
        stages = traits.c.lifecycle_stage.in_(bound_list(traits.c.lifecycle_stage, node.stages))
        return self._leaf(traits.c.user_id, [stages], unique=True, rank=RANK_KEYED)

    def _ConsentCondition(self, node: ConsentCondition) -> Members:
        consents = pt.consents
        return self._leaf(consents.c.user_id,
                          [consents.c.channel == node.channel, consents.c.subscribed == true()],
                          unique=True, rank=RANK_KEYED)

    def _SegmentCondition(self, node: SegmentCondition) -> Members:
        if self.resolve_segment is None:
            raise CompileError("segment references cannot be resolved here")
        if node.segment_id in self._inlining:
            raise CompileError(f"cycle through segments/{node.segment_id}")
        rule = self.resolve_segment(node.segment_id)
        if rule is None:
            raise CompileError(f"segments/{node.segment_id} does not exist")
        self._inlining.append(node.segment_id)
        try:
            return self.members(rule)
        finally:
            self._inlining.pop()


def compile_rule(rule: Condition, catalog: Catalog, now_ms: int,
                 resolve_segment: Callable[[int], Condition | None] | None = None,
                 restrict_ids: Sequence[int] | None = None, dialect: str | None = None):
    """The statement selecting the ids of the users who match ``rule`` at ``now_ms``."""
    return Compiler(catalog, now_ms, resolve_segment, restrict_ids, dialect).statement(rule)


__all__ = ["RESTRICT_IDS", "CompileError", "Compiler", "IdList", "Members", "compare",
           "compile_rule", "in_id_list"]
