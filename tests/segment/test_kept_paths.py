"""Previews, insight and real-time re-checks run kept statements on every engine: built once
per rule, rebound per instant (and page size, bucket bounds, ids), rebuilt when the catalogue
or a referenced rule changes."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import create_engine, insert

from services.common import profile_tables as pt
from services.common.db import migrate
from services.segment.catalog import CatalogCache
from services.segment.core import SegmentCore
from services.segment.realtime import RealtimeMembership, members_key
from services.segment.text import parse_rule
from tests.segment.conftest import DAY, NOW, Population

RECENT_GOLD = 'count(visit, 3d) >= 1 and level = "gold"'


@pytest.fixture
def kept(tmp_path, store_engine, monkeypatch):
    """Ten users, user i visiting i days before NOW; odd ones "gold", even ones "silver";
    churn score i/10; users 1-4 tagged "promo" (1 and 2 until NOW + 1 day); RFM groups.

    Yields the core, the users' ids and the kinds of statement built so far (a list that
    grows by one entry per statement ``PreparedRules`` builds)."""
    pop = Population()
    users = {}
    for i in range(1, 11):
        uid = users[i] = pop.user(f"u{i}", level="gold" if i % 2 else "silver")
        pop.event(uid, "visit", NOW - i * DAY + 1)
        pop.score(uid, "churn", i / 10)
        pop.traits(uid, rfm_group="champions" if i <= 3 else "hibernating")
        if i <= 4:
            pop.tag(uid, "promo", NOW + DAY if i <= 2 else None)
    pop.write(store_engine)
    url = f"sqlite:///{tmp_path}/segment.db"
    migrate("segment", url)
    core = SegmentCore(create_engine(url), store_engine, CatalogCache(store_engine, 0),
                       lambda: NOW / 1000)
    built: list[str] = []
    build = core.prepared._build

    def counted(shape, *args):
        built.append(type(shape).__name__)
        return build(shape, *args)

    monkeypatch.setattr(core.prepared, "_build", counted)
    yield core, users, built
    core.store.engine.dispose()


def compiled_once(core) -> bool:
    """On DuckDB every kept statement runs as SQL text compiled once (none falls back to
    SQLAlchemy, which would compile it on every call there)."""
    if core.read_engine.dialect.name != "duckdb":
        return True
    kept = list(core.prepared._entries.values())
    return bool(kept) and all(p.compiled and p.driver is not None for p in kept)


def page(users, *numbers) -> list[tuple[int, str]]:
    return [(users[i], f"u{i}") for i in numbers]


def by_dimension(insight) -> dict:
    return {d.dimension: {b.value: (b.segment_count, b.population_count) for b in d.buckets}
            for d in insight.distributions}


def test_preview_binds_the_instant_and_the_page_size(kept):
    core, users, built = kept
    rule = parse_rule(RECENT_GOLD)
    assert core.preview(rule, 10, NOW) == page(users, 1, 3)
    # Users 5 and 7 visited in the three days before NOW - 4 days.
    assert core.preview(rule, 10, NOW - 4 * DAY) == page(users, 5, 7)
    assert core.preview(rule, 1, NOW - 4 * DAY) == page(users, 5)
    assert core.preview(rule, 10, NOW) == page(users, 1, 3)
    assert built == ["PreviewPage"]
    assert compiled_once(core)


def test_insight_binds_the_instant_and_the_bounds(kept):
    core, _, built = kept
    rule = parse_rule("count(visit, 3d) >= 1")
    first = core.insight(rule, ["level", "churn"], {"churn": [0.5]}, 5, True, False, NOW)
    assert (first.segment_size, first.population_size) == (3, 10)
    dims = by_dimension(first)
    assert dims["attribute:level"] == {"gold": (2, 5), "silver": (1, 5)}
    assert dims["score:churn"] == {"< 0.5": (3, 4), ">= 0.5": (0, 6)}
    assert dims["tags"] == {"promo": (3, 4)}
    assert dims["rfm_group"] == {"champions": (3, 3), "hibernating": (0, 7)}
    kinds = sorted(built)
    assert kinds == ["Count", "Grouped", "Grouped", "Grouped", "Population", "Ranged"]

    # Two days later only user 1 visited in the window, and the tags of users 1 and 2 are
    # gone: the same statements answer with the new instant bound.
    later = core.insight(rule, ["level", "churn"], {"churn": [0.3]}, 5, True, False,
                         NOW + 2 * DAY)
    assert (later.segment_size, later.population_size) == (1, 10)
    dims = by_dimension(later)
    assert dims["attribute:level"] == {"gold": (1, 5), "silver": (0, 5)}
    assert dims["score:churn"] == {"< 0.3": (1, 2), ">= 0.3": (0, 8)}
    assert dims["tags"] == {"promo": (0, 2)}
    assert sorted(built) == kinds
    # Bounds taken from the data (min and max) and a top of one: bound, not built again.
    top = by_dimension(core.insight(rule, ["level", "churn"], None, 1, False, False, NOW))
    assert top["attribute:level"] == {"gold": (2, 5)}
    assert sum(s for s, _ in top["score:churn"].values()) == 3
    assert len(top["score:churn"]) == 10
    assert sorted(built) == sorted([*kinds, "Extent", "Ranged"])
    assert compiled_once(core)


def test_recheck_binds_the_ids_and_the_instant(kept, redis_url):
    core, users, built = kept
    client = redis.Redis.from_url(redis_url)
    try:
        segment = core.create("Recent", parse_rule("count(visit, 3d) >= 1"), realtime=True)
        live = RealtimeMembership(core, client, segments_ttl_s=0)
        assert live.initialize(segment.id, NOW) == 3
        key = members_key(segment.id)
        # Two days on, users 2 and 3 no longer visited in the window.
        changes = live.recheck([users[i] for i in (1, 2, 3, 4)], NOW + 2 * DAY)
        assert {(int(c["user_id"]), c["change"]) for c in changes} == {
            (users[2], "left"), (users[3], "left")}
        assert {int(m) for m in client.smembers(key)} == {users[1]}
        # Four days back, users 5 and 6 had; other ids, same statement.
        changes = live.recheck([users[5], users[6], users[9]], NOW - 4 * DAY)
        assert {(c["external_id"], c["change"]) for c in changes} == {
            ("u5", "entered"), ("u6", "entered")}
        assert built == ["Ids", "IdsAmong"]
        rule = parse_rule(RECENT_GOLD)
        assert core.among(rule, list(users.values()), NOW) == {users[1], users[3]}
        assert core.among(rule, [users[3], users[5]], NOW - 4 * DAY) == {users[5]}
        assert built == ["Ids", "IdsAmong", "IdsAmong"]
        assert compiled_once(core)
    finally:
        client.close()


def test_a_catalogue_change_rebuilds_every_path(kept, store_engine):
    core, users, built = kept
    rule = parse_rule("churn > 0.75")
    everyone = list(users.values())
    # "churn" is a model's score: users 8, 9 and 10.
    assert core.preview(rule, 10, NOW) == page(users, 8, 9, 10)
    assert core.among(rule, everyone, NOW) == {users[8], users[9], users[10]}
    assert core.insight(rule, [], None, 0, False, False, NOW).segment_size == 3
    first = len(built)
    # Declaring an attribute of that name makes the rule read the attribute instead.
    with store_engine.begin() as connection:
        connection.execute(insert(pt.attribute_catalog), [{
            "name": "churn", "value_type": "number", "description": "", "pii": False,
            "created_ms": 0}])
        connection.execute(insert(pt.profile_attributes), [
            {"user_id": users[i], "name": "churn", "num_value": 0.9} for i in (1, 2)])
    assert core.preview(rule, 10, NOW) == page(users, 1, 2)
    assert core.among(rule, everyone, NOW) == {users[1], users[2]}
    assert core.insight(rule, [], None, 0, False, False, NOW).segment_size == 2
    assert sorted(built[first:]) == sorted(built[:first]) == [
        "Count", "IdsAmong", "Population", "PreviewPage"]


def test_a_referenced_rule_change_rebuilds_every_path(kept):
    core, users, built = kept
    gold = core.create("Gold", parse_rule('level = "gold"'))
    rule = parse_rule(f"in_segment({gold.id}) and count(visit, 5d) >= 1")
    everyone = list(users.values())
    assert core.preview(rule, 10, NOW) == page(users, 1, 3, 5)
    assert core.among(rule, everyone, NOW) == {users[1], users[3], users[5]}
    assert core.insight(rule, ["level"], None, 5, False, False, NOW).segment_size == 3
    first = len(built)
    core.update(gold.id, {"rule": parse_rule('level = "silver"')})
    assert core.preview(rule, 10, NOW) == page(users, 2, 4)
    assert core.among(rule, everyone, NOW) == {users[2], users[4]}
    silver = core.insight(rule, ["level"], None, 5, False, False, NOW)
    assert silver.segment_size == 2
    assert by_dimension(silver)["attribute:level"] == {"silver": (2, 5), "gold": (0, 5)}
    # Everything built around the rule again (level and tags grouped); the population
    # count reads no rule.
    assert sorted(built[first:]) == ["Count", "Grouped", "Grouped", "IdsAmong", "PreviewPage"]
