"""Follow-up paths: converted users move on, others are retried with spacing, then dropped."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from services.delivery.caps import CapRule
from services.delivery.followups import FollowUps, FollowUpSpec, validate_followup
from services.delivery.outcomes import Attribution, GoalEvent
from services.delivery.tables import sends
from services.delivery.tables_effects import followups, outcomes
from services.delivery.triggers import Fire, TriggeredSender
from tests.delivery.conftest import Clock, approved_plan, build_core, make_profiles, spec, touch

HOUR = 3_600_000


def test_follow_up_path(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}}] * 4)
    clock = Clock()
    # Caps loose enough for the retries (the default two pushes a day would stop them).
    core = build_core(sqlite_url, redis_url, profiles, clock=clock,
                      rules=(CapRule("push_per_day", 10, "day", channels=("push",)),))
    plan = approved_plan(core, spec([touch("offer", body="20% off", external_ids=["u1"]),
                                     touch("thanks", body="Thank you", external_ids=["u1"])]))
    sender = TriggeredSender(core)
    paths = FollowUps(core.store.engine, sender, clock)
    paths.save(plan, "offer", FollowUpSpec(wait_s=3600, max_retries=2, spacing_s=3600,
                                           next_touch_id="thanks"))
    attribution = Attribution(core.store.engine, clock=clock)
    assert sender.send([Fire(plan.id, "offer", u, f"start-{u}") for u in range(1, 5)]).sent == 4
    assert paths.enroll() == 4 and paths.enroll() == 0

    clock.advance(HOUR // 2)
    attribution.attribute([GoalEvent("pay-1", 1, "order_paid", clock(), 30.0)])
    clock.advance(HOUR // 2)
    paths.process_due()  # 1h: user 1 converted -> thanks; 2, 3, 4 get retry 1
    clock.advance(HOUR // 2)
    attribution.attribute([GoalEvent("pay-2", 2, "order_paid", clock(), 30.0)])
    clock.advance(HOUR // 2)
    paths.process_due()  # 2h: user 2 converted -> thanks; 3, 4 get retry 2
    clock.advance(HOUR)
    paths.process_due()  # 3h: 3 and 4 are out of retries -> dropped
    clock.advance(HOUR)
    assert paths.process_due().sent == 0  # nothing is left waiting

    with core.store.engine.connect() as conn:
        sent = Counter((r.touch_id, r.user_id) for r in conn.execute(
            select(sends).where(sends.c.status == "sent")))
        states = {r.user_id: (r.status, r.attempts, r.next_step) for r in conn.execute(
            select(followups))}
    assert sent == Counter({("offer", 1): 1, ("offer", 2): 2, ("offer", 3): 3, ("offer", 4): 3,
                            ("thanks", 1): 1, ("thanks", 2): 1})
    assert states == {1: ("converted", 0, "touches/thanks"), 2: ("converted", 1, "touches/thanks"),
                      3: ("dropped", 2, None), 4: ("dropped", 2, None)}
    assert paths.status_counts(plan.id) == {"converted": 2, "dropped": 2}
    # Follow-up sends do not enrol anyone again.
    assert paths.enroll() == 0


@pytest.mark.parametrize("rule,field", [
    (FollowUpSpec(wait_s=0), "follow_up.wait"),
    (FollowUpSpec(wait_s=60, max_retries=3), "follow_up.spacing"),
    (FollowUpSpec(wait_s=60, max_retries=11, spacing_s=60), "follow_up.max_retries"),
    (FollowUpSpec(wait_s=60, next_touch_id="nope"), "follow_up.next_touch_id"),
    (FollowUpSpec(wait_s=60, handover_plan_id=3), "follow_up.handover_touch_id"),
    (FollowUpSpec(wait_s=40 * 86_400), "follow_up.wait"),
])
def test_bad_follow_up_rules_name_the_field(rule, field):
    plan_spec = spec([touch("offer", external_ids=["u1"])])
    assert field in [f for f, _ in validate_followup(rule, plan_spec, "offer")]


def test_attribution_recovers_when_redis_loses_the_events_stream(sqlite_url, redis_url,
                                                                 profile_url):
    # A Redis restarted without its data has lost profile:events and the attribution group;
    # the attribution loop must create the group again and credit goal events from then on.
    import threading
    import time

    import redis

    from services.delivery.app import EffectWorkers
    from services.delivery.triggers import EVENTS_STREAM

    profiles = make_profiles(profile_url, [{"consents": {"push": True}}] * 2)
    clock = Clock()
    core = build_core(sqlite_url, redis_url, profiles, clock=clock)
    plan = approved_plan(core, spec([touch("offer", body="20% off", external_ids=["u1"])]))
    assert TriggeredSender(core).send([Fire(plan.id, "offer", 1, "start-1")]).sent == 1
    client = redis.Redis.from_url(redis_url)
    client.delete(EVENTS_STREAM)
    workers = EffectWorkers(core, client, intake=None, stats=None)
    workers.attribution_reader.ensure_group()
    client.delete(EVENTS_STREAM)  # the stream and its group are gone
    loop = threading.Thread(target=workers._attribution_loop, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 20
        credited = 0
        while time.monotonic() < deadline and not credited:
            client.xadd(EVENTS_STREAM, {"event_id": f"pay-{time.monotonic_ns()}", "user_id": 1,
                                        "event_type": "order_paid", "ts_ms": clock(),
                                        "value": "30"})
            time.sleep(0.3)
            with core.store.engine.connect() as conn:
                credited = conn.execute(select(outcomes.c.id).where(
                    outcomes.c.kind == "converted", outcomes.c.user_id == 1)).first()
        assert credited
    finally:
        workers._stop.set()
        loop.join(10)
        client.delete(EVENTS_STREAM)
        client.close()
    assert not loop.is_alive()
