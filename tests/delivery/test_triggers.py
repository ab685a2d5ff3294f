"""Event triggers over real Redis streams: reminders, filters, delays, segments, restarts."""

from __future__ import annotations

import json

import pytest
import redis
from sqlalchemy import select

from services.common.errors import InvalidArgument
from services.delivery.experiments import Experiments, ExperimentSpec, Variant
from services.delivery.tables import sends, sink_messages
from services.delivery.triggers import (
    B_RETENTION_MS,
    CLAIM_SCRIPT,
    DUE_KEY,
    EVENTS_STREAM,
    GROUP,
    INFLIGHT_KEY,
    MEMBERSHIP_STREAM,
    TIMERS_KEY,
    Fire,
    PropertyFilter,
    TriggeredSender,
    TriggerEngine,
    TriggerSpec,
    b_key,
    validate_trigger,
)
from tests.delivery.conftest import Clock, approved_plan, build_core, make_profiles, spec, touch

MIN = 60_000

REMINDER = TriggerSpec(kind="event_not_followed", event_type="order_submitted",
                       not_event_type="order_paid", within_s=600, correlate_on="order_id")


@pytest.fixture
def streams(redis_url):
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match="delivery:trg:*"):
        client.delete(key)
    yield client
    client.delete(EVENTS_STREAM, MEMBERSHIP_STREAM)
    client.close()


def publish(client, event_id, user_id, event_type, ts_ms, **props):
    client.xadd(EVENTS_STREAM, {"event_id": event_id, "user_id": user_id,
                                "external_id": f"u{user_id}", "event_type": event_type,
                                "ts_ms": ts_ms, "value": "", "properties": json.dumps(props)})


def world(sqlite_url, redis_url, profile_url, users=6, trigger=REMINDER, clock=None,
          profiles=None, **plan_kw):
    clock = clock or Clock()
    profiles = profiles or make_profiles(profile_url, [{"consents": {"push": True}}] * users)
    core = build_core(sqlite_url, redis_url, profiles, clock=clock)
    plan = approved_plan(core, spec([touch("remind", body="Your order is waiting",
                                           external_ids=["u1"])], **plan_kw))
    engine = start(core, redis_url, clock)
    engine.save(plan, "remind", trigger)
    return core, plan, engine, clock


def start(core, redis_url, clock, experiments=None):
    """A fresh trigger worker (what a restarted service builds)."""
    return TriggerEngine(core.store.engine, redis.Redis.from_url(redis_url),
                         TriggeredSender(core, experiments), clock=clock, claim_idle_ms=0,
                         refresh_s=0)


def sink_recipients(core):
    with core.store.engine.connect() as conn:
        return sorted(r.recipient for r in conn.execute(select(sink_messages)))


def test_ordered_but_not_paid_sends_one_reminder_across_a_restart(
        sqlite_url, redis_url, profile_url, streams):
    core, plan, engine, clock = world(sqlite_url, redis_url, profile_url)
    t0 = clock()
    for uid in range(1, 7):
        publish(streams, f"sub-{uid}", uid, "order_submitted", t0, order_id=f"o{uid}")
    engine.poll()
    assert engine.pending_timers() == 6
    clock.advance(5 * MIN)
    publish(streams, "pay-2", 2, "order_paid", t0 + 5 * MIN, order_id="o2")
    publish(streams, "pay-4", 4, "order_paid", t0 + 5 * MIN, order_id="o4")
    publish(streams, "pay-5", 5, "order_paid", t0 + 5 * MIN, order_id="another-order")
    # The worker reads the payments and dies before acknowledging them.
    engine._read(0)
    del engine

    # Restart: a new process (new core worker, new trigger worker) on the same Redis and DB.
    core2 = build_core(sqlite_url, redis_url, core.directory.engine, clock=clock)
    engine2 = start(core2, redis_url, clock)
    engine2.poll()  # reclaims the payments the dead worker left unacknowledged
    assert engine2.pending_timers() == 4
    publish(streams, "pay-6", 6, "order_paid", t0 + 9 * MIN, order_id="o6")
    publish(streams, "pay-3-late", 3, "order_paid", t0 + 11 * MIN, order_id="o3")
    clock.advance(4 * MIN)  # t0 + 9 min: nothing is due yet
    engine2.poll()
    assert engine2.fire_due().sent == 0 and sink_recipients(core2) == []
    clock.advance(MIN + 1000)  # t0 + 10 min + 1 s
    funnel = engine2.fire_due()
    assert funnel.sent == 3
    assert sink_recipients(core2) == ["u1", "u3", "u5"]
    engine2.poll()  # the late payment of user 3 cancels nothing: the reminder went out

    # The stream redelivers the orders (a republished backlog) and another worker restarts:
    # the ledger (occurrence = the order event) lets nothing through a second time.
    for uid in range(1, 7):
        publish(streams, f"sub-{uid}", uid, "order_submitted", t0, order_id=f"o{uid}")
    engine3 = start(build_core(sqlite_url, redis_url, core.directory.engine, clock=clock),
                    redis_url, clock)
    engine3.poll()
    engine3.fire_due()
    assert sink_recipients(core2) == ["u1", "u3", "u5"]
    with core2.store.engine.connect() as conn:
        rows = conn.execute(select(sends).where(sends.c.plan_id == plan.id)).all()
    assert sorted(r.user_id for r in rows) == [1, 3, 5]
    assert {r.occurrence_key for r in rows} == {"evt-sub-1", "evt-sub-3", "evt-sub-5"}
    assert engine3.pending_timers() == 0


