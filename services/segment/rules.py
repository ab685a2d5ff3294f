"""The audience rule model: an immutable condition tree of AND / OR / NOT over typed leaves."""

from __future__ import annotations

import dataclasses
import enum
from typing import Union

# A literal in a rule: strings, numbers (always floats) and booleans.
Literal = Union[str, float, bool]


class Op(str, enum.Enum):
    """Comparison operators of attribute leaves, property filters and aggregates."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    NOT_IN = "not in"
    BETWEEN = "between"
    CONTAINS = "contains"
    EXISTS = "exists"


# Operators that take exactly one value, and the number of values of the others.
SCALAR_OPS = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.CONTAINS})
ORDER_OPS = frozenset({Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN})
AGGREGATE_OPS = frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN})


class Source(str, enum.Enum):
    """Where a field is looked up; AUTO tries attributes, then traits, then model scores."""

    AUTO = "auto"
    ATTRIBUTE = "attr"
    TRAIT = "trait"
    SCORE = "score"


class Aggregate(str, enum.Enum):
    """What an event aggregate computes over the matching events of each user."""

    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    ACTIVE_DAYS = "active_days"


# Aggregates that need a measure (the event's ``value`` or a numeric property).
MEASURED = frozenset({Aggregate.SUM, Aggregate.AVG, Aggregate.MIN, Aggregate.MAX})

UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}

# The measure name that denotes the events table's ``value`` column instead of a property.
VALUE_MEASURE = "value"


@dataclasses.dataclass(frozen=True)
class Duration:
    """A length of time: ``amount`` minutes (m), hours (h) or days (d)."""

    amount: int
    unit: str

    @property
    def ms(self) -> int:
        return self.amount * UNIT_MS[self.unit]


@dataclasses.dataclass(frozen=True)
class AbsoluteWindow:
    """The instants from ``start_ms`` (inclusive) to ``end_ms`` (exclusive)."""

    start_ms: int
    end_ms: int


# A window is the last Duration before "now", an absolute range, or None for all time.
Window = Union[Duration, AbsoluteWindow, None]


@dataclasses.dataclass(frozen=True)
class FieldRef:
    """A profile attribute, computed trait or model score, by name."""

    name: str
    source: Source = Source.AUTO


@dataclasses.dataclass(frozen=True)
class AttributeCondition:
    field: FieldRef
    op: Op
    values: tuple[Literal, ...] = ()


@dataclasses.dataclass(frozen=True)
class TagCondition:
    tag: str
    present: bool = True


@dataclasses.dataclass(frozen=True)
class PropertyFilter:
    """A comparison on one property of an event's JSON ``properties``."""

    property: str
    op: Op
    values: tuple[Literal, ...] = ()


@dataclasses.dataclass(frozen=True)
class EventSpec:
    """Events of one type (None: any type) whose properties pass every filter."""

    event_type: str | None
    filters: tuple[PropertyFilter, ...] = ()


@dataclasses.dataclass(frozen=True)
class EventAggregateCondition:
    aggregate: Aggregate
    event: EventSpec
    op: Op
    values: tuple[float, ...]
    window: Window = None
    measure: str | None = None


@dataclasses.dataclass(frozen=True)
class SequenceCondition:
    """``first`` happened (inside ``window``) and then ``second`` did (or did not) within
    ``within`` (None: at any later time)."""

    first: EventSpec
    second: EventSpec
    then_absent: bool
    within: Duration | None = None
    window: Window = None


@dataclasses.dataclass(frozen=True)
class RfmCondition:
    groups: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class LifecycleCondition:
    stages: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ConsentCondition:
    channel: str


@dataclasses.dataclass(frozen=True)
class SegmentCondition:
    segment_id: int


@dataclasses.dataclass(frozen=True)
class And:
    conditions: tuple[Condition, ...]


@dataclasses.dataclass(frozen=True)
class Or:
    conditions: tuple[Condition, ...]


@dataclasses.dataclass(frozen=True)
class Not:
    condition: Condition


Condition = Union[
    And, Or, Not, AttributeCondition, TagCondition, EventAggregateCondition, SequenceCondition,
    RfmCondition, LifecycleCondition, ConsentCondition, SegmentCondition,
]

# The name of each node kind in error paths; it matches the proto's oneof field names.
KIND = {
    And: "all_of",
    Or: "any_of",
    Not: "negation",
    AttributeCondition: "attribute",
    TagCondition: "tag",
    EventAggregateCondition: "event_aggregate",
    SequenceCondition: "sequence",
    RfmCondition: "rfm",
    LifecycleCondition: "lifecycle",
    ConsentCondition: "consent",
    SegmentCondition: "segment",
}


def child_path(path: str, node: Condition, index: int | None = None) -> str:
    """The path of a group's ``index``-th condition or a negation's operand."""
    kind = KIND[type(node)]
    if isinstance(node, Not):
        return f"{path}.{kind}"
    return f"{path}.{kind}.conditions[{index}]"


def children(node: Condition) -> tuple[Condition, ...]:
    if isinstance(node, (And, Or)):
        return node.conditions
    if isinstance(node, Not):
        return (node.condition,)
    return ()


def walk(node: Condition, path: str = "rule"):
    """Yields (path, node) for every node, depth first."""
    yield path, node
    if isinstance(node, Not):
        yield from walk(node.condition, child_path(path, node))
    elif isinstance(node, (And, Or)):
        for i, child in enumerate(node.conditions):
            yield from walk(child, child_path(path, node, i))


def referenced_segments(node: Condition) -> set[int]:
    return {n.segment_id for _, n in walk(node) if isinstance(n, SegmentCondition)}


def uses_events(node: Condition) -> bool:
    return any(isinstance(n, (EventAggregateCondition, SequenceCondition)) for _, n in walk(node))
