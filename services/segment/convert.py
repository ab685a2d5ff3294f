"""Translation between the rule protos and the rule model, with errors naming the field."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from marketing.common.v1 import common_pb2
from marketing.segment.v1 import segment_service_pb2 as pb
from services.common.errors import InvalidArgument
from services.segment import rules as r

OPS = {
    pb.OPERATOR_EQ: r.Op.EQ, pb.OPERATOR_NE: r.Op.NE, pb.OPERATOR_LT: r.Op.LT,
    pb.OPERATOR_LE: r.Op.LE, pb.OPERATOR_GT: r.Op.GT, pb.OPERATOR_GE: r.Op.GE,
    pb.OPERATOR_IN: r.Op.IN, pb.OPERATOR_NOT_IN: r.Op.NOT_IN,
    pb.OPERATOR_BETWEEN: r.Op.BETWEEN, pb.OPERATOR_CONTAINS: r.Op.CONTAINS,
    pb.OPERATOR_EXISTS: r.Op.EXISTS,
}
OPS_BACK = {v: k for k, v in OPS.items()}
SOURCES = {
    pb.FIELD_SOURCE_UNSPECIFIED: r.Source.AUTO, pb.FIELD_SOURCE_ATTRIBUTE: r.Source.ATTRIBUTE,
    pb.FIELD_SOURCE_TRAIT: r.Source.TRAIT, pb.FIELD_SOURCE_SCORE: r.Source.SCORE,
}
SOURCES_BACK = {v: k for k, v in SOURCES.items()}
AGGREGATES = {
    pb.AGGREGATE_COUNT: r.Aggregate.COUNT, pb.AGGREGATE_SUM: r.Aggregate.SUM,
    pb.AGGREGATE_AVG: r.Aggregate.AVG, pb.AGGREGATE_MIN: r.Aggregate.MIN,
    pb.AGGREGATE_MAX: r.Aggregate.MAX, pb.AGGREGATE_ACTIVE_DAYS: r.Aggregate.ACTIVE_DAYS,
}
AGGREGATES_BACK = {v: k for k, v in AGGREGATES.items()}
UNITS = {pb.TIME_UNIT_MINUTES: "m", pb.TIME_UNIT_HOURS: "h", pb.TIME_UNIT_DAYS: "d"}
UNITS_BACK = {v: k for k, v in UNITS.items()}
CHANNEL_PREFIX = "CHANNEL_"


def channel_name(value: int) -> str | None:
    if value == common_pb2.CHANNEL_UNSPECIFIED:
        return None
    try:
        return common_pb2.Channel.Name(value)[len(CHANNEL_PREFIX):].lower()
    except ValueError:
        return None


def channel_value(name: str) -> int:
    try:
        return common_pb2.Channel.Value(CHANNEL_PREFIX + name.upper())
    except ValueError:
        return common_pb2.CHANNEL_UNSPECIFIED


def ms_of(stamp: timestamp_pb2.Timestamp) -> int:
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


def stamp_of(ms: int | None) -> timestamp_pb2.Timestamp | None:
    if ms is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(int(ms))
    return stamp


def segment_id_of(name: str, field: str) -> int:
    """The id of `segments/{id}`; INVALID_ARGUMENT naming ``field`` otherwise."""
    prefix, _, rest = name.partition("/")
    if prefix != "segments" or not rest.isdigit():
        raise InvalidArgument(field, f"expected segments/{{id}}, got {name!r}")
    return int(rest)


class FromProto:
    """Builds a rule tree, collecting every malformed field before raising."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.violations: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.violations.append((self.prefix + path[len("rule"):], message))

    def convert(self, message: pb.Condition) -> r.Condition:
        node = self.condition(message, "rule")
        if self.violations:
            raise InvalidArgument(violations=self.violations)
        return node

    def condition(self, message: pb.Condition, path: str):
        kind = message.WhichOneof("kind")
        if kind is None:
            self.fail(path, "empty condition: set one kind")
            return r.TagCondition("")
        inner = getattr(message, kind)
        here = f"{path}.{kind}"
        if kind in ("all_of", "any_of"):
            items = tuple(self.condition(c, f"{here}.conditions[{i}]")
                          for i, c in enumerate(inner.conditions))
            return r.And(items) if kind == "all_of" else r.Or(items)
        if kind == "negation":
            return r.Not(self.condition(inner, here))
        if kind == "attribute":
            return r.AttributeCondition(
                r.FieldRef(inner.field.name, SOURCES.get(inner.field.source, r.Source.AUTO)),
                self.op(inner.op, f"{here}.op"), self.values(inner.values, f"{here}.values"))
        if kind == "tag":
            return r.TagCondition(inner.tag, not inner.absent)
        if kind == "event_aggregate":
            aggregate = AGGREGATES.get(inner.aggregate)
            if aggregate is None:
                self.fail(f"{here}.aggregate", "set an aggregate")
                aggregate = r.Aggregate.COUNT
            return r.EventAggregateCondition(
                aggregate, self.selector(inner.event, f"{here}.event"),
                self.op(inner.op, f"{here}.op"), tuple(float(v) for v in inner.values),
                self.window(inner, f"{here}.window"), inner.measure or None)
        if kind == "sequence":
            within = (self.duration(inner.within, f"{here}.within")
                      if inner.HasField("within") else None)
            return r.SequenceCondition(
                self.selector(inner.first, f"{here}.first"),
                self.selector(inner.second, f"{here}.second"), inner.then_absent, within,
                self.window(inner, f"{here}.window"))
        if kind == "rfm":
            return r.RfmCondition(tuple(inner.groups))
        if kind == "lifecycle":
            return r.LifecycleCondition(tuple(inner.stages))
        if kind == "consent":
            name = channel_name(inner.channel)
            if name is None:
                self.fail(f"{here}.channel", "set a channel")
                name = ""
            return r.ConsentCondition(name)
        try:
            return r.SegmentCondition(segment_id_of(inner.segment, "segment"))
        except InvalidArgument as exc:
            self.fail(f"{here}.segment", exc.violations[0][1])
            return r.SegmentCondition(0)

    def op(self, value: int, path: str) -> r.Op:
        if value not in OPS:
            self.fail(path, "set an operator")
            return r.Op.EQ
        return OPS[value]

    def values(self, values, path: str) -> tuple:
        out = []
        for i, value in enumerate(values):
            kind = value.WhichOneof("kind")
            if kind == "string_value":
                out.append(value.string_value)
            elif kind == "number_value":
                out.append(float(value.number_value))
            elif kind == "bool_value":
                out.append(value.bool_value)
            elif kind == "timestamp_value":
                out.append(float(ms_of(value.timestamp_value)))
            else:
                self.fail(f"{path}[{i}]", "values are strings, numbers, booleans or timestamps")
        return tuple(out)

    def selector(self, message: pb.EventSelector, path: str) -> r.EventSpec:
        filters = []
        for i, item in enumerate(message.filters):
            here = f"{path}.filters[{i}]"
            filters.append(r.PropertyFilter(item.property, self.op(item.op, f"{here}.op"),
                                            self.values(item.values, f"{here}.values")))
        return r.EventSpec(message.event_type or None, tuple(filters))

    def duration(self, message: pb.RelativeDuration, path: str) -> r.Duration:
        unit = UNITS.get(message.unit)
        if unit is None:
            self.fail(f"{path}.unit", "set a time unit")
            unit = "d"
        return r.Duration(int(message.amount), unit)

    def window(self, owner, path: str) -> r.Window:
        if not owner.HasField("window"):
            return None
        window = owner.window
        kind = window.WhichOneof("kind")
        if kind == "last":
            return self.duration(window.last, path)
        if kind == "range":
            return r.AbsoluteWindow(ms_of(window.range.start_time), ms_of(window.range.end_time))
        return None