def test_a_timer_claimed_by_a_dead_worker_fires_once_after_its_lease(
        sqlite_url, redis_url, profile_url, streams):
    core, plan, engine, clock = world(sqlite_url, redis_url, profile_url, users=2)
    publish(streams, "sub-1", 1, "order_submitted", clock(), order_id="o1")
    engine.poll()
    clock.advance(10 * MIN + 1)
    # A worker takes the due timer and dies before sending.
    taken = streams.register_script(CLAIM_SCRIPT)(keys=[DUE_KEY, INFLIGHT_KEY, TIMERS_KEY],
                                                   args=[clock(), 10, 60_000])
    assert len(taken) == 2
    assert engine.fire_due().sent == 0  # leased: nobody else fires it meanwhile
    clock.advance(61_000)
    assert engine.fire_due().sent == 1
    assert engine.fire_due().sent == 0
    assert sink_recipients(core) == ["u1"] and engine.pending_timers() == 0


def test_when_a_with_filters_delay_and_guards(sqlite_url, redis_url, profile_url, streams):
    users = [{"consents": {"push": True}}, {"consents": {"push": False}},
             {"consents": {"push": True}}]
    profiles = make_profiles(profile_url, users)
    trigger = TriggerSpec(kind="event", event_type="registered", delay_s=120,
                          filters=(PropertyFilter("source", "in", ["app", "web"]),
                                   PropertyFilter("age", "gte", 18)))
    core, plan, engine, clock = world(sqlite_url, redis_url, profile_url, trigger=trigger,
                                      profiles=profiles)
    now = clock()
    publish(streams, "r1", 1, "registered", now, source="app", age=30)
    publish(streams, "r2", 2, "registered", now, source="web", age=40)   # unsubscribed
    publish(streams, "r3", 3, "registered", now, source="shop", age=30)  # filtered out
    publish(streams, "v1", 1, "page_view", now)                          # another event
    engine.poll()
    assert engine.fire_due().sent == 0  # the delay has not passed
    clock.advance(120_000)
    funnel = engine.fire_due()
    assert funnel.sent == 1 and funnel.removed == {"unsubscribed": 1}
    assert sink_recipients(core) == ["u1"]


def test_entering_a_segment_fires_at_once(sqlite_url, redis_url, profile_url, streams):
    trigger = TriggerSpec(kind="segment_entered", segment="segments/7")
    core, plan, engine, clock = world(sqlite_url, redis_url, profile_url, users=3,
                                      trigger=trigger)
    streams.xadd(MEMBERSHIP_STREAM, {"segment": "segments/7", "user_id": 2, "change": "entered",
                                     "ts_ms": clock()})
    streams.xadd(MEMBERSHIP_STREAM, {"segment": "segments/7", "user_id": 3, "change": "left",
                                     "ts_ms": clock()})
    streams.xadd(MEMBERSHIP_STREAM, {"segment": "segments/8", "user_id": 1, "change": "entered",
                                     "ts_ms": clock()})
    assert engine.poll().sent == 1
    assert sink_recipients(core) == ["u2"]
    with pytest.raises(InvalidArgument) as err:
        engine.save(plan, "remind", TriggerSpec(kind="segment_entered"))
    assert err.value.violations == [("trigger.segment",
                                      "is required for a segment_entered trigger")]


