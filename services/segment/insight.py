"""Portrait insight: how a segment differs from the population, computed with SQL GROUP BY."""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections.abc import Callable
from typing import ClassVar

from sqlalchemy import Integer, bindparam, case, func, literal, or_, select

from services.common import profile_tables as pt
from services.common.errors import InvalidArgument
from services.segment.catalog import TRAITS, Catalog
from services.segment.compiler import VALUE_COLUMNS, Compiler
from services.segment.prepared import PreparedRules, Shape
from services.segment.rules import Condition, FieldRef, Source

# Equal-width buckets of a numeric dimension when the request names no bounds.
DEFAULT_BUCKETS = 10
MAX_BUCKET_BOUNDS = 50
MAX_DIMENSIONS = 20
# The parameter holding how many values a grouped dimension keeps.
TOP = "top"


@dataclasses.dataclass(frozen=True)
class Bucket:
    """One value (or range) of a dimension: counts, shares and the target group index."""

    value: str
    segment_count: int
    population_count: int
    segment_share: float
    population_share: float
    tgi: float


@dataclasses.dataclass(frozen=True)
class Distribution:
    dimension: str
    buckets: list[Bucket]


@dataclasses.dataclass(frozen=True)
class Insight:
    segment_size: int
    population_size: int
    distributions: list[Distribution]


def _buckets(rows, segment_size: int, population_size: int) -> list[Bucket]:
    out = []
    for value, population_count, segment_count in rows:
        segment_count = int(segment_count or 0)
        population_count = int(population_count or 0)
        seg_share = segment_count / segment_size if segment_size else 0.0
        pop_share = population_count / population_size if population_size else 0.0
        out.append(Bucket(
            value=_label(value), segment_count=segment_count, population_count=population_count,
            segment_share=seg_share, population_share=pop_share,
            tgi=(seg_share / pop_share * 100.0) if pop_share else 0.0))
    return out


