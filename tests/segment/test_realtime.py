"""Real-time membership against a real Redis: events in, entered/left out."""

from __future__ import annotations

import threading

import pytest
import redis
from sqlalchemy import create_engine, delete, insert, update

from services.common import profile_tables as pt
from services.common.db import migrate
from services.segment.catalog import CatalogCache
from services.segment.core import SegmentCore
from services.segment.realtime import (
    CHANGES_STREAM,
    EVENTS_STREAM,
    MEMBERSHIP_STREAM,
    RealtimeMembership,
    members_key,
    reconcile_lock_key,
)
from services.segment.text import parse_rule
from tests.segment.conftest import DAY, NOW, Population


class Clock:
    def __init__(self, ms):
        self.ms = ms

    def __call__(self):
        return self.ms / 1000


@pytest.fixture
def live(tmp_path, sqlite_engine, redis_url):
    pop = Population()
    for i in range(1, 11):
        pop.user(f"u{i}", age=20 + i)
    pop.event(pop.ids["u1"], "add_to_cart", NOW - DAY)
    pop.event(pop.ids["u1"], "add_to_cart", NOW - DAY)
    pop.write(sqlite_engine)
    url = f"sqlite:///{tmp_path}/segment.db"
    migrate("segment", url)
    clock = Clock(NOW)
    core = SegmentCore(create_engine(url), sqlite_engine, CatalogCache(sqlite_engine, 0), clock)
    client = redis.Redis.from_url(redis_url)
    rt = RealtimeMembership(core, client, segments_ttl_s=0)
    rt.ensure_group()
    yield core, rt, client, pop, sqlite_engine, clock
    client.close()


def add_events(engine, client, rows):
    """Writes events as the profile service does: the store first, then the stream."""
    with engine.begin() as connection:
        connection.execute(insert(pt.events), rows)
    pipe = client.pipeline()
    for row in rows:
        pipe.xadd(EVENTS_STREAM, {"event_id": row["event_id"], "user_id": row["user_id"],
                                  "external_id": "", "event_type": row["event_type"],
                                  "ts_ms": row["ts_ms"], "properties": "{}"})
    pipe.execute()


def changes(client):
    return [(f[b"segment_id"].decode(), f[b"external_id"].decode(), f[b"change"].decode())
            for _, f in client.xrange(MEMBERSHIP_STREAM)]


def test_events_move_users_in_and_out(live):
    core, rt, client, pop, engine, clock = live
    cart = core.create("Cart, no order", parse_rule(
        "count(add_to_cart, 7d) >= 2 and count(order, 7d) == 0"), realtime=True)
    older = core.create("Older", parse_rule("age >= 28"), realtime=True)
    core.create("Not real-time", parse_rule("count(add_to_cart) >= 1"))
    assert rt.initialize(cart.id) == 1
    assert rt.initialize(older.id) == 3
    sid = str(cart.id)
    add_events(engine, client, [
        dict(id=100, event_id="a", user_id=pop.ids["u2"], event_type="add_to_cart",
             ts_ms=NOW - 10, value=None, properties=None),
        dict(id=101, event_id="b", user_id=pop.ids["u2"], event_type="add_to_cart",
             ts_ms=NOW - 5, value=None, properties=None),
        dict(id=102, event_id="c", user_id=pop.ids["u1"], event_type="order",
             ts_ms=NOW - 1, value=9.0, properties=None),
        dict(id=103, event_id="d", user_id=pop.ids["u3"], event_type="add_to_cart",
             ts_ms=NOW - 1, value=None, properties=None),
    ])
    assert rt.poll_once(block_ms=100) == 4
    assert sorted(changes(client)) == [(sid, "u1", "left"), (sid, "u2", "entered")]
    members = {int(m) for m in client.smembers(members_key(cart.id))}
    assert members == {pop.ids["u2"]}
    # Everything read was acknowledged, and a poll with nothing new publishes nothing.
    assert client.xpending(EVENTS_STREAM, "segment")["pending"] == 0
    assert rt.poll_once(block_ms=50) == 0
    assert len(changes(client)) == 2


def test_snapshot_reconciles_users_a_window_passed_by(live):
    core, rt, client, pop, engine, clock = live
    cart = core.create("Cart", parse_rule("count(add_to_cart, 7d) >= 2"), realtime=True)
    rt.initialize(cart.id)
    core.snapshot_listeners.append(lambda seg, members, now: rt.reconcile(seg.id, members, now))
    clock.ms += 7 * DAY
    assert core.create_snapshot(cart.id).size == 0
    assert changes(client) == [(str(cart.id), "u1", "left")]


