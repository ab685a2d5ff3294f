"""The readable text form of rules: a recursive-descent parser and a printer that round-trip."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re

from services.segment.rules import (
    MEASURED,
    SCALAR_OPS,
    AbsoluteWindow,
    Aggregate,
    And,
    AttributeCondition,
    Condition,
    ConsentCondition,
    Duration,
    EventAggregateCondition,
    EventSpec,
    FieldRef,
    LifecycleCondition,
    Literal,
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
    child_path,
)

# Words with a meaning in the grammar; a field, property or event type spelled like one is
# written in backquotes.
KEYWORDS = frozenset({
    "and", "or", "not", "in", "between", "contains", "exists", "has_tag", "lacks_tag", "where",
    "then", "within", "from", "to", "any", "seq", "rfm", "lifecycle", "consent", "in_segment",
    "true", "false", "attr", "trait", "score", *(a.value for a in Aggregate),
})

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class RuleSyntaxError(ValueError):
    """A text rule that does not parse; ``line`` and ``column`` start at 1."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"line {line}, column {column}: {message}")
        self.message, self.line, self.column = message, line, column


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str  # ident, qident, string, number, duration, op, punct, eof
    text: str
    value: object
    line: int
    column: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<duration>-?\d+[mhd](?![A-Za-z0-9_]))
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<qident>`(?:[^`\\\n]|\\.)*`)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>|=)
  | (?P<punct>[(),.])
    """,
    re.VERBOSE,
)


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        match = _TOKEN_RE.match(source, pos)
        column = pos - line_start + 1
        if match is None:
            char = source[pos]
            if char in "\"`":
                raise RuleSyntaxError("unterminated quoted text", line, column)
            raise RuleSyntaxError(f"unexpected character {char!r}", line, column)
        kind, text = match.lastgroup, match.group()
        if kind == "ws":
            newlines = text.count("\n")
            if newlines:
                line += newlines
                line_start = pos + text.rfind("\n") + 1
        else:
            value: object = text
            if kind == "number":
                value = float(text)
            elif kind == "duration":
                value = Duration(int(text[:-1]), text[-1])
            elif kind in ("string", "qident"):
                try:
                    body = text[1:-1]
                    if kind == "qident":
                        body = body.replace('\\`', "`").replace('"', '\\"')
                    value = json.loads(f'"{body}"')
                except ValueError:
                    raise RuleSyntaxError("invalid escape in quoted text", line, column) from None
            tokens.append(Token(kind, text, value, line, column))
        pos = match.end()
    tokens.append(Token("eof", "", None, line, pos - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, source: str):
        self.tokens = tokenize(source)
        self.pos = 0
        # Where each node starts, by its path, so tree errors can point into the text.
        self.positions: dict[str, tuple[int, int]] = {}

    # Token access.
    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def error(self, message: str, token: Token | None = None) -> RuleSyntaxError:
        token = token or self.tok
        found = "end of rule" if token.kind == "eof" else repr(token.text)
        return RuleSyntaxError(f"{message}, found {found}", token.line, token.column)

    def is_word(self, word: str, token: Token | None = None) -> bool:
        token = token or self.tok
        return token.kind == "ident" and token.text == word

    def accept_word(self, word: str) -> bool:
        if self.is_word(word):
            self.pos += 1
            return True
        return False

    def expect_word(self, word: str) -> Token:
        if not self.is_word(word):
            raise self.error(f"expected {word!r}")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def accept_punct(self, char: str) -> bool:
        if self.tok.kind == "punct" and self.tok.text == char:
            self.pos += 1
            return True
        return False

    def expect_punct(self, char: str) -> None:
        if not self.accept_punct(char):
            raise self.error(f"expected {char!r}")

    # Grammar.
    def parse(self) -> Condition:
        node = self.or_expr("rule")
        if self.tok.kind != "eof":
            raise self.error("expected 'and', 'or' or end of rule")
        return node

    def or_expr(self, path: str) -> Condition:
        start = self.tok
        items = [self.and_expr(f"{path}.any_of.conditions[0]")]
        while self.accept_word("or"):
            items.append(self.and_expr(f"{path}.any_of.conditions[{len(items)}]"))
        if len(items) == 1:
            return self._relocate(f"{path}.any_of.conditions[0]", path, items[0])
        self.positions[path] = (start.line, start.column)
        return Or(tuple(items))

    def and_expr(self, path: str) -> Condition:
        start = self.tok
        items = [self.not_expr(f"{path}.all_of.conditions[0]")]
        while self.accept_word("and"):
            items.append(self.not_expr(f"{path}.all_of.conditions[{len(items)}]"))
        if len(items) == 1:
            return self._relocate(f"{path}.all_of.conditions[0]", path, items[0])
        self.positions[path] = (start.line, start.column)
        return And(tuple(items))

    def _relocate(self, old: str, new: str, node: Condition) -> Condition:
        """Re-keys positions recorded under a tentative group path that turned out single."""
        moved = {k: v for k, v in self.positions.items() if k == old or k.startswith(old + ".")}
        for key, value in moved.items():
            del self.positions[key]
            self.positions[new + key[len(old):]] = value
        return node

    def not_expr(self, path: str) -> Condition:
        start = self.tok
        if self.is_word("not") and not (self.peek().kind == "op"):
            self.pos += 1
            inner = self.not_expr(f"{path}.negation")
            self.positions[path] = (start.line, start.column)
            return Not(inner)
        return self.primary(path)

    def primary(self, path: str) -> Condition:
        start = self.tok
        if self.accept_punct("("):
            node = self.or_expr(path)
            self.expect_punct(")")
            return node
        node = self.leaf(path)
        self.positions[path] = (start.line, start.column)
        return node

    def leaf(self, path: str) -> Condition:
        tok = self.tok
        if tok.kind == "ident" and self.peek().kind == "punct" and self.peek().text == "(":
            word = tok.text
            if word in {a.value for a in Aggregate}:
                return self.aggregate()
            handlers = {
                "has_tag": lambda: TagCondition(self.call_string(), True),
                "lacks_tag": lambda: TagCondition(self.call_string(), False),
                "seq": self.sequence,
                "rfm": lambda: RfmCondition(self.call_strings()),
                "lifecycle": lambda: LifecycleCondition(self.call_strings()),
                "consent": self.consent,
                "in_segment": self.in_segment,
                "exists": lambda: AttributeCondition(self.call_field(), Op.EXISTS, ()),
            }
            if word in handlers:
                return handlers[word]()
        if tok.kind == "qident" or (tok.kind == "ident" and tok.text not in KEYWORDS) or (
            tok.kind == "ident" and tok.text in ("attr", "trait", "score")
            and self.peek().kind == "punct" and self.peek().text == "."
        ):
            field = self.field_ref()
            op, values = self.comparison(allow_contains=True)
            return AttributeCondition(field, op, values)
        raise self.error("expected a condition")

    def name(self, what: str) -> str:
        tok = self.tok
        if tok.kind == "qident" or (tok.kind == "ident" and tok.text not in KEYWORDS):
            self.pos += 1
            return tok.value  # type: ignore[return-value]
        raise self.error(f"expected {what}")

    def field_ref(self) -> FieldRef:
        tok = self.tok
        if tok.kind == "ident" and tok.text in ("attr", "trait", "score") and (
            self.peek().kind == "punct" and self.peek().text == "."
        ):
            self.pos += 2
            return FieldRef(self.name("a field name"), Source(tok.text))
        return FieldRef(self.name("a field name"))

    def literal(self) -> Literal:
        tok = self.tok
        if tok.kind in ("string", "number"):
            self.pos += 1
            return tok.value  # type: ignore[return-value]
        if self.is_word("true") or self.is_word("false"):
            self.pos += 1
            return tok.text == "true"
        raise self.error("expected a string, number, true or false")

    def number(self) -> float:
        tok = self.tok
        if tok.kind != "number":
            raise self.error("expected a number")
        self.pos += 1
        return tok.value  # type: ignore[return-value]

    def comparison(self, allow_contains: bool) -> tuple[Op, tuple[Literal, ...]]:
        tok = self.tok
        if tok.kind == "op":
            self.pos += 1
            op = Op.EQ if tok.text in ("=", "==") else Op(tok.text)
            return op, (self.literal(),)
        if self.accept_word("between"):
            low = self.literal()
            self.expect_word("and")
            return Op.BETWEEN, (low, self.literal())
        if self.is_word("not") and self.is_word("in", self.peek()):
            self.pos += 2
            return Op.NOT_IN, self.literal_list()
        if self.accept_word("in"):
            return Op.IN, self.literal_list()
        if allow_contains and self.accept_word("contains"):
            return Op.CONTAINS, (self.literal(),)
        raise self.error("expected a comparison operator")

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect_punct("(")
        items = [self.literal()]
        while self.accept_punct(","):
            items.append(self.literal())
        self.expect_punct(")")
        return tuple(items)

    def call_string(self) -> str:
        self.pos += 1
        self.expect_punct("(")
        value = self.string()
        self.expect_punct(")")
        return value

    def call_strings(self) -> tuple[str, ...]:
        self.pos += 1
        self.expect_punct("(")
        items = [self.string()]
        while self.accept_punct(","):
            items.append(self.string())
        self.expect_punct(")")
        return tuple(items)

    def call_field(self) -> FieldRef:
        self.pos += 1
        self.expect_punct("(")
        field = self.field_ref()
        self.expect_punct(")")
        return field

    def string(self) -> str:
        tok = self.tok
        if tok.kind != "string":
            raise self.error("expected a quoted string")
        self.pos += 1
        return tok.value  # type: ignore[return-value]

    def consent(self) -> ConsentCondition:
        self.pos += 1
        self.expect_punct("(")
        channel = self.name("a channel name")
        self.expect_punct(")")
        return ConsentCondition(channel)

    def in_segment(self) -> SegmentCondition:
        self.pos += 1
        self.expect_punct("(")
        tok = self.tok
        value = self.number()
        if value != int(value):
            raise self.error("expected a segment id (an integer)", tok)
        self.expect_punct(")")
        return SegmentCondition(int(value))

    def event_spec(self, measured: bool) -> tuple[EventSpec, str | None]:
        event_type: str | None
        if self.accept_word("any"):
            event_type = None
        else:
            event_type = self.name("an event type or 'any'")
        measure = None
        if measured:
            self.expect_punct(".")
            measure = self.name("a measure (value or a property name)") if not self.is_word(
                "value") else self._take_value_word()
        filters: list[PropertyFilter] = []
        if self.accept_word("where"):
            filters.append(self.property_filter())
            while self.accept_word("and"):
                filters.append(self.property_filter())
        return EventSpec(event_type, tuple(filters)), measure

    def _take_value_word(self) -> str:
        self.pos += 1
        return "value"

    def property_filter(self) -> PropertyFilter:
        if self.is_word("exists") and self.peek().text == "(":
            self.pos += 1
            self.expect_punct("(")
            name = self.name("a property name")
            self.expect_punct(")")
            return PropertyFilter(name, Op.EXISTS, ())
        name = self.name("a property name")
        op, values = self.comparison(allow_contains=True)
        return PropertyFilter(name, op, values)

    def window(self) -> Window:
        tok = self.tok
        if tok.kind == "duration":
            self.pos += 1
            return tok.value  # type: ignore[return-value]
        if self.accept_word("from"):
            start = self.instant()
            self.expect_word("to")
            return AbsoluteWindow(start, self.instant())
        raise self.error("expected a window such as 30d, 12h, 10m or from \"...\" to \"...\"")

    def instant(self) -> int:
        tok = self.tok
        text = self.string()
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise self.error("expected an ISO 8601 instant", tok) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(round(moment.timestamp() * 1000))

    def aggregate(self) -> EventAggregateCondition:
        aggregate = Aggregate(self.tok.text)
        self.pos += 1
        self.expect_punct("(")
        event, measure = self.event_spec(aggregate in MEASURED)
        window: Window = None
        if self.accept_punct(","):
            window = self.window()
        self.expect_punct(")")
        tok = self.tok
        if tok.kind == "op":
            self.pos += 1
            op = Op.EQ if tok.text in ("=", "==") else Op(tok.text)
            values: tuple[float, ...] = (self.number(),)
        elif self.accept_word("between"):
            low = self.number()
            self.expect_word("and")
            op, values = Op.BETWEEN, (low, self.number())
        else:
            raise self.error("expected a comparison of the aggregate with a number")
        return EventAggregateCondition(aggregate, event, op, values, window, measure)

    def sequence(self) -> SequenceCondition:
        self.pos += 1
        self.expect_punct("(")
        first, _ = self.event_spec(False)
        self.expect_word("then")
        absent = self.accept_word("not")
        second, _ = self.event_spec(False)
        within = None
        if self.accept_word("within"):
            tok = self.tok
            if tok.kind != "duration":
                raise self.error("expected a duration such as 10m, 12h or 3d")
            self.pos += 1
            within = tok.value
        window: Window = None
        if self.accept_punct(","):
            window = self.window()
        self.expect_punct(")")
        return SequenceCondition(first, second, absent, within, window)  # type: ignore[arg-type]


def parse_rule(source: str) -> Condition:
    """Parses a text rule; raises RuleSyntaxError with the line and column of the problem."""
    return _Parser(source).parse()


def parse_rule_with_positions(source: str) -> tuple[Condition, dict[str, tuple[int, int]]]:
    """The tree and where each node starts in the text, keyed by its path."""
    parser = _Parser(source)
    node = parser.parse()
    return node, parser.positions


# Printer.
def format_name(name: str) -> str:
    if IDENT_RE.match(name) and name not in KEYWORDS:
        return name
    return "`" + json.dumps(name, ensure_ascii=False)[1:-1].replace('\\"', '"').replace(
        "`", "\\`") + "`"


def format_literal(value: Literal) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(float(value))
    return json.dumps(value, ensure_ascii=False)


def format_number(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_field(field: FieldRef) -> str:
    if field.source is Source.AUTO:
        return format_name(field.name)
    return f"{field.source.value}.{format_name(field.name)}"


def format_comparison(op: Op, values: tuple, aggregate: bool = False) -> str:
    fmt = format_number if aggregate else format_literal
    if op is Op.BETWEEN:
        return f"between {fmt(values[0])} and {fmt(values[1])}"
    if op in (Op.IN, Op.NOT_IN):
        return f"{op.value} ({', '.join(fmt(v) for v in values)})"
    if op is Op.EQ and aggregate:
        return f"== {fmt(values[0])}"
    return f"{op.value} {fmt(values[0])}"


def format_instant(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def format_window(window: Window) -> str:
    if isinstance(window, Duration):
        return f"{window.amount}{window.unit}"
    assert isinstance(window, AbsoluteWindow)
    return f'from "{format_instant(window.start_ms)}" to "{format_instant(window.end_ms)}"'


def format_filter(item: PropertyFilter) -> str:
    if item.op is Op.EXISTS:
        return f"exists({format_name(item.property)})"
    return f"{format_name(item.property)} {format_comparison(item.op, item.values)}"


def format_event(spec: EventSpec, measure: str | None = None) -> str:
    text = "any" if spec.event_type is None else format_name(spec.event_type)
    if measure is not None:
        text += "." + ("value" if measure == "value" else format_name(measure))
    if spec.filters:
        text += " where " + " and ".join(format_filter(f) for f in spec.filters)
    return text


def format_rule(node: Condition) -> str:
    """The canonical text of a tree; ``parse_rule(format_rule(t)) == t`` for every valid tree."""
    if isinstance(node, Or):
        return " or ".join(
            f"({format_rule(c)})" if isinstance(c, Or) else format_rule(c) for c in node.conditions
        )
    if isinstance(node, And):
        return " and ".join(
            f"({format_rule(c)})" if isinstance(c, (And, Or)) else format_rule(c)
            for c in node.conditions
        )
    if isinstance(node, Not):
        inner = node.condition
        text = format_rule(inner)
        return f"not ({text})" if isinstance(inner, (And, Or)) else f"not {text}"
    if isinstance(node, AttributeCondition):
        if node.op is Op.EXISTS:
            return f"exists({format_field(node.field)})"
        return f"{format_field(node.field)} {format_comparison(node.op, node.values)}"
    if isinstance(node, TagCondition):
        return f"{'has_tag' if node.present else 'lacks_tag'}({format_literal(node.tag)})"
    if isinstance(node, EventAggregateCondition):
        inner = format_event(node.event, node.measure if node.aggregate in MEASURED else None)
        if node.window is not None:
            inner += ", " + format_window(node.window)
        return f"{node.aggregate.value}({inner}) {format_comparison(node.op, node.values, True)}"
    if isinstance(node, SequenceCondition):
        inner = f"{format_event(node.first)} then {'not ' if node.then_absent else ''}"
        inner += format_event(node.second)
        if node.within is not None:
            inner += f" within {node.within.amount}{node.within.unit}"
        if node.window is not None:
            inner += ", " + format_window(node.window)
        return f"seq({inner})"
    if isinstance(node, RfmCondition):
        return f"rfm({', '.join(format_literal(g) for g in node.groups)})"
    if isinstance(node, LifecycleCondition):
        return f"lifecycle({', '.join(format_literal(s) for s in node.stages)})"
    if isinstance(node, ConsentCondition):
        return f"consent({format_name(node.channel)})"
    if isinstance(node, SegmentCondition):
        return f"in_segment({node.segment_id})"
    raise TypeError(f"not a condition: {node!r}")


__all__ = [
    "KEYWORDS",
    "SCALAR_OPS",
    "RuleSyntaxError",
    "child_path",
    "format_rule",
    "parse_rule",
    "parse_rule_with_positions",
]
