"""Portrait insight: how a segment differs from the population, computed with SQL GROUP BY."""

from __future__ import annotations

import dataclasses

from sqlalchemy import and_, case, func, literal, or_, select

from services.common import profile_tables as pt
from services.common.errors import InvalidArgument
from services.segment.catalog import TRAITS
from services.segment.compiler import VALUE_COLUMNS, Compiler
from services.segment.rules import Condition, FieldRef, Source

# Equal-width buckets of a numeric dimension when the request names no bounds.
DEFAULT_BUCKETS = 10
MAX_BUCKET_BOUNDS = 50
MAX_DIMENSIONS = 20


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


class InsightBuilder:
    """Runs one GROUP BY per dimension; membership is the compiled rule as a subquery."""

    def __init__(self, compiler: Compiler, connection, rule: Condition):
        self.compiler = compiler
        self.connection = connection
        self.members = compiler.statement(rule)
        self.segment_size = int(connection.execute(
            select(func.count()).select_from(self.members.subquery())).scalar_one())
        self.population_size = int(connection.execute(
            select(func.count()).select_from(pt.profiles)).scalar_one())

    def _in_segment(self, user_id):
        return func.sum(case((user_id.in_(self.members), 1), else_=0))

    def _grouped(self, value, user_id, where, top: int | None) -> list[Bucket]:
        in_segment = self._in_segment(user_id)
        query = (select(value, func.count(), in_segment).where(*where).group_by(value)
                 .order_by(in_segment.desc(), func.count().desc(), value))
        if top:
            query = query.limit(top)
        rows = self.connection.execute(query).all()
        return _buckets(rows, self.segment_size, self.population_size)

    def _ranged(self, column, user_id, where, bounds: list[float] | None) -> list[Bucket]:
        if not bounds:
            low, high = self.connection.execute(
                select(func.min(column), func.max(column)).where(*where)).one()
            if low is None:
                return []
            low, high = float(low), float(high)
            width = (high - low) / DEFAULT_BUCKETS or 1.0
            bounds = [low + width * i for i in range(1, DEFAULT_BUCKETS)]
        bounds = sorted(float(b) for b in bounds)
        labels = [f"< {_label(bounds[0])}"]
        labels += [f"[{_label(a)}, {_label(b)})" for a, b in zip(bounds, bounds[1:])]
        labels.append(f">= {_label(bounds[-1])}")
        index = case(*[(column < b, literal(i)) for i, b in enumerate(bounds)],
                     else_=literal(len(bounds)))
        in_segment = self._in_segment(user_id)
        rows = self.connection.execute(
            select(index, func.count(), in_segment).where(*where, column.is_not(None))
            .group_by(index).order_by(index)).all()
        return _buckets([(labels[int(i)], p, s) for i, p, s in rows], self.segment_size,
                        self.population_size)

    def field(self, name: str, bounds: list[float] | None, top: int, path: str) -> Distribution:
        resolved = self.compiler.catalog.resolve(FieldRef(name))
        if resolved is None or resolved.source is Source.SCORE:
            if resolved is None:
                raise InvalidArgument(path, f"unknown attribute or trait {name!r}")
            scores = pt.scores
            where = [scores.c.model_name == name]
            return Distribution(f"score:{name}", self._ranged(
                scores.c.score, scores.c.user_id, where, bounds))
        if resolved.source is Source.TRAIT:
            traits = pt.computed_traits
            column = TRAITS[name][1]
            if resolved.value_type in ("number", "timestamp"):
                return Distribution(f"trait:{name}", self._ranged(
                    column, traits.c.user_id, [], bounds))
            return Distribution(f"trait:{name}", self._grouped(
                column, traits.c.user_id, [column.is_not(None)], top))
        attrs = pt.profile_attributes
        column = VALUE_COLUMNS[resolved.value_type]
        where = [attrs.c.name == name]
        if resolved.value_type in ("number", "timestamp"):
            return Distribution(f"attribute:{name}", self._ranged(
                column, attrs.c.user_id, where, bounds))
        if resolved.value_type == "string_list":
            raise InvalidArgument(path, f"{name!r} is a list; its distribution is not supported")
        return Distribution(f"attribute:{name}", self._grouped(
            column, attrs.c.user_id, [*where, column.is_not(None)], top))

    def tags(self, top: int) -> Distribution:
        tags = pt.profile_tags
        alive = or_(tags.c.expires_ms.is_(None), tags.c.expires_ms > self.compiler.now_ms)
        return Distribution("tags", self._grouped(tags.c.tag, tags.c.user_id, [alive], top))

    def trait_mix(self, column_name: str) -> Distribution:
        traits = pt.computed_traits
        column = traits.c[column_name]
        return Distribution(column_name, self._grouped(
            column, traits.c.user_id, [and_(column.is_not(None))], None))


def build_insight(compiler: Compiler, connection, rule: Condition, fields: list[str],
                  bounds: dict[str, list[float]] | None = None, top_tags: int = 10,
                  rfm: bool = True, lifecycle: bool = True) -> Insight:
    """Distributions of ``fields``, the top tags and the RFM and lifecycle mixes."""
    if len(fields) > MAX_DIMENSIONS:
        raise InvalidArgument("fields", f"at most {MAX_DIMENSIONS} fields")
    for name, values in (bounds or {}).items():
        if len(values) > MAX_BUCKET_BOUNDS:
            raise InvalidArgument(f"bucket_bounds[{name}]", f"at most {MAX_BUCKET_BOUNDS} bounds")
    builder = InsightBuilder(compiler, connection, rule)
    out = [builder.field(name, (bounds or {}).get(name), max(1, top_tags), f"fields[{i}]")
           for i, name in enumerate(fields)]
    if top_tags > 0:
        out.append(builder.tags(top_tags))
    if rfm:
        out.append(builder.trait_mix("rfm_group"))
    if lifecycle:
        out.append(builder.trait_mix("lifecycle_stage"))
    return Insight(builder.segment_size, builder.population_size, out)
