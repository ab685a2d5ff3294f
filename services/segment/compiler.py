"""Compiles a rule tree into one SQLAlchemy Core statement over the profile store."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from sqlalchemy import (
    Double,
    and_,
    bindparam,
    cast,
    distinct,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Boolean

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


def compare(column, op: Op, values: Sequence, list_column: bool = False) -> ColumnElement:
    """``column <op> values`` with every value a bound parameter."""
    if op is Op.EXISTS:
        return column.is_not(None)
    if op is Op.BETWEEN:
        return column.between(values[0], values[1])
    if op is Op.IN:
        return column.in_(list(values))
    if op is Op.NOT_IN:
        return column.not_in(list(values))
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


class Compiler:
    """Turns trees into statements selecting ``profiles.id``; one instance per evaluation.

    ``now_ms`` anchors every relative window, so the same rule gives the same audience for
    the same instant. ``restrict_ids`` limits the evaluation to some users (real-time
    re-checks): it is pushed into every subquery so engines never scan the whole store.
    """

    def __init__(self, catalog: Catalog, now_ms: int,
                 resolve_segment: Callable[[int], Condition | None] | None = None,
                 restrict_ids: Sequence[int] | None = None):
        self.catalog = catalog
        self.now_ms = int(now_ms)
        self.resolve_segment = resolve_segment
        self.restrict = (
            bindparam("restrict_ids", list(restrict_ids), expanding=True)
            if restrict_ids is not None else None
        )
        self._inlining: list[int] = []

    # Entry points.
    def statement(self, rule: Condition):
        """SELECT profiles.id FROM profiles WHERE <rule>."""
        where = self.condition(rule)
        if self.restrict is not None:
            where = and_(pt.profiles.c.id.in_(self.restrict), where)
        return select(pt.profiles.c.id).where(where)

    def count_statement(self, rule: Condition):
        return select(func.count()).select_from(self.statement(rule).subquery())

    # Helpers.
    def _users(self, column) -> list:
        return [column.in_(self.restrict)] if self.restrict is not None else []

    def _member(self, subquery, positive: bool = True) -> ColumnElement:
        column = pt.profiles.c.id
        return column.in_(subquery) if positive else column.not_in(subquery)

    def window(self, ts, window: Window) -> list:
        if isinstance(window, Duration):
            return [ts > self.now_ms - window.ms, ts <= self.now_ms]
        if isinstance(window, AbsoluteWindow):
            return [ts >= window.start_ms, ts < window.end_ms]
        return [ts <= self.now_ms]

    def property_filter(self, table, item: PropertyFilter) -> ColumnElement:
        element = table.c.properties[item.property]
        kinds = {type(v) for v in item.values}
        if item.op is Op.EXISTS:
            return element.as_string().is_not(None)
        if bool in kinds:
            column = element.as_boolean()
        elif kinds & {int, float} and item.op is not Op.CONTAINS:
            column = cast(element.as_string(), Double)
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
        return cast(table.c.properties[measure].as_string(), Double)

    # Nodes.
    def condition(self, node: Condition) -> ColumnElement:
        if isinstance(node, And):
            return and_(*(self.condition(c) for c in node.conditions))
        if isinstance(node, Or):
            return or_(*(self.condition(c) for c in node.conditions))
        if isinstance(node, Not):
            return not_(self.condition(node.condition))
        handler = getattr(self, "_" + type(node).__name__, None)
        if handler is None:
            raise CompileError(f"cannot compile {type(node).__name__}")
        return handler(node)

    def _AttributeCondition(self, node: AttributeCondition) -> ColumnElement:
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
        return self._member(select(table.c.user_id).where(*where, *self._users(table.c.user_id)))

    def _TagCondition(self, node: TagCondition) -> ColumnElement:
        tags = pt.profile_tags
        query = select(tags.c.user_id).where(
            tags.c.tag == node.tag,
            or_(tags.c.expires_ms.is_(None), tags.c.expires_ms > self.now_ms),
            *self._users(tags.c.user_id),
        )
        return self._member(query, node.present)

    def _EventAggregateCondition(self, node: EventAggregateCondition) -> ColumnElement:
        ev = pt.events
        where = [*self.event_filters(ev, node.event), *self.window(ev.c.ts_ms, node.window),
                 *self._users(ev.c.user_id)]
        base = select(ev.c.user_id).where(*where)
        values = [float(v) for v in node.values]
        if node.aggregate is Aggregate.COUNT:
            # Existence tests need no grouping: "count >= 1" is "has such an event" and
            # "count == 0" is "has no such event".
            zero, one = satisfied_by(node.op, values, 0), satisfied_by(node.op, values, 1)
            if (node.op in (Op.GT, Op.GE) and one and not zero) or (
                node.op is Op.NE and values[0] == 0
            ):
                return self._member(base)
            if node.op in (Op.EQ, Op.LT, Op.LE) and zero and not one:
                return self._member(base, positive=False)
            aggregate = func.count()
        elif node.aggregate is Aggregate.ACTIVE_DAYS:
            aggregate = func.count(distinct(ev.c.ts_ms - ev.c.ts_ms % DAY_MS))
        elif node.aggregate is Aggregate.SUM:
            aggregate = func.coalesce(func.sum(self.measure(ev, node.measure)), 0.0)
        else:
            measure = self.measure(ev, node.measure)
            where.append(measure.is_not(None))
            base = select(ev.c.user_id).where(*where)
            aggregate = {Aggregate.AVG: func.avg, Aggregate.MIN: func.min,
                         Aggregate.MAX: func.max}[node.aggregate](measure)
        test = compare(aggregate, node.op, values)
        grouped = base.group_by(ev.c.user_id)
        # Users without a matching event have count 0 (sum 0); when 0 satisfies the test they
        # belong unless their events make the test fail, hence the anti-join form.
        empty_matches = node.aggregate in (Aggregate.COUNT, Aggregate.ACTIVE_DAYS,
                                           Aggregate.SUM) and satisfied_by(node.op, values, 0)
        if empty_matches:
            return self._member(grouped.having(not_(test)), positive=False)
        return self._member(grouped.having(test))

    def _SequenceCondition(self, node: SequenceCondition) -> ColumnElement:
        first = pt.events.alias("seq_first")
        second = pt.events.alias("seq_second")
        follow = [
            second.c.user_id == first.c.user_id,
            *self.event_filters(second, node.second),
            second.c.ts_ms > first.c.ts_ms,
        ]
        where = [*self.event_filters(first, node.first), *self.window(first.c.ts_ms, node.window),
                 *self._users(first.c.user_id)]
        if node.within is not None:
            follow.append(second.c.ts_ms <= first.c.ts_ms + node.within.ms)
        follow.append(second.c.ts_ms <= self.now_ms)
        followed = exists(select(literal(1)).select_from(second).where(*follow))
        if node.then_absent:
            if node.within is not None:
                # Only a first event whose deadline has passed can show the absence.
                where.append(first.c.ts_ms <= self.now_ms - node.within.ms)
            where.append(not_(followed))
        else:
            where.append(followed)
        return self._member(select(first.c.user_id).where(*where))

    def _RfmCondition(self, node: RfmCondition) -> ColumnElement:
        traits = pt.computed_traits
        return self._member(select(traits.c.user_id).where(
            traits.c.rfm_group.in_(list(node.groups)), *self._users(traits.c.user_id)))

    def _LifecycleCondition(self, node: LifecycleCondition) -> ColumnElement:
        traits = pt.computed_traits
        return self._member(select(traits.c.user_id).where(
            traits.c.lifecycle_stage.in_(list(node.stages)), *self._users(traits.c.user_id)))

    def _ConsentCondition(self, node: ConsentCondition) -> ColumnElement:
        consents = pt.consents
        return self._member(select(consents.c.user_id).where(
            consents.c.channel == node.channel, consents.c.subscribed == true(),
            *self._users(consents.c.user_id)))

    def _SegmentCondition(self, node: SegmentCondition) -> ColumnElement:
        if self.resolve_segment is None:
            raise CompileError("segment references cannot be resolved here")
        if node.segment_id in self._inlining:
            raise CompileError(f"cycle through segments/{node.segment_id}")
        rule = self.resolve_segment(node.segment_id)
        if rule is None:
            raise CompileError(f"segments/{node.segment_id} does not exist")
        self._inlining.append(node.segment_id)
        try:
            return self.condition(rule)
        finally:
            self._inlining.pop()


def compile_rule(rule: Condition, catalog: Catalog, now_ms: int,
                 resolve_segment: Callable[[int], Condition | None] | None = None,
                 restrict_ids: Sequence[int] | None = None):
    """The statement selecting the ids of the users who match ``rule`` at ``now_ms``."""
    return Compiler(catalog, now_ms, resolve_segment, restrict_ids).statement(rule)


__all__ = ["CompileError", "Compiler", "compare", "compile_rule"]