def _label(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


@dataclasses.dataclass(frozen=True)
class Dimension:
    """Where a dimension's values are: ``source`` is "attribute", "trait", "score", "tags"
    or "mix" (a trait's categories), ``name`` the attribute, trait, model or column."""

    source: str
    name: str = ""
    value_type: str = "string"

    def parts(self, compiler: Compiler) -> tuple:
        """(value column, user id column, the filters selecting the dimension's rows)."""
        if self.source == "score":
            scores = pt.scores
            return scores.c.score, scores.c.user_id, [scores.c.model_name == self.name]
        if self.source == "trait":
            return TRAITS[self.name][1], pt.computed_traits.c.user_id, []
        if self.source == "mix":
            traits = pt.computed_traits
            return traits.c[self.name], traits.c.user_id, []
        if self.source == "tags":
            tags = pt.profile_tags
            expires = tags.c.expires_ms
            alive = or_(expires.is_(None), expires > compiler.before_now(expires))
            return tags.c.tag, tags.c.user_id, [alive]
        attrs = pt.profile_attributes
        return VALUE_COLUMNS[self.value_type], attrs.c.user_id, [attrs.c.name == self.name]


def _in_segment(compiler: Compiler, rule: Condition, user_id):
    """How many of a group's rows belong to the segment: membership is the rule's statement
    as a subquery."""
    return func.sum(case((user_id.in_(compiler.statement(rule)), 1), else_=0))


@dataclasses.dataclass(frozen=True)
class Population(Shape):
    """How many profiles there are."""

    uses_rule: ClassVar[bool] = False

    def build(self, compiler: Compiler, rule: Condition | None):
        return select(func.count()).select_from(pt.profiles)


@dataclasses.dataclass(frozen=True)
class Extent(Shape):
    """The lowest and highest value of a numeric dimension."""

    dimension: Dimension
    uses_rule: ClassVar[bool] = False

    def build(self, compiler: Compiler, rule: Condition | None):
        column, _, where = self.dimension.parts(compiler)
        return select(func.min(column), func.max(column)).where(*where)


@dataclasses.dataclass(frozen=True)
class Grouped(Shape):
    """(value, population count, segment count) per value, most in the segment first; with
    ``top``, the first ``top`` values (parameter ``top``)."""

    dimension: Dimension
    top: bool

    def build(self, compiler: Compiler, rule: Condition | None):
        value, user_id, where = self.dimension.parts(compiler)
        if self.dimension.source != "tags":
            where = [*where, value.is_not(None)]
        in_segment = _in_segment(compiler, rule, user_id)
        query = (select(value, func.count(), in_segment).where(*where).group_by(value)
                 .order_by(in_segment.desc(), func.count().desc(), value))
        if self.top:
            query = query.limit(bindparam(TOP, None, type_=Integer))
        return query


@dataclasses.dataclass(frozen=True)
class Ranged(Shape):
    """(bucket index, population count, segment count) per bucket of a numeric dimension cut
    at ``bounds`` ascending bounds (parameters ``bound_0``, ``bound_1``...)."""

    dimension: Dimension
    bounds: int

    def build(self, compiler: Compiler, rule: Condition | None):
        column, user_id, where = self.dimension.parts(compiler)
        # The type SQLAlchemy gives a float compared with the column.
        bound_type = column.type.coerce_compared_value(operator.lt, 0.0)
        bounds = [bindparam(bound_name(i), None, type_=bound_type) for i in range(self.bounds)]
        index = case(*[(column < b, literal(i)) for i, b in enumerate(bounds)],
                     else_=literal(len(bounds)))
        in_segment = _in_segment(compiler, rule, user_id)
        return (select(index, func.count(), in_segment).where(*where, column.is_not(None))
                .group_by(index).order_by(index))


def bound_name(index: int) -> str:
    return f"bound_{index}"


class InsightBuilder:
    """Runs one GROUP BY per dimension; membership is the compiled rule as a subquery.

    Every statement is kept by ``PreparedRules`` (per rule, referenced rules and catalogue),
    with the instant, the bucket bounds and the number of top values bound per call.
    """

    def __init__(self, prepared: PreparedRules, connection, rule: Condition, catalog: Catalog,
                 now_ms: int, resolve: Callable[[int], Condition | None] | None = None):
        self.prepared = prepared
        self.connection = connection
        self.rule = rule
        self.catalog = catalog
        self.now_ms = now_ms
        self.resolve = resolve
        self.segment_size = prepared.count(connection, rule, catalog, now_ms, resolve)
        self.population_size = int(self._rows(Population())[0][0])

    def _rows(self, shape: Shape, arguments: dict | None = None) -> list:
        return self.prepared.rows(self.connection, shape, self.rule, self.catalog, self.now_ms,
                                  self.resolve, arguments)

    def _grouped(self, dimension: Dimension, top: int | None) -> list[Bucket]:
        rows = self._rows(Grouped(dimension, bool(top)), {TOP: top} if top else None)
        return _buckets(rows, self.segment_size, self.population_size)

    def _ranged(self, dimension: Dimension, bounds: list[float] | None) -> list[Bucket]:
        if not bounds:
            low, high = self._rows(Extent(dimension))[0]
            if low is None:
                return []
            low, high = float(low), float(high)
            width = (high - low) / DEFAULT_BUCKETS or 1.0
            bounds = [low + width * i for i in range(1, DEFAULT_BUCKETS)]
        bounds = sorted(float(b) for b in bounds)
        labels = [f"< {_label(bounds[0])}"]
        labels += [f"[{_label(a)}, {_label(b)})" for a, b in itertools.pairwise(bounds)]
        labels.append(f">= {_label(bounds[-1])}")
        rows = self._rows(Ranged(dimension, len(bounds)),
                          {bound_name(i): b for i, b in enumerate(bounds)})
        return _buckets([(labels[int(i)], p, s) for i, p, s in rows], self.segment_size,
                        self.population_size)

    def field(self, name: str, bounds: list[float] | None, top: int, path: str) -> Distribution:
        resolved = self.catalog.resolve(FieldRef(name))
        if resolved is None or resolved.source is Source.SCORE:
            if resolved is None:
                raise InvalidArgument(path, f"unknown attribute or trait {name!r}")
            return Distribution(f"score:{name}", self._ranged(Dimension("score", name), bounds))
        numeric = resolved.value_type in ("number", "timestamp")
        if resolved.source is Source.TRAIT:
            dimension = Dimension("trait", name, resolved.value_type)
            return Distribution(f"trait:{name}", self._ranged(dimension, bounds) if numeric
                                else self._grouped(dimension, top))
        dimension = Dimension("attribute", name, resolved.value_type)
        if numeric:
            return Distribution(f"attribute:{name}", self._ranged(dimension, bounds))
        if resolved.value_type == "string_list":
            raise InvalidArgument(path, f"{name!r} is a list; its distribution is not supported")
        return Distribution(f"attribute:{name}", self._grouped(dimension, top))

    def tags(self, top: int) -> Distribution:
        return Distribution("tags", self._grouped(Dimension("tags"), top))

    def trait_mix(self, column_name: str) -> Distribution:
        return Distribution(column_name, self._grouped(Dimension("mix", column_name), None))


def build_insight(prepared: PreparedRules, connection, rule: Condition, catalog: Catalog,
                  now_ms: int, fields: list[str], bounds: dict[str, list[float]] | None = None,
                  top_tags: int = 10, rfm: bool = True, lifecycle: bool = True,
                  resolve: Callable[[int], Condition | None] | None = None) -> Insight:
    """Distributions of ``fields``, the top tags and the RFM and lifecycle mixes of the users
    matching ``rule`` at ``now_ms``, against everyone."""
    if len(fields) > MAX_DIMENSIONS:
        raise InvalidArgument("fields", f"at most {MAX_DIMENSIONS} fields")
    for name, values in (bounds or {}).items():
        if len(values) > MAX_BUCKET_BOUNDS:
            raise InvalidArgument(f"bucket_bounds[{name}]", f"at most {MAX_BUCKET_BOUNDS} bounds")
    builder = InsightBuilder(prepared, connection, rule, catalog, now_ms, resolve)
    out = [builder.field(name, (bounds or {}).get(name), max(1, top_tags), f"fields[{i}]")
           for i, name in enumerate(fields)]
    if top_tags > 0:
        out.append(builder.tags(top_tags))
    if rfm:
        out.append(builder.trait_mix("rfm_group"))
    if lifecycle:
        out.append(builder.trait_mix("lifecycle_stage"))
    return Insight(builder.segment_size, builder.population_size, out)
