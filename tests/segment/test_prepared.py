"""Kept rule statements: rebound per instant, rebuilt when what they inline changes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from services.common import profile_tables as pt
from services.segment.catalog import Catalog
from services.segment.compiler import compile_rule
from services.segment.prepared import COUNT, IDS, PreparedRules
from services.segment.text import parse_rule
from tests.segment.conftest import DAY, NOW, Population


@pytest.fixture
def visits(store_engine):
    """Ten users, user i visiting i days before NOW; every odd one is a "gold" member."""
    pop = Population()
    users = []
    for i in range(1, 11):
        uid = pop.user(f"u{i}", level="gold" if i % 2 else "silver")
        pop.event(uid, "visit", NOW - i * DAY + 1)
        users.append(uid)
    catalog = pop.write(store_engine)
    return store_engine, catalog, users


def fresh(connection, rule, catalog, now_ms, resolve=None) -> set[int]:
    statement = compile_rule(rule, catalog, now_ms, resolve, None, connection.dialect.name)
    return set(connection.execute(statement).scalars())


def test_one_statement_serves_every_instant(visits):
    engine, catalog, users = visits
    prepared = PreparedRules(engine.dialect)
    rule = parse_rule('count(visit, 3d) >= 1 and level = "gold"')
    kept = prepared.prepare(IDS, rule, catalog, NOW)
    with engine.connect() as connection:
        for days in (0, 2, 4, 7, 30):
            now = NOW - days * DAY
            expected = fresh(connection, rule, catalog, now)
            assert set(prepared.members(connection, rule, catalog, now)) == expected
            assert prepared.count(connection, rule, catalog, now) == len(expected)
            assert prepared.prepare(IDS, rule, catalog, now) is kept
        # Users 1 and 3 visited in the three days before NOW; 5 and 7 in those before NOW - 4d.
        assert set(prepared.members(connection, rule, catalog, NOW)) == {users[0], users[2]}
        assert set(prepared.members(connection, rule, catalog, NOW - 4 * DAY)) == {users[4], users[6]}


def test_catalogue_changes_rebuild_and_equal_catalogues_do_not(visits):
    engine, catalog, _ = visits
    prepared = PreparedRules(engine.dialect)
    rule = parse_rule('level = "gold"')
    kept = prepared.prepare(COUNT, rule, catalog, NOW)
    same = Catalog(dict(catalog.attributes), catalog.models)
    assert prepared.prepare(COUNT, rule, same, NOW) is kept
    changed = Catalog({**catalog.attributes, "points": "number"}, catalog.models)
    assert prepared.prepare(COUNT, rule, changed, NOW) is not kept


def test_a_changed_referenced_segment_is_seen(visits):
    engine, catalog, users = visits
    prepared = PreparedRules(engine.dialect)
    segments = {1: parse_rule("count(visit, 2d) >= 1")}
    rule = parse_rule('in_segment(1) or level = "silver" and count(visit, 5d) >= 1')
    with engine.connect() as connection:
        first = set(prepared.members(connection, rule, catalog, NOW, segments.get))
        assert first == {users[0], users[1], users[3]}
        segments[1] = parse_rule("count(visit, 6d) >= 1")
        second = set(prepared.members(connection, rule, catalog, NOW, segments.get))
        assert second == fresh(connection, rule, catalog, NOW, segments.get)
        assert second == set(users[:6])


def test_ids_beyond_32_bits_are_refused_not_wrapped(store_engine):
    pop = Population()
    pop.user("small", level="gold")
    catalog = pop.write(store_engine)
    big = 2**32 + 7
    with store_engine.begin() as connection:
        connection.execute(pt.profiles.insert(), [dict(
            id=big, external_id="big", created_ms=0, updated_ms=0, time_zone="UTC",
            notifications_disabled=False, app_uninstalled=False)])
        connection.execute(pt.profile_attributes.insert(), [dict(
            user_id=big, name="level", str_value="gold")])
    prepared = PreparedRules(store_engine.dialect)
    rule = parse_rule('level = "gold"')
    with store_engine.connect() as connection:
        assert prepared.count(connection, rule, catalog, NOW) == 2
        with pytest.raises(OverflowError):
            prepared.members(connection, rule, catalog, NOW)


def test_engine_errors_come_as_sqlalchemy_errors(visits):
    engine, catalog, _ = visits
    prepared = PreparedRules(engine.dialect)
    rule = parse_rule("count(visit, 3d) >= 1")
    with engine.connect() as connection:
        assert prepared.count(connection, rule, catalog, NOW) == 3
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE events"))
    with engine.connect() as connection, pytest.raises(sa.exc.DBAPIError):
        prepared.count(connection, rule, catalog, NOW)