def test_unprocessed_events_survive_a_crash(live):
    core, rt, client, pop, engine, clock = live
    segment = core.create("Any order", parse_rule("count(order) >= 1"), realtime=True)
    rt.initialize(segment.id)
    add_events(engine, client, [dict(id=200, event_id="x", user_id=pop.ids["u5"],
                                     event_type="order", ts_ms=NOW - 1, value=1.0,
                                     properties=None)])
    # A consumer reads the batch and dies before acknowledging it.
    client.xreadgroup("segment", "segment-1", {EVENTS_STREAM: ">"}, count=10)
    restarted = RealtimeMembership(core, client, consumer="segment-1", segments_ttl_s=0)
    assert restarted.poll_once(block_ms=50) == 1
    assert changes(client) == [(str(segment.id), "u5", "entered")]


def test_segments_are_read_on_first_use_whatever_their_ttl(live):
    core, _, client, *_ = live
    older = core.create("Older", parse_rule("age >= 28"), realtime=True)
    # A time to live longer than the machine has been up (the monotonic clock's age).
    patient = RealtimeMembership(core, client, segments_ttl_s=10**9)
    assert [sid for sid, _ in patient.segments()] == [older.id]
    newer = core.create("Younger", parse_rule("age < 28"), realtime=True)
    assert [sid for sid, _ in patient.segments()] == [older.id]
    patient.forget_segments()
    assert [sid for sid, _ in patient.segments()] == [older.id, newer.id]


def change_attribute(engine, client, user_id: int, name: str, value: float) -> None:
    """Changes an attribute as the profile service does: the store, then ``profile:changes``."""
    with engine.begin() as connection:
        connection.execute(update(pt.profile_attributes)
                           .where(pt.profile_attributes.c.user_id == user_id,
                                  pt.profile_attributes.c.name == name)
                           .values(num_value=value))
    client.xadd(CHANGES_STREAM, {"user_id": user_id, "external_id": "",
                                 "kinds": "attributes", "ts_ms": NOW})


def test_profile_changes_move_users_without_an_event(live):
    # "age >= 28" changes only with the profile: an event-only consumer never sees it.
    core, rt, client, pop, engine, clock = live
    older = core.create("Older", parse_rule("age >= 28"), realtime=True)
    assert rt.initialize(older.id) == 3  # u8, u9, u10
    change_attribute(engine, client, pop.ids["u2"], "age", 40)
    change_attribute(engine, client, pop.ids["u9"], "age", 19)
    add_events(engine, client, [dict(id=300, event_id="v", user_id=pop.ids["u3"],
                                     event_type="visit", ts_ms=NOW - 1, value=None,
                                     properties=None)])
    assert rt.poll_once(block_ms=100) == 3  # both streams in one batch
    sid = str(older.id)
    assert sorted(changes(client)) == [(sid, "u2", "entered"), (sid, "u9", "left")]
    assert {int(m) for m in client.smembers(members_key(older.id))} == {
        pop.ids["u2"], pop.ids["u8"], pop.ids["u10"]}
    assert client.xpending(CHANGES_STREAM, "segment")["pending"] == 0
    assert client.xpending(EVENTS_STREAM, "segment")["pending"] == 0


def test_unprocessed_profile_changes_survive_a_crash(live):
    core, rt, client, pop, engine, clock = live
    older = core.create("Older", parse_rule("age >= 28"), realtime=True)
    rt.initialize(older.id)
    change_attribute(engine, client, pop.ids["u4"], "age", 50)
    # A consumer reads the change and dies before acknowledging it.
    client.xreadgroup("segment", "segment-1", {CHANGES_STREAM: ">"}, count=10)
    restarted = RealtimeMembership(core, client, consumer="segment-1", segments_ttl_s=0)
    assert restarted.poll_once(block_ms=50) == 1
    assert changes(client) == [(str(older.id), "u4", "entered")]


HOUR_MS = 3_600_000


def live_members(client, segment_id: int) -> set[int]:
    return {int(m) for m in client.smembers(members_key(segment_id))} - {-1}


