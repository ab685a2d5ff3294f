"""Segments as resources: CRUD, estimates, snapshots, streaming, membership, diffs, schedules."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, insert, select

from services.common import profile_tables as pt
from services.common.db import migrate
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from services.segment.catalog import CatalogCache
from services.segment.core import DAY_MS, SegmentCore, next_refresh
from services.segment.tables import snapshots
from services.segment.text import parse_rule
from tests.segment.conftest import DAY, NOW, Population


class Clock:
    def __init__(self, ms: int):
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
def world(tmp_path, sqlite_engine):
    pop = Population()
    for i in range(1, 61):
        uid = pop.user(f"user-{i}", age=i)
        if i % 2 == 0:
            pop.event(uid, "purchase", NOW - i * DAY, value=float(i))
    pop.write(sqlite_engine)
    url = f"sqlite:///{tmp_path}/segment.db"
    migrate("segment", url)
    clock = Clock(NOW)
    core = SegmentCore(create_engine(url), sqlite_engine, CatalogCache(sqlite_engine, 0), clock)
    return core, clock, pop


def test_create_get_list_update_delete(world):
    core, clock, _ = world
    adults = core.create("Adults", parse_rule("age >= 18"), description="grown-ups",
                         refresh_every_minutes=60)
    assert adults.name == f"segments/{adults.id}"
    assert adults.rule_text == "age >= 18" and adults.revision == 1
    assert adults.next_refresh_ms == NOW + 3_600_000
    buyers = core.create("Adult buyers", parse_rule(f"in_segment({adults.id}) and "
                                                    "count(purchase) >= 1"))
    assert core.get(buyers.id).rule == buyers.rule
    page, token = core.list(1, "")
    assert [s.id for s in page] == [adults.id] and token
    page, token = core.list(1, token)
    assert [s.id for s in page] == [buyers.id] and token == ""
    updated = core.update(adults.id, {"rule": parse_rule("age >= 21"), "display_name": "21+"})
    assert updated.revision == 2 and updated.rule_text == "age >= 21"
    with pytest.raises(Aborted):
        core.update(adults.id, {"description": "x"}, expected_revision=1)
    with pytest.raises(FailedPrecondition) as refused:
        core.delete(adults.id)
    assert refused.value.violations[0][1] == f"segments/{buyers.id}"
    with pytest.raises(InvalidArgument) as cycle:
        core.update(adults.id, {"rule": parse_rule(f"in_segment({buyers.id})")})
    assert cycle.value.violations[0][0] == "segment.rule.segment.segment"
    core.delete(buyers.id)
    core.delete(adults.id)
    with pytest.raises(NotFound):
        core.get(adults.id)


def test_invalid_segments_name_fields(world):
    core, _, _ = world
    with pytest.raises(InvalidArgument) as caught:
        core.create("x", parse_rule("nope > 1 and age >= 1"))
    assert caught.value.violations[0][0] == "segment.rule.all_of.conditions[0].attribute.field"
    rule, positions = core.parse("age >= 1 and\n  count(a, 0d) > 1")
    with pytest.raises(InvalidArgument) as caught:
        core.create("x", rule, positions=positions)
    field, message = caught.value.violations[0]
    assert field == "segment.rule.all_of.conditions[1].event_aggregate.window"
    assert message.endswith("(line 2, column 3)")
    with pytest.raises(InvalidArgument) as caught:
        core.parse("age >= ")
    assert caught.value.violations[0] == ("rule_text", "line 1, column 8: expected a string, "
                                          "number, true or false, found end of rule")
    with pytest.raises(InvalidArgument):
        core.create(" ", parse_rule("age >= 1"))
    with pytest.raises(InvalidArgument) as caught:
        core.create("x", parse_rule("age >= 1"), refresh_every_minutes=0)
    assert caught.value.violations[0][0] == "segment.refresh_every_minutes"


def test_estimate_preview_and_snapshots(world):
    core, clock, pop = world
    rule = parse_rule("age > 40 and count(purchase, 30d) == 0")
    # Ages 41..60; even ages bought i days ago, which is outside 30 days for all of them.
    assert core.estimate(rule) == 20
    assert [e for _, e in core.preview(rule, 3)] == ["user-41", "user-42", "user-43"]
    segment = core.create("Older, no recent purchase", rule)
    first = core.create_snapshot(segment.id)
    assert (first.version, first.size, first.as_of_ms) == (1, 20, NOW)
    clock.ms += 15 * DAY
    # Fifteen days later, with a wider age band: every purchase of users over 35 is now older
    # than 30 days, so users 36..40 enter and nobody leaves.
    core.update(segment.id, {"rule": parse_rule("age > 35 and count(purchase, 30d) == 0")})
    second = core.create_snapshot(segment.id)
    assert second.version == 2
    expected = {f"user-{i}" for i in range(36, 61)}
    streamed = []
    for snapshot, batch in core.stream_members(segment.id, 2, batch_size=7):
        assert snapshot.version == 2 and len(batch) <= 7
        streamed.extend(e for _, e in batch)
    assert set(streamed) == expected and len(streamed) == len(expected) == second.size
    assert streamed == sorted(streamed, key=lambda e: int(e.split("-")[1]))
    _, uid, member = core.check_membership(segment.id, "user-38")
    assert member and uid == pop.ids["user-38"]
    assert core.check_membership(segment.id, "user-38", 1)[2] is False
    assert core.check_membership(segment.id, "nobody")[1:] == (None, False)
    old, new, diff = core.compare(segment.id, 1, None)
    assert (old.version, new.version) == (1, 2)
    assert (diff.entered_count, diff.left_count, diff.stayed_count) == (5, 0, 20)
    assert [e for _, e in diff.entered] == [f"user-{i}" for i in range(36, 41)]
    listed, token = core.list_snapshots(segment.id, 1, "")
    assert [s.version for s in listed] == [2] and token == "2"
    assert [s.version for s in core.list_snapshots(segment.id, 5, token)[0]] == [1]
    with pytest.raises(NotFound):
        core.get_snapshot(segment.id, 9)


def test_snapshots_are_compact_roaring_bitmaps(world):
    core, _, _ = world
    segment = core.create("All", parse_rule("age >= 1"))
    core.create_snapshot(segment.id)
    with core.store.engine.connect() as connection:
        blob = connection.execute(select(snapshots.c.members)).scalar_one()
    # Sixty consecutive ids compress to one run container: a few dozen bytes, not 60 x 8.
    assert len(blob) < 64


def test_scheduled_refresh(world):
    core, clock, _ = world
    hourly = core.create("Hourly", parse_rule("age >= 50"), refresh_every_minutes=60)
    daily = core.create("Daily", parse_rule("age >= 55"), refresh_daily_minute=120)
    core.create("Manual", parse_rule("age >= 1"))
    assert core.refresh_due() == []
    clock.ms += 61 * 60_000
    taken = core.refresh_due()
    assert [(s.segment_id, s.trigger, s.size) for s in taken] == [(hourly.id, "scheduled", 11)]
    assert core.refresh_due() == []
    clock.ms = NOW + DAY_MS
    taken = core.refresh_due()
    assert sorted(s.segment_id for s in taken) == [hourly.id, daily.id]
    assert core.get(daily.id).next_refresh_ms == NOW + DAY_MS + 120 * 60_000
    assert next_refresh(NOW + 5, None, 0) == NOW + DAY_MS


def test_profile_store_changes_show_in_new_snapshots(world, sqlite_engine):
    core, _, pop = world
    segment = core.create("VIP", parse_rule('has_tag("vip")'))
    assert core.create_snapshot(segment.id).size == 0
    with sqlite_engine.begin() as connection:
        connection.execute(insert(pt.profile_tags), [
            dict(user_id=pop.ids["user-3"], tag="vip", expires_ms=None),
            dict(user_id=pop.ids["user-4"], tag="vip", expires_ms=NOW - 1)])
    assert core.create_snapshot(segment.id).size == 1
    assert core.check_membership(segment.id, "user-3")[2]


def test_replica_stops_serving_snapshots_of_a_segment_deleted_elsewhere(world, sqlite_engine):
    core, clock, _ = world
    replica = SegmentCore(core.store.engine, sqlite_engine, CatalogCache(sqlite_engine, 0),
                          clock, cache_ttl_s=0.0)
    segment = core.create("Buyers", parse_rule("count(purchase) >= 1"))
    snapshot = core.create_snapshot(segment.id)
    _, members = replica.bitmap(segment.id, snapshot.version)
    assert len(members) == 30
    assert replica.check_membership(segment.id, "user-2", snapshot.version)[2]
    core.delete(segment.id)
    # The replica's decoded copy is revalidated against the store, which no longer has it.
    with pytest.raises(NotFound):
        replica.bitmap(segment.id, snapshot.version)
    with pytest.raises(NotFound):
        replica.check_membership(segment.id, "user-2", snapshot.version)


def test_a_field_declared_after_the_catalogue_was_cached_is_usable_at_once(tmp_path,
                                                                           sqlite_engine):
    Population().write(sqlite_engine)
    url = f"sqlite:///{tmp_path}/segment.db"
    migrate("segment", url)
    catalog = CatalogCache(sqlite_engine, ttl_s=3600, refresh_min_age_s=0)
    core = SegmentCore(create_engine(url), sqlite_engine, catalog, Clock(NOW))
    assert core.violations(parse_rule('tier = "gold"'))  # unknown: not catalogued yet
    assert core.violations(parse_rule("score.churn_risk >= 0.7"))
    with sqlite_engine.begin() as conn:
        conn.execute(insert(pt.attribute_catalog).values(name="tier", value_type="string",
                                                         created_ms=NOW))
        conn.execute(insert(pt.scores).values(user_id=1, model_name="churn_risk", score=0.9,
                                              model_version="1", scored_ms=NOW))
    # The hour-long cache would still say no; a miss reloads the catalogue once.
    assert core.violations(parse_rule('tier = "gold"')) == []
    assert core.violations(parse_rule("score.churn_risk >= 0.7")) == []
    assert core.violations(parse_rule('tierr = "gold"'))  # still refused when really unknown
