"""Every leaf kind compiled and run on each engine against constructed populations."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.common import profile_tables as pt
from services.segment.compiler import compile_rule
from services.segment.prepared import PreparedRules
from services.segment.text import parse_rule
from services.segment.validate import check_rule
from tests.segment.conftest import DAY, MINUTE, NOW, Population


def run(engine, catalog, text, segments=None, restrict=None) -> set[int]:
    rule = parse_rule(text)
    resolve = (lambda i: parse_rule(segments[i]) if i in segments else None) if segments else None
    check_rule(rule, catalog, resolve)
    statement = compile_rule(rule, catalog, NOW, resolve, restrict, engine.dialect.name)
    portable = compile_rule(rule, catalog, NOW, resolve, restrict)
    with engine.connect() as connection:
        found = set(connection.execute(statement).scalars())
        # The engine's own semi-join spelling and the portable one select the same users.
        assert set(connection.execute(portable).scalars()) == found
        prepared = PreparedRules(engine.dialect)
        if restrict is None:
            # The service's kept statement, built at another instant and run at NOW with
            # the instants bound again, selects and counts the same users.
            prepared.members(connection, rule, catalog, NOW - 7 * DAY, resolve)
            assert set(prepared.members(connection, rule, catalog, NOW, resolve)) == found
            assert prepared.count(connection, rule, catalog, NOW, resolve) == len(found)
            # So does the kept re-check statement, given every user.
            everyone = list(connection.execute(select(pt.profiles.c.id)).scalars())
            prepared.among(connection, rule, catalog, NOW - 7 * DAY, everyone[:1], resolve)
            assert prepared.among(connection, rule, catalog, NOW, everyone, resolve) == found
        else:
            # The kept re-check statement, built for other ids at another instant.
            prepared.among(connection, rule, catalog, NOW - 7 * DAY, [], resolve)
            assert prepared.among(connection, rule, catalog, NOW, restrict, resolve) == found
    return found


@pytest.fixture
def shop(store_engine):
    pop = Population()
    u = {}
    # Sequences: orders paid in time, late, never, and orders too recent to judge.
    u["paid"] = pop.user("paid", city="Paris", brands=["acme", "zen"], vip=True)
    pop.event(u["paid"], "submit_order", NOW - DAY, order="o1")
    pop.event(u["paid"], "pay_order", NOW - DAY + 5 * MINUTE, order="o1")
    u["late"] = pop.user("late", city="Lyon", brands=["zen"], vip=False)
    pop.event(u["late"], "submit_order", NOW - DAY)
    pop.event(u["late"], "pay_order", NOW - DAY + 30 * MINUTE)
    u["unpaid"] = pop.user("unpaid", city="Paris-Sud")
    pop.event(u["unpaid"], "submit_order", NOW - 2 * DAY, value=12.5)
    u["fresh"] = pop.user("fresh")
    pop.event(u["fresh"], "submit_order", NOW - 3 * MINUTE)
    # Coupons claimed and never followed by an order.
    u["coupon"] = pop.user("coupon")
    pop.event(u["coupon"], "claim_coupon", NOW - 10 * DAY)
    u["coupon-ordered"] = pop.user("coupon-ordered")
    pop.event(u["coupon-ordered"], "claim_coupon", NOW - 10 * DAY)
    pop.event(u["coupon-ordered"], "order", NOW - 9 * DAY, value=40.0, amount=40)
    pop.event(u["coupon-ordered"], "order", NOW - 8 * DAY, value=60.0, amount=60)
    # Order then coupon (wrong order for "coupon then order").
    u["order-first"] = pop.user("order-first")
    pop.event(u["order-first"], "order", NOW - 20 * DAY, value=10.0, amount=10)
    pop.event(u["order-first"], "claim_coupon", NOW - 10 * DAY)
    for name in ("paid", "late"):
        pop.tag(u[name], "newsletter")
    pop.tag(u["unpaid"], "newsletter", expires_ms=NOW - 1)
    pop.traits(u["paid"], rfm_group="champions", lifecycle_stage="active", frequency=12,
               last_purchase_ms=NOW - DAY)
    pop.traits(u["late"], rfm_group="at_risk", lifecycle_stage="dormant", frequency=2)
    pop.traits(u["unpaid"], rfm_group="loyal", lifecycle_stage="active", frequency=5)
    pop.score(u["paid"], "churn_risk", 0.2)
    pop.score(u["late"], "churn_risk", 0.9)
    pop.score(u["unpaid"], "churn_risk", 0.7)
    pop.consent(u["paid"], "email", True)
    pop.consent(u["late"], "email", False)
    pop.consent(u["unpaid"], "sms", True)
    catalog = pop.write(store_engine)
    return store_engine, catalog, u


def ids(u, *names):
    return {u[n] for n in names}


def test_sequence_not_paid_within_ten_minutes(shop):
    engine, catalog, u = shop
    got = run(engine, catalog, "seq(submit_order then not pay_order within 10m)")
    assert got == ids(u, "late", "unpaid")


def test_sequence_then_within(shop):
    engine, catalog, u = shop
    assert run(engine, catalog, "seq(submit_order then pay_order within 10m)") == ids(u, "paid")
    assert run(engine, catalog, "seq(submit_order then pay_order)") == ids(u, "paid", "late")
    assert run(engine, catalog, 'seq(submit_order where order = "o1" then pay_order)') == ids(
        u, "paid")


def test_sequence_claimed_coupon_never_ordered(shop):
    engine, catalog, u = shop
    got = run(engine, catalog, "seq(claim_coupon then not order, 30d)")
    assert got == ids(u, "coupon", "order-first")


def test_event_sums_averages_and_property_filters(shop):
    engine, catalog, u = shop
    assert run(engine, catalog, "sum(order.value, 30d) >= 50") == ids(u, "coupon-ordered")
    assert run(engine, catalog, "avg(order.amount) < 20") == ids(u, "order-first")
    assert run(engine, catalog, "max(order.amount, 30d) == 60") == ids(u, "coupon-ordered")
    assert run(engine, catalog, "count(order where amount >= 40) == 2") == ids(u, "coupon-ordered")
    assert run(engine, catalog, "count(order where amount in (10, 60)) >= 1") == ids(
        u, "coupon-ordered", "order-first")
    # A user without orders has a sum of 0, which "< 15" accepts.
    assert u["paid"] in run(engine, catalog, "sum(order.value) < 15")
    assert u["coupon-ordered"] not in run(engine, catalog, "sum(order.value) < 15")
    window = 'count(order, from "2024-05-10T00:00:00Z" to "2024-05-20T00:00:00Z") >= 1'
    assert run(engine, catalog, window) == ids(u, "order-first")


def test_attributes_of_every_type(shop):
    engine, catalog, u = shop
    assert run(engine, catalog, 'city = "Paris"') == ids(u, "paid")
    assert run(engine, catalog, 'city contains "Paris"') == ids(u, "paid", "unpaid")
    assert run(engine, catalog, 'city in ("Lyon", "Nice")') == ids(u, "late")
    assert run(engine, catalog, 'city not in ("Lyon")') == ids(u, "paid", "unpaid")
    assert run(engine, catalog, 'not city = "Paris"') == set(u.values()) - ids(u, "paid")
    assert run(engine, catalog, 'brands contains "zen"') == ids(u, "paid", "late")
    assert run(engine, catalog, "vip = true") == ids(u, "paid")
    assert run(engine, catalog, "exists(vip)") == ids(u, "paid", "late")
    assert run(engine, catalog, 'city between "M" and "Q"') == ids(u, "paid", "unpaid")


def test_traits_scores_tags_consent_rfm_lifecycle(shop):
    engine, catalog, u = shop
    assert run(engine, catalog, "churn_risk >= 0.7") == ids(u, "late", "unpaid")
    assert run(engine, catalog, "score.churn_risk < 0.5") == ids(u, "paid")
    assert run(engine, catalog, "frequency > 3") == ids(u, "paid", "unpaid")
    assert run(engine, catalog, 'last_purchase >= "2024-05-25T00:00:00Z"') == ids(u, "paid")
    assert run(engine, catalog, 'has_tag("newsletter")') == ids(u, "paid", "late")
    assert u["unpaid"] in run(engine, catalog, 'lacks_tag("newsletter")')
    assert run(engine, catalog, "consent(email)") == ids(u, "paid")
    assert run(engine, catalog, 'rfm("champions", "loyal")') == ids(u, "paid", "unpaid")
    assert run(engine, catalog, 'lifecycle("dormant")') == ids(u, "late")
    assert run(engine, catalog, 'rfm("loyal") or (consent(email) and churn_risk < 0.5)') == ids(
        u, "paid", "unpaid")


def test_segment_reference_inlines_the_other_rule(shop):
    engine, catalog, u = shop
    segments = {1: 'has_tag("newsletter")', 2: "in_segment(1) and churn_risk > 0.5"}
    assert run(engine, catalog, "in_segment(2)", segments) == ids(u, "late")
    assert run(engine, catalog, "not in_segment(1) and exists(city)", segments) == ids(u, "unpaid")


def test_restricting_to_some_users(shop):
    engine, catalog, u = shop
    text = 'has_tag("newsletter") or count(order) >= 1'
    everyone = run(engine, catalog, text)
    assert everyone == ids(u, "paid", "late", "coupon-ordered", "order-first")
    some = [u["paid"], u["unpaid"], u["order-first"]]
    assert run(engine, catalog, text, restrict=some) == ids(u, "paid", "order-first")
