"""Fan-out: guards in order with reasons, quiet hours, caps, priority, retries, fail-closed."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from sqlalchemy import select, update

from services.common import profile_tables as pt
from services.common.errors import Unavailable
from services.delivery import caps as caps_mod
from services.delivery import model
from services.delivery.gateways import RETRY, RecordingSink, Router, SendResult
from services.delivery.tables import sends, sink_messages
from tests.delivery.conftest import (
    DAY,
    Clock,
    approved_plan,
    build_core,
    make_profiles,
    spec,
    touch,
)

PUSH_TWICE_A_DAY = (caps_mod.CapRule("push_per_day", 2, "day", channels=("push",)),
                    caps_mod.CapRule("marketing_per_week", 5, "rolling", seconds=7 * 86_400))


def ledger(core, plan_id):
    with core.store.engine.connect() as conn:
        return {r.user_id: r for r in conn.execute(select(sends).where(sends.c.plan_id == plan_id))}


def sink(core):
    with core.store.engine.connect() as conn:
        return conn.execute(select(sink_messages)).all()


@pytest.fixture
def population(profile_url):
    users = [
        {"consents": {"push": True}, "attrs": {"first_name": "Ann"}},          # 1 sent
        {"consents": {"push": False}},                                          # 2 unsubscribed
        {"consents": {"push": True}, "notifications_disabled": True},           # 3 flags
        {"consents": {"push": True}, "app_uninstalled": True},                  # 4 uninstalled
        {"consents": {"push": True}, "time_zone": "Asia/Tokyo",                 # 5 quiet hours
         "quiet_start": 22 * 60, "quiet_end": 8 * 60},
        {},                                                                     # 6 no record: push ok
    ]
    return make_profiles(profile_url, users)


def utc_ms(*args):
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


def test_guards_in_order_with_reasons_and_quiet_hour_deferral(sqlite_url, redis_url, population):
    # 14:30 UTC is 23:30 in Tokyo: user 5 is inside quiet hours until 08:00 local.
    clock = Clock(utc_ms(2025, 3, 3, 14, 30))
    core = build_core(sqlite_url, redis_url, population, {"everyone": range(1, 7)},
                      rules=PUSH_TWICE_A_DAY, clock=clock)
    plan = approved_plan(core, spec(start_ms=clock.ms - DAY, end_ms=clock.ms + 30 * DAY))
    funnel = core.run_due(plan_id=plan.id)
    rows = ledger(core, plan.id)
    assert {u: (r.status, r.reason) for u, r in rows.items()} == {
        1: ("sent", None), 2: ("suppressed", "unsubscribed"),
        3: ("suppressed", "notifications_disabled"), 4: ("suppressed", "app_uninstalled"),
        5: ("deferred", "quiet_hours"), 6: ("sent", None),
    }
    assert funnel.sent == 2 and funnel.deferred == {"quiet_hours": 1}
    tokyo_8am = dt.datetime(2025, 3, 4, 8, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert rows[5].not_before_ms == int(tokyo_8am.timestamp() * 1000)
    assert {m.recipient: m.body for m in sink(core)} == {"u1": "Hi Ann!", "u6": "Hi there!"}
    clock.ms = rows[5].not_before_ms - 60_000
    assert core.run_due(plan_id=plan.id).sent == 0
    clock.ms = rows[5].not_before_ms
    assert core.run_due(plan_id=plan.id).sent == 1
    assert ledger(core, plan.id)[5].status == "sent"
    assert core.get_plan(plan.id).state == model.State.COMPLETED


def test_caps_per_channel_and_transactional_exemption(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(5)])
    core = build_core(sqlite_url, redis_url, profiles, {"everyone": range(1, 6)},
                      rules=PUSH_TWICE_A_DAY)
    results = []
    for i in range(3):
        plan = approved_plan(core, spec(display_name=f"p{i}"))
        results.append(core.run_due(plan_id=plan.id))
    assert [f.sent for f in results] == [5, 5, 0]
    assert results[2].removed == {"frequency_cap": 5}
    assert {r.reason for r in ledger(core, plan.id).values()} == {"frequency_cap:push_per_day"}
    otp = approved_plan(core, spec(category="transactional", display_name="otp"))
    assert core.run_due(plan_id=otp.id).sent == 5


def test_week_cap_counts_across_channels(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True, "sms": True,
                                                         "in_app": True}}])
    rules = (caps_mod.CapRule("all_per_week", 2, "week"),)
    core = build_core(sqlite_url, redis_url, profiles, {"everyone": [1]}, rules=rules)
    sent = [core.run_due(plan_id=approved_plan(
        core, spec(touches=[touch(channel=ch, title="" if ch == "sms" else "T")],
                   display_name=ch)).id).sent for ch in ("push", "sms", "in_app")]
    assert sent == [1, 1, 0]


def test_priority_reserves_capacity_for_a_later_higher_priority_touch(
        sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(4)])
    rules = (caps_mod.CapRule("push_per_day", 1, "day", channels=("push",)),)
    clock = Clock(utc_ms(2025, 3, 3, 9, 0))
    core = build_core(sqlite_url, redis_url, profiles, {"vip": [1, 2], "everyone": range(1, 5)},
                      rules=rules, clock=clock)
    window = dict(start_ms=clock.ms - DAY, end_ms=clock.ms + 10 * DAY)
    later = clock.ms + 6 * 3_600_000  # 15:00 the same day
    high = approved_plan(core, spec(priority=90, display_name="vip", touches=[touch(
        segment="vip", schedule=model.Schedule(kind="at", at_ms=later))], **window))
    low = approved_plan(core, spec(priority=10, display_name="mass", **window))
    funnel = core.run_due(plan_id=low.id)
    assert funnel.sent == 2 and funnel.removed == {"outranked": 2}
    assert {u: r.reason for u, r in ledger(core, low.id).items()} == {
        1: "outranked", 2: "outranked", 3: None, 4: None}
    clock.ms = later
    assert core.run_due(plan_id=high.id).sent == 2
    # Without the reservation the low plan would have taken the slot first.
    assert {m.recipient for m in sink(core)} == {"u1", "u2", "u3", "u4"}


def test_unsubscribe_mid_fan_out_stops_the_remaining_sends(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(30)])
    holder = {}

    class UnsubscribingSink(RecordingSink):
        def send(self, messages):
            with profiles.begin() as conn:  # user 25 unsubscribes while batch 1 is sent
                conn.execute(update(pt.consents).where(pt.consents.c.user_id == 25)
                             .values(subscribed=False))
            return super().send(messages)

    core = build_core(sqlite_url, redis_url, profiles, {"everyone": range(1, 31)},
                      batch_size=10, router=Router({}, None))
    core.router.default = UnsubscribingSink(core.store)
    holder["core"] = core
    plan = approved_plan(core, spec())
    core.run_due(plan_id=plan.id)
    rows = ledger(core, plan.id)
    assert rows[25].status == "suppressed" and rows[25].reason == "unsubscribed"
    assert sum(r.status == "sent" for r in rows.values()) == 29


def test_gateway_failures_retry_with_backoff_then_dead_letter(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(3)])
    calls = []

    class FlakyGateway:
        def send(self, messages):
            calls.append(len(messages))
            return [SendResult(m.idempotency_key, RETRY, "vendor 503") for m in messages]

    clock = Clock()
    core = build_core(sqlite_url, redis_url, profiles, {"everyone": [1, 2, 3]}, clock=clock,
                      router=Router({"push": FlakyGateway()}), max_attempts=3,
                      retry_backoff_ms=1000, rules=PUSH_TWICE_A_DAY)
    plan = approved_plan(core, spec())
    core.run_due(plan_id=plan.id)
    row = ledger(core, plan.id)[1]
    assert (row.status, row.attempts, row.not_before_ms) == ("retry", 1, clock.ms + 1000)
    key = core.caps.key_for(PUSH_TWICE_A_DAY[0], 1, "UTC", clock.ms)[0]
    assert core.caps.redis.zcard(key) == 1  # the slot is held while retrying
    clock.advance(999)
    core.run_due(plan_id=plan.id)
    assert len(calls) == 1
    clock.advance(1)
    core.run_due(plan_id=plan.id)
    assert ledger(core, plan.id)[1].not_before_ms == clock.ms + 2000
    clock.advance(2000)
    core.run_due(plan_id=plan.id)
    rows = ledger(core, plan.id)
    assert {(r.status, r.attempts, r.reason) for r in rows.values()} == {("dead", 3, "vendor 503")}
    assert core.caps.redis.zcard(key) == 0  # dead letters give their slot back
    assert calls == [3, 3, 3]


def test_fail_closed_while_caps_are_missing_then_rebuilt_from_ledger(
        sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(4)])
    core = build_core(sqlite_url, redis_url, profiles, {"everyone": range(1, 5)},
                      rules=PUSH_TWICE_A_DAY)
    first = approved_plan(core, spec(display_name="first"))
    assert core.run_due(plan_id=first.id).sent == 4
    # Redis loses everything: counters and the ready marker.
    for key in core.caps.redis.scan_iter(match="delivery:*"):
        core.caps.redis.delete(key)
    second = approved_plan(core, spec(display_name="second"))
    with pytest.raises(Unavailable):
        core.run_due(plan_id=second.id)
    assert len(sink(core)) == 4
    assert {r.status for r in ledger(core, second.id).values()} == {"claimed"}
    assert core.caps.ensure_ready(core.store.engine)
    key = core.caps.key_for(PUSH_TWICE_A_DAY[0], 1, "UTC", core.clock())[0]
    assert core.caps.redis.zcard(key) == 1  # rebuilt from the ledger
    assert core.run_due(plan_id=second.id).sent == 4
    third = approved_plan(core, spec(display_name="third"))
    assert core.run_due(plan_id=third.id).removed == {"frequency_cap": 4}


def test_dry_run_funnel_counts_without_sending(sqlite_url, redis_url, population):
    clock = Clock(utc_ms(2025, 3, 3, 14, 30))
    core = build_core(sqlite_url, redis_url, population, {"everyone": range(1, 7)},
                      rules=PUSH_TWICE_A_DAY, clock=clock)
    plan = core.create_plan(spec(start_ms=clock.ms - DAY, end_ms=clock.ms + DAY), "alice")
    funnel = core.dry_run(plan.id, "t1")
    assert funnel.audience == 6
    assert funnel.removed == {"unsubscribed": 1, "notifications_disabled": 1,
                              "app_uninstalled": 1}
    assert funnel.deferred == {"quiet_hours": 1}
    assert funnel.sent == 2
    assert sink(core) == [] and ledger(core, plan.id) == {}
    assert core.dry_run(plan.id, "t1").sent == 2  # nothing was counted


def test_local_time_schedule_follows_each_users_zone(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [
        {"consents": {"push": True}, "time_zone": "Asia/Shanghai"},
        {"consents": {"push": True}, "time_zone": "America/New_York"},
    ])
    clock = Clock(utc_ms(2025, 6, 1, 0, 0))
    core = build_core(sqlite_url, redis_url, profiles, {"everyone": [1, 2]}, clock=clock)
    plan = approved_plan(core, spec(
        start_ms=clock.ms - DAY, end_ms=clock.ms + 5 * DAY,
        touches=[touch(schedule=model.Schedule(kind="at_local", local_time="2025-06-01T09:00"))]))
    clock.ms = utc_ms(2025, 6, 1, 1, 0)  # 09:00 in Shanghai, 21:00 the day before in New York
    assert core.run_due(plan_id=plan.id).sent == 1
    rows = ledger(core, plan.id)
    assert rows[2].status == "deferred" and rows[2].reason == "user_time_zone"
    assert rows[2].not_before_ms == utc_ms(2025, 6, 1, 13, 0)
    clock.ms = utc_ms(2025, 6, 1, 13, 0)
    assert core.run_due(plan_id=plan.id).sent == 1


def test_cron_schedule_creates_one_occurrence_per_instant(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}}])
    clock = Clock(utc_ms(2025, 6, 1, 0, 0))
    core = build_core(sqlite_url, redis_url, profiles, {"everyone": [1]}, clock=clock,
                      rules=(caps_mod.CapRule("push_per_day", 5, "day", channels=("push",)),))
    plan = approved_plan(core, spec(
        start_ms=clock.ms, end_ms=utc_ms(2025, 6, 3, 23, 0),
        touches=[touch(schedule=model.Schedule(kind="cron", cron="0 9 * * *",
                                               time_zone="Europe/Berlin"))]))
    sent = 0
    for hour in range(0, 72, 1):
        clock.ms = utc_ms(2025, 6, 1, 0, 0) + hour * 3_600_000
        sent += core.run_due(plan_id=plan.id).sent
    assert sent == 3
    assert core.get_plan(plan.id).state == model.State.COMPLETED
