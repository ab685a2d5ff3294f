"""The text form: exact round trips, canonical printing and syntax errors with positions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segment import rules as r
from services.segment.text import (
    RuleSyntaxError,
    format_rule,
    parse_rule,
    parse_rule_with_positions,
)

CANONICAL = [
    'age >= 30 and count(view_page where topic = "anti-ageing", 30d) == 0',
    'member_level = "silver" and count(visit, 7d) >= 1 and sum(add_to_cart.quantity, 90d) > 3',
    "count(post_note) < 5 and points > 100 and active_days(any, 30d) between 8 and 10",
    "count(any, 7d) >= 1 and count(purchase, 7d) == 0",
    "count(register) >= 1 and count(order) == 0",
    "seq(submit_order then not pay_order within 10m)",
    "seq(claim_coupon where source = \"app\" then not order, 30d)",
    "seq(view_item then order within 1d, 12h)",
    'not (has_tag("vip") or lacks_tag("churned")) and consent(email)',
    'a = 0 or (b = 1 or c = 2)',
    'a = 1 and (b = 2 and c = 3)',
    'not not a = 1',
    'rfm("champions", "loyal") or lifecycle("new") or in_segment(42)',
    'city not in ("Lyon", "Nice") and exists(score.churn_risk) and trait.frequency != 2.5',
    '`count` = 1 and `odd name` contains "x\\"y" and attr.`and` = false',
    'avg(order.value where exists(coupon) and price between 1 and 9.75, from '
    '"2024-01-01T00:00:00Z" to "2024-02-01T00:00:00.250Z") > -3.5',
    'max(`page-view`.`load time` where `x y` != true) <= 1e+20',
    'churn_risk >= 0.7',
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_text_round_trips_exactly(text):
    tree = parse_rule(text)
    assert format_rule(tree) == text
    assert parse_rule(format_rule(tree)) == tree


def test_example_tree_shape():
    tree = parse_rule('age >= 30 and count(view_page where topic = "anti-ageing", 30d) == 0')
    assert tree == r.And((
        r.AttributeCondition(r.FieldRef("age"), r.Op.GE, (30.0,)),
        r.EventAggregateCondition(
            r.Aggregate.COUNT,
            r.EventSpec("view_page", (r.PropertyFilter("topic", r.Op.EQ, ("anti-ageing",)),)),
            r.Op.EQ, (0.0,), r.Duration(30, "d")),
    ))


def test_non_canonical_spellings_print_canonically():
    tree = parse_rule("(age == 30)\n  and\tb=1 or ((x = 1))")
    assert format_rule(tree) == "age = 30 and b = 1 or x = 1"
    assert format_rule(parse_rule("count(a) = 1")) == "count(a) == 1"


@pytest.mark.parametrize("text, line, column, fragment", [
    ("age >=", 1, 7, "expected a string, number"),
    ("age >= 30 and\n  count(view_page, 30x) == 0", 2, 20, "expected a window"),
    ("age >= 30 and (b = 1", 1, 21, "expected ')'"),
    ('city = "Paris', 1, 8, "unterminated"),
    ("age >= 30 @", 1, 11, "unexpected character"),
    ("count(view_page, 30d)", 1, 22, "expected a comparison of the aggregate"),
    ("seq(a then b within 3)", 1, 21, "expected a duration"),
    ("age 30", 1, 5, "expected a comparison operator"),
    ("and = 1", 1, 1, "expected a condition"),
    ("age >= 30 x = 1", 1, 11, "expected 'and', 'or' or end of rule"),
    ('count(a, from "yesterday" to "2024-01-01") > 1', 1, 15, "ISO 8601"),
    ("in_segment(1.5)", 1, 12, "segment id"),
])
def test_syntax_errors_point_at_line_and_column(text, line, column, fragment):
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule(text)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert fragment in caught.value.message
    assert f"line {line}, column {column}" in str(caught.value)


def test_positions_are_recorded_by_path():
    _, positions = parse_rule_with_positions('a = 1 and\n(b = 2 or not c = 3)')
    assert positions["rule"] == (1, 1)
    assert positions["rule.all_of.conditions[0]"] == (1, 1)
    assert positions["rule.all_of.conditions[1].any_of.conditions[0]"] == (2, 2)
    assert positions["rule.all_of.conditions[1].any_of.conditions[1]"] == (2, 11)
    assert positions["rule.all_of.conditions[1].any_of.conditions[1].negation"] == (2, 15)


# Random trees: every tree the printer accepts parses back to itself.
names = st.one_of(st.sampled_from(["age", "city", "count", "and", "x y", "é", "a`b", 'q"t']),
                  st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True))
strings = st.text(max_size=8)
numbers = st.one_of(st.integers(-10**6, 10**6).map(float),
                    st.floats(allow_nan=False, allow_infinity=False, width=64))
literals = st.one_of(strings, numbers, st.booleans())
durations = st.builds(r.Duration, st.integers(-5, 1000), st.sampled_from(["m", "h", "d"]))
windows = st.one_of(st.none(), durations, st.builds(
    r.AbsoluteWindow, st.integers(0, 4 * 10**12), st.integers(0, 4 * 10**12)))
fields = st.builds(r.FieldRef, names, st.sampled_from(list(r.Source)))


def comparisons(values):
    return st.one_of(
        st.tuples(st.sampled_from([r.Op.EQ, r.Op.NE, r.Op.LT, r.Op.LE, r.Op.GT, r.Op.GE,
                                   r.Op.CONTAINS]), values.map(lambda v: (v,))),
        st.tuples(st.sampled_from([r.Op.IN, r.Op.NOT_IN]),
                  st.lists(values, min_size=1, max_size=3).map(tuple)),
        st.tuples(st.just(r.Op.BETWEEN), st.tuples(values, values)),
    )


filters = st.one_of(
    comparisons(literals).flatmap(lambda c: st.builds(r.PropertyFilter, names, st.just(c[0]),
                                                      st.just(c[1]))),
    st.builds(r.PropertyFilter, names, st.just(r.Op.EXISTS), st.just(())),
)
specs = st.builds(r.EventSpec, st.one_of(st.none(), names),
                  st.lists(filters, max_size=2).map(tuple))
agg_cmp = st.one_of(
    st.tuples(st.sampled_from([r.Op.EQ, r.Op.NE, r.Op.LT, r.Op.LE, r.Op.GT, r.Op.GE]),
              numbers.map(lambda v: (v,))),
    st.tuples(st.just(r.Op.BETWEEN), st.tuples(numbers, numbers)),
)


@st.composite
def aggregates(draw):
    aggregate = draw(st.sampled_from(list(r.Aggregate)))
    op, values = draw(agg_cmp)
    measure = draw(names) if aggregate in r.MEASURED else None
    return r.EventAggregateCondition(aggregate, draw(specs), op, values, draw(windows), measure)


leaves = st.one_of(
    comparisons(literals).flatmap(
        lambda c: st.builds(r.AttributeCondition, fields, st.just(c[0]), st.just(c[1]))),
    st.builds(r.AttributeCondition, fields, st.just(r.Op.EXISTS), st.just(())),
    st.builds(r.TagCondition, strings, st.booleans()),
    aggregates(),
    st.builds(r.SequenceCondition, specs, specs, st.booleans(),
              st.one_of(st.none(), durations), windows),
    st.builds(r.RfmCondition, st.lists(strings, min_size=1, max_size=3).map(tuple)),
    st.builds(r.LifecycleCondition, st.lists(strings, min_size=1, max_size=3).map(tuple)),
    st.builds(r.ConsentCondition, names),
    st.builds(r.SegmentCondition, st.integers(0, 10**9)),
)
trees = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(r.And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    st.builds(r.Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    st.builds(r.Not, inner),
), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(trees)
def test_every_tree_round_trips(tree):
    text = format_rule(tree)
    assert parse_rule(text) == tree
    assert format_rule(parse_rule(text)) == text