def test_periodic_reconcile_drops_users_a_window_passed_by(live):
    # No event, no profile change, no snapshot: only the clock moves.
    core, rt, client, pop, _, clock = live
    cart = core.create("Cart", parse_rule("count(add_to_cart, 7d) >= 2"), realtime=True)
    assert rt.initialize(cart.id) == 1
    assert rt.reconcile_due(HOUR_MS) == {cart.id: []}
    clock.ms += 7 * DAY
    assert rt.reconcile_due(HOUR_MS) == {cart.id: [
        {"segment": f"segments/{cart.id}", "segment_id": str(cart.id),
         "user_id": str(pop.ids["u1"]), "external_id": "u1", "change": "left",
         "ts_ms": str(clock.ms)}]}
    assert changes(client) == [(str(cart.id), "u1", "left")]
    assert live_members(client, cart.id) == set()
    # The emptied set still answers membership checks (no fall back to a snapshot).
    assert rt.check(cart.id, "u1") == (pop.ids["u1"], False)


def test_periodic_reconcile_drops_users_whose_tag_lapsed(live):
    core, rt, client, pop, engine, clock = live
    with engine.begin() as connection:
        connection.execute(insert(pt.profile_tags), [
            dict(user_id=pop.ids["u3"], tag="vip", expires_ms=NOW + DAY),
            dict(user_id=pop.ids["u4"], tag="vip", expires_ms=None)])
    vip = core.create("VIP", parse_rule('has_tag("vip")'), realtime=True)
    assert rt.initialize(vip.id) == 2
    clock.ms += DAY
    assert [e["external_id"] for e in rt.reconcile_due(HOUR_MS)[vip.id]] == ["u3"]
    assert changes(client) == [(str(vip.id), "u3", "left")]
    assert live_members(client, vip.id) == {pop.ids["u4"]}
    assert rt.check(vip.id, "u3") == (pop.ids["u3"], False)


def test_one_replica_reconciles_a_segment_per_period(live):
    core, rt, client, pop, engine, clock = live
    # u1's carts leave the 7-day window at NOW + 6d, u2's half an hour later.
    with engine.begin() as connection:
        connection.execute(insert(pt.events), [
            dict(id=400 + i, event_id=f"r{i}", user_id=pop.ids["u2"], event_type="add_to_cart",
                 ts_ms=NOW - DAY + 30 * 60_000, value=None, properties=None) for i in range(2)])
    cart = core.create("Cart", parse_rule("count(add_to_cart, 7d) >= 2"), realtime=True)
    assert rt.initialize(cart.id) == 2
    other = RealtimeMembership(core, client, consumer="segment-2", segments_ttl_s=0)
    sid = str(cart.id)
    clock.ms = NOW + 6 * DAY + 10 * 60_000
    assert list(rt.reconcile_due(HOUR_MS)) == [cart.id]
    assert changes(client) == [(sid, "u1", "left")]
    # Later in the same period u2's window has passed too, but the period's lock is taken.
    clock.ms = NOW + 6 * DAY + 40 * 60_000
    assert other.reconcile_due(HOUR_MS) == {}
    assert live_members(client, cart.id) == {pop.ids["u2"]}
    assert 0 < client.pttl(f"segment:{{s{cart.id}}}:reconcile:{clock.ms // HOUR_MS}") <= HOUR_MS
    # The next period is free for whichever replica comes first.
    clock.ms = NOW + 6 * DAY + 70 * 60_000
    assert list(other.reconcile_due(HOUR_MS)) == [cart.id]
    assert rt.reconcile_due(HOUR_MS) == {}
    assert changes(client) == [(sid, "u1", "left"), (sid, "u2", "left")]
    assert live_members(client, cart.id) == set()


def test_periodic_reconcile_loads_a_set_that_is_not_loaded_without_publishing(live):
    core, rt, client, pop, *_ = live
    cart = core.create("Cart", parse_rule("count(add_to_cart, 7d) >= 2"), realtime=True)
    assert rt.reconcile_due(HOUR_MS) == {cart.id: []}
    assert live_members(client, cart.id) == {pop.ids["u1"]}
    assert changes(client) == []