def rule_from_proto(message: pb.Condition, prefix: str = "rule") -> r.Condition:
    return FromProto(prefix).convert(message)


def value_to_proto(value) -> common_pb2.Value:
    if isinstance(value, bool):
        return common_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return common_pb2.Value(number_value=float(value))
    return common_pb2.Value(string_value=value)


def selector_to_proto(spec: r.EventSpec) -> pb.EventSelector:
    return pb.EventSelector(event_type=spec.event_type or "", filters=[
        pb.PropertyFilter(property=f.property, op=OPS_BACK[f.op],
                          values=[value_to_proto(v) for v in f.values]) for f in spec.filters])


def duration_to_proto(duration: r.Duration) -> pb.RelativeDuration:
    return pb.RelativeDuration(amount=duration.amount, unit=UNITS_BACK[duration.unit])


def window_to_proto(window: r.Window) -> pb.TimeWindow | None:
    if isinstance(window, r.Duration):
        return pb.TimeWindow(last=duration_to_proto(window))
    if isinstance(window, r.AbsoluteWindow):
        return pb.TimeWindow(range=pb.AbsoluteRange(start_time=stamp_of(window.start_ms),
                                                    end_time=stamp_of(window.end_ms)))
    return None


def rule_to_proto(node: r.Condition) -> pb.Condition:
    if isinstance(node, r.And):
        return pb.Condition(all_of=pb.ConditionGroup(
            conditions=[rule_to_proto(c) for c in node.conditions]))
    if isinstance(node, r.Or):
        return pb.Condition(any_of=pb.ConditionGroup(
            conditions=[rule_to_proto(c) for c in node.conditions]))
    if isinstance(node, r.Not):
        return pb.Condition(negation=rule_to_proto(node.condition))
    if isinstance(node, r.AttributeCondition):
        return pb.Condition(attribute=pb.AttributeCondition(
            field=pb.FieldRef(name=node.field.name, source=SOURCES_BACK[node.field.source]),
            op=OPS_BACK[node.op], values=[value_to_proto(v) for v in node.values]))
    if isinstance(node, r.TagCondition):
        return pb.Condition(tag=pb.TagCondition(tag=node.tag, absent=not node.present))
    if isinstance(node, r.EventAggregateCondition):
        return pb.Condition(event_aggregate=pb.EventAggregateCondition(
            aggregate=AGGREGATES_BACK[node.aggregate], event=selector_to_proto(node.event),
            measure=node.measure or "", window=window_to_proto(node.window),
            op=OPS_BACK[node.op], values=list(node.values)))
    if isinstance(node, r.SequenceCondition):
        return pb.Condition(sequence=pb.SequenceCondition(
            first=selector_to_proto(node.first), second=selector_to_proto(node.second),
            then_absent=node.then_absent,
            within=duration_to_proto(node.within) if node.within else None,
            window=window_to_proto(node.window)))
    if isinstance(node, r.RfmCondition):
        return pb.Condition(rfm=pb.RfmCondition(groups=list(node.groups)))
    if isinstance(node, r.LifecycleCondition):
        return pb.Condition(lifecycle=pb.LifecycleCondition(stages=list(node.stages)))
    if isinstance(node, r.ConsentCondition):
        return pb.Condition(consent=pb.ConsentCondition(channel=channel_value(node.channel)))
    if isinstance(node, r.SegmentCondition):
        return pb.Condition(segment=pb.SegmentCondition(segment=f"segments/{node.segment_id}"))
    raise TypeError(f"not a condition: {node!r}")