def test_unapproved_or_paused_plans_send_nothing(sqlite_url, redis_url, profile_url, streams):
    core, plan, engine, clock = world(sqlite_url, redis_url, profile_url, users=2,
                                      trigger=TriggerSpec(kind="event", event_type="registered"))
    core.pause(plan.id, "alice")
    publish(streams, "r1", 1, "registered", clock())
    assert engine.poll().sent == 0  # a paused plan does not react to events
    assert sink_recipients(core) == []
    core.resume(plan.id, "alice")
    publish(streams, "r2", 2, "registered", clock())
    assert engine.poll().sent == 1 and sink_recipients(core) == ["u2"]
    # Timers of a plan that stops being sendable fire into the plan gate and send nothing.
    fires = [Fire(plan.id, "remind", 1, "r9")]
    core.cancel(plan.id, "alice")
    assert engine.sender.send(fires).removed == {"plan_not_sendable": 1}
    assert sink_recipients(core) == ["u2"]


def test_triggered_touch_with_bandit_and_control_group(sqlite_url, redis_url, profile_url,
                                                       streams):
    core, plan, _, clock = world(sqlite_url, redis_url, profile_url, users=200,
                                 trigger=TriggerSpec(kind="event", event_type="registered"))
    experiments = Experiments(core.store.engine, clock)
    experiments.save(plan, "remind", ExperimentSpec(
        mode="bandit", control_percent=20,
        variants=(Variant("a", body="Welcome A"), Variant("b", body="Welcome B"))))
    engine = start(core, redis_url, clock, experiments)
    for uid in range(1, 201):
        publish(streams, f"r{uid}", uid, "registered", clock())
    funnel = engine.poll()
    control = funnel.removed.get("control_group", 0)
    assert funnel.sent + control == 200 and 20 <= control <= 60
    with core.store.engine.connect() as conn:
        bodies = {r.body for r in conn.execute(select(sink_messages))}
    assert bodies == {"Welcome A", "Welcome B"}


@pytest.mark.parametrize("trigger,field", [
    (TriggerSpec(kind="event_not_followed", event_type="a", within_s=60), "trigger.not_event_type"),
    (TriggerSpec(kind="event_not_followed", event_type="a", not_event_type="b", within_s=0),
     "trigger.within"),
    (TriggerSpec(kind="event", event_type="a", delay_s=90 * 86_400), "trigger.delay"),
    (TriggerSpec(kind="event"), "trigger.event_type"),
    (TriggerSpec(kind="segment_entered"), "trigger.segment"),
    (TriggerSpec(kind="event", event_type="a", filters=(PropertyFilter("x", "like", 1),)),
     "trigger.filters[0].op"),
    (TriggerSpec(kind="sometimes"), "trigger.kind"),
])
def test_bad_triggers_are_refused_naming_the_field(trigger, field):
    plan_spec = spec([touch("remind", external_ids=["u1"])])
    assert field in [f for f, _ in validate_trigger(trigger, plan_spec, "remind")]
    assert validate_trigger(REMINDER, plan_spec, "remind") == []


