"""The five rules from the field, each on a population whose members are known by construction."""

from __future__ import annotations

from sqlalchemy import Engine

from services.segment.compiler import compile_rule
from services.segment.prepared import PreparedRules
from services.segment.text import format_rule, parse_rule
from services.segment.validate import check_rule
from tests.segment.conftest import DAY, HOUR, NOW, Population


def members(engine: Engine, catalog, text: str) -> set[int]:
    rule = parse_rule(text)
    assert format_rule(rule) == text
    check_rule(rule, catalog)
    with engine.connect() as connection:
        found = set(connection.execute(
            compile_rule(rule, catalog, NOW, dialect=engine.dialect.name)).scalars())
        # The engine's own semi-join spelling and the portable one select the same users.
        assert set(connection.execute(compile_rule(rule, catalog, NOW)).scalars()) == found
        # So do the service's kept statements, first built at another instant.
        prepared = PreparedRules(engine.dialect)
        prepared.count(connection, rule, catalog, NOW - 30 * DAY)
        assert set(prepared.members(connection, rule, catalog, NOW)) == found
        assert prepared.count(connection, rule, catalog, NOW) == len(found)
    return found


def test_age_and_no_anti_ageing_views(store_engine):
    pop = Population()
    expected = set()
    expected.add(pop.user("no-views", age=35))
    recent = pop.user("viewed-recently", age=35)
    pop.event(recent, "view_page", NOW - 5 * DAY, topic="anti-ageing")
    old = pop.user("viewed-long-ago", age=35)
    pop.event(old, "view_page", NOW - 40 * DAY, topic="anti-ageing")
    expected.add(old)
    other = pop.user("viewed-other-topic", age=50)
    pop.event(other, "view_page", NOW - 2 * DAY, topic="skin-care")
    expected.add(other)
    pop.user("too-young", age=25)
    pop.user("no-age")
    expected.add(pop.user("exactly-thirty", age=30))
    future = pop.user("viewed-after-now", age=40)
    pop.event(future, "view_page", NOW + HOUR, topic="anti-ageing")
    expected.add(future)
    young_viewer = pop.user("young-viewer", age=29)
    pop.event(young_viewer, "view_page", NOW - 40 * DAY, topic="anti-ageing")
    catalog = pop.write(store_engine)
    text = 'age >= 30 and count(view_page where topic = "anti-ageing", 30d) == 0'
    assert members(store_engine, catalog, text) == expected


def test_silver_visited_and_added_to_cart(store_engine):
    pop = Population()
    expected = set()

    def shopper(name, level, visit_days_ago, quantities, cart_days_ago=10):
        uid = pop.user(name, member_level=level)
        if visit_days_ago is not None:
            pop.event(uid, "visit", NOW - visit_days_ago * DAY)
        for q in quantities:
            pop.event(uid, "add_to_cart", NOW - cart_days_ago * DAY, quantity=q)
        return uid

    expected.add(shopper("match", "silver", 1, [2, 2]))
    expected.add(shopper("match-many-events", "silver", 6, [1, 1, 1, 1]))
    shopper("exactly-three", "silver", 1, [1, 2])
    shopper("gold", "gold", 1, [5])
    shopper("no-recent-visit", "silver", 8, [5])
    shopper("never-visited", "silver", None, [5])
    shopper("cart-too-old", "silver", 1, [5], cart_days_ago=95)
    shopper("no-cart", "silver", 1, [])
    catalog = pop.write(store_engine)
    text = 'member_level = "silver" and count(visit, 7d) >= 1 and sum(add_to_cart.quantity, 90d) > 3'
    assert members(store_engine, catalog, text) == expected


def test_few_notes_many_points_eight_to_ten_active_days(store_engine):
    pop = Population()
    expected = set()

    def member(name, notes, points, active_days, hours_apart=2):
        uid = pop.user(name, points=points)
        for i in range(notes):
            pop.event(uid, "post_note", NOW - 100 * DAY - i * HOUR)
        for day in range(active_days):
            # Two events on each active day: distinct days, not events, are counted.
            pop.event(uid, "open_app", NOW - day * DAY - HOUR)
            pop.event(uid, "view_page", NOW - day * DAY - HOUR - hours_apart * 60_000)
        return uid

    expected.add(member("eight-days", 0, 150, 8))
    expected.add(member("ten-days", 4, 101, 10))
    member("eleven-days", 0, 150, 11)
    member("seven-days", 0, 150, 7)
    member("five-notes", 5, 150, 9)
    member("exactly-100-points", 0, 100, 9)
    catalog = pop.write(store_engine)
    text = "count(post_note) < 5 and points > 100 and active_days(any, 30d) between 8 and 10"
    assert members(store_engine, catalog, text) == expected


def test_active_last_week_without_purchase(store_engine):
    pop = Population()
    expected = set()
    a = pop.user("active")
    pop.event(a, "view_page", NOW - 2 * DAY)
    expected.add(a)
    b = pop.user("active-and-bought")
    pop.event(b, "view_page", NOW - 2 * DAY)
    pop.event(b, "purchase", NOW - 1 * DAY, value=30.0)
    c = pop.user("bought-long-ago")
    pop.event(c, "view_page", NOW - 3 * DAY)
    pop.event(c, "purchase", NOW - 20 * DAY, value=30.0)
    expected.add(c)
    d = pop.user("inactive")
    pop.event(d, "view_page", NOW - 9 * DAY)
    pop.user("no-events")
    catalog = pop.write(store_engine)
    text = "count(any, 7d) >= 1 and count(purchase, 7d) == 0"
    assert members(store_engine, catalog, text) == expected


def test_registered_never_ordered(store_engine):
    pop = Population()
    expected = set()
    a = pop.user("registered")
    pop.event(a, "register", NOW - 50 * DAY)
    expected.add(a)
    b = pop.user("registered-and-ordered")
    pop.event(b, "register", NOW - 50 * DAY)
    pop.event(b, "order", NOW - 400 * DAY)
    pop.user("anonymous")
    c = pop.user("ordered-without-registering")
    pop.event(c, "order", NOW - 2 * DAY)
    catalog = pop.write(store_engine)
    assert members(store_engine, catalog, "count(register) >= 1 and count(order) == 0") == expected