def test_reconcile_loop_runs_in_the_background_until_stopped(live):
    core, rt, client, _, _, clock = live
    cart = core.create("Cart", parse_rule("count(add_to_cart, 7d) >= 2"), realtime=True)
    rt.initialize(cart.id)
    clock.ms += 7 * DAY
    stop = threading.Event()
    worker = threading.Thread(target=rt.run_reconciler, args=(stop, 3600.0), daemon=True)
    worker.start()
    try:
        for _ in range(500):
            if changes(client):
                break
            stop.wait(0.01)
        assert changes(client) == [(str(cart.id), "u1", "left")]
    finally:
        stop.set()
        worker.join(timeout=5)
    assert not worker.is_alive()


def test_an_event_that_takes_the_last_member_out_keeps_the_live_set_loaded(live):
    core, rt, client, pop, engine, clock = live
    cart = core.create("Cart, no order", parse_rule(
        "count(add_to_cart, 7d) >= 2 and count(order, 7d) == 0"), realtime=True)
    assert rt.initialize(cart.id) == 1  # u1
    add_events(engine, client, [dict(id=400, event_id="o1", user_id=pop.ids["u1"],
                                     event_type="order", ts_ms=NOW - 1, value=5.0,
                                     properties=None)])
    assert rt.poll_once(block_ms=100) == 1
    assert changes(client) == [(str(cart.id), "u1", "left")]
    assert client.exists(members_key(cart.id))
    assert rt.check(cart.id, "u1") == (pop.ids["u1"], False)  # answered live, not None


def test_a_reconcile_does_not_undo_a_newer_re_check(live):
    # The full evaluation ran before u2's second cart add; the event's re-check then put u2
    # in the live set. The reconcile's older result must not take u2 out again.
    core, rt, client, pop, engine, clock = live
    rule = parse_rule("count(add_to_cart, 7d) >= 2")
    cart = core.create("Cart", rule, realtime=True)
    rt.initialize(cart.id)
    evaluated = core.evaluate(rule, clock.ms)  # u1 only
    add_events(engine, client, [
        dict(id=500 + k, event_id=f"late-{k}", user_id=pop.ids["u2"], event_type="add_to_cart",
             ts_ms=NOW - 1, value=None, properties=None) for k in range(2)])
    assert rt.poll_once(block_ms=100) == 2
    assert changes(client) == [(str(cart.id), "u2", "entered")]
    assert rt.reconcile(cart.id, evaluated, clock.ms, rule) == []
    assert live_members(client, cart.id) == {pop.ids["u1"], pop.ids["u2"]}
    assert changes(client) == [(str(cart.id), "u2", "entered")]


def test_one_failing_segment_does_not_hold_back_the_others(live):
    # A rule whose field has left the catalogue fails on every pass; the segments after it
    # are still reconciled.
    core, rt, client, pop, engine, clock = live
    broken = core.create("Older", parse_rule("age >= 28"), realtime=True)
    cart = core.create("Cart", parse_rule("count(add_to_cart, 7d) >= 2"), realtime=True)
    rt.initialize(broken.id), rt.initialize(cart.id)
    with engine.begin() as connection:
        connection.execute(delete(pt.attribute_catalog).where(pt.attribute_catalog.c.name == "age"))
    clock.ms += 7 * DAY
    assert set(rt.reconcile_due(HOUR_MS)) == {cart.id}
    assert changes(client) == [(str(cart.id), "u1", "left")]
    # The failed segment's lock was given back: it is tried again within the period.
    assert not client.exists(reconcile_lock_key(broken.id, clock.ms // HOUR_MS))


def test_one_failing_segment_does_not_stop_the_others_following_events(live):
    # An event batch is re-checked against every real-time segment; one whose field has left
    # the catalogue must not block the batch (and so the whole consumer) for the others.
    core, rt, client, pop, engine, clock = live
    broken = core.create("Older", parse_rule("age >= 28"), realtime=True)
    cart = core.create("Cart, no order", parse_rule(
        "count(add_to_cart, 7d) >= 2 and count(order, 7d) == 0"), realtime=True)
    rt.initialize(broken.id), rt.initialize(cart.id)
    with engine.begin() as connection:
        connection.execute(delete(pt.attribute_catalog).where(pt.attribute_catalog.c.name == "age"))
    add_events(engine, client, [dict(id=600, event_id="o-1", user_id=pop.ids["u1"],
                                     event_type="order", ts_ms=NOW - 1, value=5.0,
                                     properties=None)])
    assert rt.poll_once(block_ms=100) == 1
    assert changes(client) == [(str(cart.id), "u1", "left")]
    assert client.xpending(EVENTS_STREAM, "segment")["pending"] == 0