def test_the_worker_recovers_when_redis_loses_its_streams(sqlite_url, redis_url, profile_url,
                                                          streams):
    # A Redis restarted without its data has no streams and no consumer groups: the worker
    # must create them again and go on firing, not fail on every read from then on.
    import threading
    import time

    trigger = TriggerSpec(kind="event", event_type="registered")
    core, plan, engine, clock = world(sqlite_url, redis_url, profile_url, users=3,
                                      trigger=trigger)
    stop = threading.Event()
    worker = threading.Thread(target=engine.run, args=(stop, 50), daemon=True)
    worker.start()
    try:
        streams.delete(EVENTS_STREAM, MEMBERSHIP_STREAM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not sink_recipients(core):
            # Published until a pass has recreated the group and read it.
            publish(streams, f"r{int(time.monotonic() * 1000)}", 2, "registered", clock())
            time.sleep(0.3)
        assert set(sink_recipients(core)) == {"u2"}
        assert GROUP in {g["name"].decode() for g in streams.xinfo_groups(EVENTS_STREAM)}
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()


def test_trigger_definitions_load_on_first_use_and_after_a_save_whatever_the_refresh(
        sqlite_url, redis_url, profile_url, streams):
    # The monotonic clock counts from the machine's boot: a refresh period longer than the
    # machine has been up must not pass for "loaded a moment ago".
    core, plan, engine, clock = world(sqlite_url, redis_url, profile_url, users=2)
    patient = TriggerEngine(core.store.engine, redis.Redis.from_url(redis_url),
                            TriggeredSender(core), clock=clock, refresh_s=10**9)
    assert [d.touch_id for d in patient.definitions()] == ["remind"]
    other = approved_plan(core, spec([touch("again", body="Still waiting",
                                            external_ids=["u2"])]))
    patient.save(other, "again", REMINDER)
    assert sorted(d.touch_id for d in patient.definitions()) == ["again", "remind"]


# profile:events is not strictly ordered: an event left unannounced by a crash or a Redis
# outage is announced again after PROFILE_ANNOUNCE_GRACE_SECONDS, so a payment can arrive
# before the order it pays.

def test_a_payment_that_arrives_before_its_order_leaves_no_reminder(
        sqlite_url, redis_url, profile_url, streams):
    core, _plan, engine, clock = world(sqlite_url, redis_url, profile_url, users=2)
    t0 = clock()
    clock.advance(2 * MIN)
    publish(streams, "pay-1", 1, "order_paid", t0 + MIN, order_id="o1")
    engine.poll()
    publish(streams, "sub-1", 1, "order_submitted", t0, order_id="o1")  # re-announced late
    engine.poll()
    assert engine.pending_timers() == 0
    clock.advance(10 * MIN)
    assert engine.fire_due().sent == 0 and sink_recipients(core) == []

    # The recorded payment expires on its own; once it is gone, the order coming round again
    # still makes nothing: its timer is done.
    assert 0 < streams.pttl(b_key(1)) <= B_RETENTION_MS
    streams.delete(b_key(1))
    publish(streams, "sub-1", 1, "order_submitted", t0, order_id="o1")
    engine.poll()
    assert engine.pending_timers() == 0
    assert engine.fire_due().sent == 0 and sink_recipients(core) == []


def test_an_early_payment_of_another_order_does_not_hold_back_the_reminder(
        sqlite_url, redis_url, profile_url, streams):
    core, _plan, engine, clock = world(sqlite_url, redis_url, profile_url, users=2)
    t0 = clock()
    # Both arrive in one batch, payments first; only user 2 paid the order in question.
    publish(streams, "pay-1", 1, "order_paid", t0 + MIN, order_id="another-order")
    publish(streams, "pay-2", 2, "order_paid", t0 + MIN, order_id="o2")
    publish(streams, "sub-1", 1, "order_submitted", t0, order_id="o1")
    publish(streams, "sub-2", 2, "order_submitted", t0, order_id="o2")
    engine.poll()
    assert engine.pending_timers() == 1
    clock.advance(10 * MIN + 1)
    assert engine.fire_due().sent == 1 and sink_recipients(core) == ["u1"]


def test_an_early_payment_outside_the_order_window_does_not_hold_back_the_reminder(
        sqlite_url, redis_url, profile_url, streams):
    core, _plan, engine, clock = world(sqlite_url, redis_url, profile_url, users=3)
    t0 = clock()
    # User 1 paid before ordering, user 2 at the deadline (the reminder is due then), user 3
    # a millisecond before it.
    publish(streams, "pay-1", 1, "order_paid", t0 - MIN, order_id="o1")
    publish(streams, "pay-2", 2, "order_paid", t0 + 10 * MIN, order_id="o2")
    publish(streams, "pay-3", 3, "order_paid", t0 + 10 * MIN - 1, order_id="o3")
    engine.poll()
    for uid in (1, 2, 3):
        publish(streams, f"sub-{uid}", uid, "order_submitted", t0, order_id=f"o{uid}")
    engine.poll()
    assert engine.pending_timers() == 2
    clock.advance(10 * MIN + 1)
    assert engine.fire_due().sent == 2 and sink_recipients(core) == ["u1", "u2"]
