"""Bad rules are refused with the path of the offending node."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.segment import rules as r
from services.segment.catalog import Catalog
from services.segment.text import parse_rule
from services.segment.validate import MAX_DEPTH, check_rule

CATALOG = Catalog({"age": "number", "city": "string", "vip": "bool", "brands": "string_list",
                   "birthday": "timestamp"}, frozenset({"churn_risk"}))


def violations(text_or_tree, segments=None, segment_id=None):
    tree = parse_rule(text_or_tree) if isinstance(text_or_tree, str) else text_or_tree
    resolve = None
    if segments is not None:
        resolve = lambda i: parse_rule(segments[i]) if i in segments else None
    with pytest.raises(InvalidArgument) as caught:
        check_rule(tree, CATALOG, resolve, segment_id)
    return dict(caught.value.violations)


def test_valid_rules_pass():
    for text in ["age >= 30 and churn_risk > 0.5", 'brands contains "x" or vip = true',
                 'birthday < "2000-01-01" and frequency > 2 and rfm("loyal")',
                 "count(a, 30d) between 1 and 3"]:
        check_rule(parse_rule(text), CATALOG)


def test_unknown_field_names_the_leaf():
    found = violations('age >= 30 and (nope = 1 or score.age > 1)')
    assert set(found) == {"rule.all_of.conditions[1].any_of.conditions[0].attribute.field",
                          "rule.all_of.conditions[1].any_of.conditions[1].attribute.field"}
    assert "unknown field 'nope'" in found[
        "rule.all_of.conditions[1].any_of.conditions[0].attribute.field"]


def test_number_compared_with_string():
    found = violations('city = 3 or age >= "thirty"')
    assert "compares a string with a number" in found["rule.any_of.conditions[0].attribute.values[0]"]
    assert "compares a number with a string" in found["rule.any_of.conditions[1].attribute.values[0]"]
    found = violations('brands contains 3')
    assert "rule.attribute.values[0]" in found
    found = violations('vip > true')
    assert "does not apply" in found["rule.attribute.op"]
    found = violations('count(a where x contains 3) > 1')
    assert "rule.event_aggregate.event.filters[0].values" in found


def test_non_positive_windows():
    found = violations("count(a, 0d) > 1 and seq(a then not b within -5m, -1h)")
    assert set(found) == {"rule.all_of.conditions[0].event_aggregate.window",
                          "rule.all_of.conditions[1].sequence.within",
                          "rule.all_of.conditions[1].sequence.window"}
    assert "positive" in found["rule.all_of.conditions[0].event_aggregate.window"]
    found = violations('count(a, from "2024-02-01" to "2024-01-01") > 1')
    assert "rule.event_aggregate.window" in found


def test_depth_limit():
    tree = r.AttributeCondition(r.FieldRef("age"), r.Op.GE, (1.0,))
    for _ in range(MAX_DEPTH):
        tree = r.Not(tree)
    path = "rule" + ".negation" * MAX_DEPTH
    found = violations(tree)
    assert list(found) == [path]
    assert f"deeper than {MAX_DEPTH}" in found[path]


def test_measures_and_operators_of_aggregates():
    found = violations(r.EventAggregateCondition(r.Aggregate.SUM, r.EventSpec("order"), r.Op.GT,
                                                 (1.0,)))
    assert "needs a measure" in found["rule.event_aggregate.measure"]
    found = violations(r.EventAggregateCondition(r.Aggregate.COUNT, r.EventSpec("order"),
                                                 r.Op.CONTAINS, (1.0,)))
    assert "rule.event_aggregate.op" in found
    found = violations("count(a) between 5 and 1")
    assert "lower bound" in found["rule.event_aggregate.values"]


def test_groups_consent_and_empty_names():
    found = violations(r.And((r.TagCondition("x"),)))
    assert "at least two" in found["rule.all_of.conditions"]
    assert "unknown channel" in violations("consent(fax)")["rule.consent.channel"]
    assert "rule.tag.tag" in violations('has_tag("")')


def test_segment_references_and_cycles():
    segments = {1: "in_segment(2)", 2: "in_segment(3) and age > 1", 3: "in_segment(1)",
                4: "age > 3", 5: "in_segment(5)"}
    assert "does not exist" in violations("in_segment(9)", segments)["rule.segment.segment"]
    found = violations("age > 1 and in_segment(1)", segments, segment_id=10)
    assert "segments/1 -> segments/2 -> segments/3 -> segments/1" in found[
        "rule.all_of.conditions[1].segment.segment"]
    # Updating segment 2 to refer to 3 closes a loop through segment 1.
    found = violations("in_segment(3)", segments, segment_id=2)
    assert "segments/2 -> segments/3 -> segments/1 -> segments/2" in found[
        "rule.segment.segment"]
    assert "refers to itself" in violations("in_segment(4)", segments, 4)["rule.segment.segment"]
    check_rule(parse_rule("in_segment(4)"), CATALOG, lambda i: parse_rule(segments[i]), 6)
