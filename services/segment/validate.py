"""Checks a rule tree against the catalogue: fields, types, windows, depth and cycles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from services.common.errors import InvalidArgument
from services.segment.catalog import CHANNELS, Catalog
from services.segment.rules import (
    AGGREGATE_OPS,
    MEASURED,
    ORDER_OPS,
    AbsoluteWindow,
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
    TagCondition,
    Window,
    child_path,
    referenced_segments,
)

# How deep a tree may nest (the root is depth 1); deeper trees are refused.
MAX_DEPTH = 12
# How many nodes a tree may have in all.
MAX_NODES = 500
# Longest window or sequence span accepted: ten years.
MAX_WINDOW_MS = 10 * 366 * 86_400_000

# For each value type, the operators an attribute of that type accepts.
TYPE_OPS = {
    "number": {Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.IN, Op.NOT_IN, Op.BETWEEN, Op.EXISTS},
    "timestamp": {Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN, Op.EXISTS},
    "string": {Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.IN, Op.NOT_IN, Op.BETWEEN,
               Op.CONTAINS, Op.EXISTS},
    "bool": {Op.EQ, Op.NE, Op.EXISTS},
    "string_list": {Op.CONTAINS, Op.EXISTS},
}

SegmentResolver = Callable[[int], "Condition | None"]


def literal_type(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def parse_instant(value: str) -> int | None:
    """Epoch ms of an ISO 8601 instant (UTC when no offset is given), None if malformed."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(round(moment.timestamp() * 1000))


def expected_count(op: Op) -> tuple[int, int | None]:
    """(minimum, maximum) number of values an operator takes."""
    if op is Op.EXISTS:
        return 0, 0
    if op is Op.BETWEEN:
        return 2, 2
    if op in (Op.IN, Op.NOT_IN):
        return 1, None
    return 1, 1


class Validator:
    def __init__(self, catalog: Catalog, resolve_segment: SegmentResolver | None = None,
                 segment_id: int | None = None, max_depth: int = MAX_DEPTH):
        self.catalog = catalog
        self.resolve_segment = resolve_segment
        self.segment_id = segment_id
        self.max_depth = max_depth
        self.violations: list[tuple[str, str]] = []
        self.nodes = 0

    def add(self, path: str, message: str) -> None:
        self.violations.append((path, message))

    def check(self, node: Condition, path: str = "rule", depth: int = 1) -> None:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.add(path, f"the rule has more than {MAX_NODES} conditions")
        if depth > self.max_depth:
            self.add(path, f"nesting deeper than {self.max_depth} levels")
            return
        if isinstance(node, (And, Or)):
            if len(node.conditions) < 2:
                self.add(child_path(path, node, 0).rsplit("[", 1)[0],
                         "a group needs at least two conditions")
            for i, child in enumerate(node.conditions):
                self.check(child, child_path(path, node, i), depth + 1)
        elif isinstance(node, Not):
            self.check(node.condition, child_path(path, node), depth + 1)
        elif isinstance(node, AttributeCondition):
            self.attribute(node, f"{path}.attribute")
        elif isinstance(node, TagCondition):
            if not node.tag:
                self.add(f"{path}.tag.tag", "the tag is empty")
        elif isinstance(node, EventAggregateCondition):
            self.aggregate(node, f"{path}.event_aggregate")
        elif isinstance(node, SequenceCondition):
            self.sequence(node, f"{path}.sequence")
        elif isinstance(node, RfmCondition):
            self.names(node.groups, f"{path}.rfm.groups", "RFM group")
        elif isinstance(node, LifecycleCondition):
            self.names(node.stages, f"{path}.lifecycle.stages", "lifecycle stage")
        elif isinstance(node, ConsentCondition):
            if node.channel not in CHANNELS:
                self.add(f"{path}.consent.channel",
                         f"unknown channel {node.channel!r}; known: {', '.join(CHANNELS)}")
        elif isinstance(node, SegmentCondition):
            self.segment(node, f"{path}.segment.segment")
        else:
            self.add(path, "empty condition")

    def names(self, values, path: str, what: str) -> None:
        if not values:
            self.add(path, f"name at least one {what}")
        for i, value in enumerate(values):
            if not value:
                self.add(f"{path}[{i}]", f"the {what} is empty")

    def values(self, op: Op, values, path: str, value_type: str) -> None:
        low, high = expected_count(op)
        if len(values) < low or (high is not None and len(values) > high):
            wanted = f"{low}" if low == high else f"at least {low}"
            self.add(path, f"operator {op.value!r} takes {wanted} value(s), got {len(values)}")
            return
        for i, value in enumerate(values):
            got = literal_type(value)
            item = f"{path}[{i}]"
            if value_type == "timestamp":
                if got == "string" and parse_instant(value) is None:
                    self.add(item, f"{value!r} is not an ISO 8601 instant")
                elif got == "bool":
                    self.add(item, "compares a timestamp with a boolean")
            elif value_type == "string_list":
                if got != "string":
                    self.add(item, f"compares a list of strings with a {got}")
            elif value_type != got:
                self.add(item, f"compares a {value_type} with a {got} ({value!r})")
        if op is Op.BETWEEN and not self.violations_at(path) and values[0] > values[1]:
            self.add(path, "the lower bound of 'between' is above the upper bound")

    def violations_at(self, prefix: str) -> bool:
        return any(p.startswith(prefix) for p, _ in self.violations)

    def attribute(self, node: AttributeCondition, path: str) -> None:
        resolved = self.catalog.resolve(node.field)
        if not node.field.name:
            self.add(f"{path}.field", "the field name is empty")
            return
        if resolved is None:
            self.add(f"{path}.field", f"unknown field {node.field.name!r} (not an attribute of "
                     "the catalogue, a computed trait or a known model score)")
            return
        if node.op not in TYPE_OPS[resolved.value_type]:
            self.add(f"{path}.op", f"operator {node.op.value!r} does not apply to "
                     f"{resolved.value_type} field {node.field.name!r}")
            return
        self.values(node.op, node.values, f"{path}.values", resolved.value_type)

    def window(self, window: Window, path: str) -> None:
        if isinstance(window, Duration):
            self.duration(window, path)
        elif isinstance(window, AbsoluteWindow):
            if window.end_ms <= window.start_ms:
                self.add(path, "the window ends before it starts (zero or negative length)")

    def duration(self, duration: Duration, path: str) -> None:
        if duration.amount <= 0:
            self.add(path, f"the length must be positive, got {duration.amount}{duration.unit}")
        elif duration.ms > MAX_WINDOW_MS:
            self.add(path, "the length exceeds ten years")

    def event_spec(self, spec: EventSpec, path: str) -> None:
        if spec.event_type is not None and not spec.event_type:
            self.add(f"{path}.event_type", "the event type is empty")
        for i, item in enumerate(spec.filters):
            self.property_filter(item, f"{path}.filters[{i}]")

    def property_filter(self, item: PropertyFilter, path: str) -> None:
        if not item.property:
            self.add(f"{path}.property", "the property name is empty")
        low, high = expected_count(item.op)
        if len(item.values) < low or (high is not None and len(item.values) > high):
            self.add(f"{path}.values", f"operator {item.op.value!r} takes "
                     f"{'no' if high == 0 else low} value(s), got {len(item.values)}")
            return
        kinds = {literal_type(v) for v in item.values}
        if len(kinds) > 1:
            self.add(f"{path}.values", "mixes values of different types")
        elif item.op is Op.CONTAINS and kinds != {"string"}:
            self.add(f"{path}.values", "'contains' needs a string")
        elif item.op in ORDER_OPS and kinds == {"bool"}:
            self.add(f"{path}.values", f"operator {item.op.value!r} does not apply to booleans")

    def aggregate(self, node: EventAggregateCondition, path: str) -> None:
        self.event_spec(node.event, f"{path}.event")
        if node.aggregate in MEASURED and not node.measure:
            self.add(f"{path}.measure", f"{node.aggregate.value} needs a measure "
                     "(value or a numeric property)")
        if node.aggregate not in MEASURED and node.measure:
            self.add(f"{path}.measure", f"{node.aggregate.value} takes no measure")
        self.window(node.window, f"{path}.window")
        if node.op not in AGGREGATE_OPS:
            self.add(f"{path}.op", f"an aggregate cannot be compared with {node.op.value!r}")
            return
        self.values(node.op, node.values, f"{path}.values", "number")

    def sequence(self, node: SequenceCondition, path: str) -> None:
        self.event_spec(node.first, f"{path}.first")
        self.event_spec(node.second, f"{path}.second")
        if node.within is not None:
            self.duration(node.within, f"{path}.within")
        self.window(node.window, f"{path}.window")

    def segment(self, node: SegmentCondition, path: str) -> None:
        if self.resolve_segment is None:
            self.add(path, "segment references are not available here")
            return
        if node.segment_id == self.segment_id:
            self.add(path, f"segments/{node.segment_id} refers to itself")
            return
        chain = self.find_cycle(node.segment_id)
        if chain is False:
            self.add(path, f"segments/{node.segment_id} does not exist")
        elif chain:
            cycle = " -> ".join(f"segments/{i}" for i in chain)
            self.add(path, f"cycle of segment references: {cycle}")

    def find_cycle(self, start: int):
        """False if ``start`` is missing, a list of ids forming a cycle, or None if none."""
        if self.resolve_segment(start) is None:
            return False
        origin = self.segment_id
        stack: list[int] = [] if origin is None else [origin]
        seen: set[int] = set()

        def visit(segment_id: int):
            if segment_id in stack:
                return stack[stack.index(segment_id):] + [segment_id]
            if segment_id in seen:
                return None
            rule = self.resolve_segment(segment_id)
            if rule is None:
                return None
            seen.add(segment_id)
            stack.append(segment_id)
            for ref in sorted(referenced_segments(rule)):
                found = visit(ref)
                if found:
                    return found
            stack.pop()
            return None

        return visit(start)


def check_rule(rule: Condition, catalog: Catalog, resolve_segment: SegmentResolver | None = None,
               segment_id: int | None = None, field_prefix: str = "") -> None:
    """Raises InvalidArgument naming every offending path; returns None for a valid rule."""
    validator = Validator(catalog, resolve_segment, segment_id)
    validator.check(rule)
    if validator.violations:
        raise InvalidArgument(violations=[(field_prefix + p, m) for p, m in validator.violations])


def rule_violations(rule: Condition, catalog: Catalog,
                    resolve_segment: SegmentResolver | None = None,
                    segment_id: int | None = None) -> list[tuple[str, str]]:
    validator = Validator(catalog, resolve_segment, segment_id)
    validator.check(rule)
    return validator.violations
