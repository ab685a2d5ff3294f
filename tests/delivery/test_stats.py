"""Effect monitoring end to end: a split touch, outcomes, attribution, uplift, series, metrics."""

from __future__ import annotations

import numpy as np
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.delivery.experiments import Experiments, ExperimentSpec, Variant
from services.delivery.outcomes import Attribution, GoalEvent, OutcomeIntake, OutcomeItem
from services.delivery.sources import SqlProfileDirectory
from services.delivery.stats import HOUR_MS, EffectStats
from services.delivery.tables import sends
from services.delivery.tables_effects import assignments
from services.delivery.triggers import TriggerSpec
from tests.delivery.test_outcomes import ProfileConsentWriter
from tests.delivery.test_triggers import publish, start, streams, world  # noqa: F401

USERS = 1500


def test_funnel_uplift_series_and_metrics(sqlite_url, redis_url, profile_url, streams,
                                         tmp_path):
    core, plan, _, clock = world(sqlite_url, redis_url, profile_url, users=USERS,
                                 trigger=TriggerSpec(kind="event", event_type="registered"))
    experiments = Experiments(core.store.engine, clock)
    experiments.save(plan, "remind", ExperimentSpec(
        mode="ab", control_percent=20,
        variants=(Variant("a", body="Copy A", share=50), Variant("b", body="Copy B", share=50))))
    engine = start(core, redis_url, clock, experiments)
    for uid in range(1, USERS + 1):
        publish(streams, f"r{uid}", uid, "registered", clock())
        if uid == USERS // 2:
            engine.poll()
            clock.advance(HOUR_MS)  # the second half goes out an hour later
    engine.batch = USERS
    engine.poll()

    with core.store.engine.connect() as conn:
        sent = {r.user_id: r.idempotency_key for r in conn.execute(
            select(sends).where(sends.c.plan_id == plan.id, sends.c.status == "sent"))}
        groups = {r.user_id: (r.variant, r.arm) for r in conn.execute(select(assignments))}
    control = [u for u, (_, arm) in groups.items() if arm == "control"]
    assert len(sent) + len(control) == USERS

    # Simulated behaviour: B is clicked more; contacted users convert at 30%, control at 10%.
    rng = np.random.default_rng(7)
    click_rate = {"a": 0.10, "b": 0.25}
    clicked = [u for u in sent if rng.random() < click_rate[groups[u][0]]]
    intake = OutcomeIntake(core.store.engine, ProfileConsentWriter(core.directory.engine),
                           SqlProfileDirectory(core.directory.engine), clock)
    items = [OutcomeItem(sent[u], "clicked") for u in clicked] + \
            [OutcomeItem(sent[u], "delivered") for u in sent]
    results = [r for i in range(0, len(items), 1000) for r in intake.report(items[i:i + 1000])]
    assert all(r.status == "accepted" for r in results)
    clock.advance(HOUR_MS)
    converting = [u for u in sent if rng.random() < 0.30] + \
                 [u for u in control if rng.random() < 0.10]
    events = [GoalEvent(f"pay-{u}", u, "order_paid", clock(), 20.0) for u in converting]
    Attribution(core.store.engine, clock=clock).attribute(events)

    stats = EffectStats(core.store.engine)
    total, *rows = stats.totals(plan.id)
    assert total.audience == USERS and total.sent == len(sent)
    assert total.suppressed == {"control_group": len(control)}
    assert total.delivered == len(sent) and total.clicked == len(clicked)
    converted_contacted = len([u for u in converting if u in sent])
    assert total.converted == converted_contacted
    assert total.revenue == 20.0 * converted_contacted
    by_variant = {r.variant: r for r in rows}
    assert set(by_variant) == {"a", "b", ""}  # "" holds the control group's ledger rows
    assert by_variant["b"].click_through_rate > by_variant["a"].click_through_rate
    # The simulated uplift is 0.30 - 0.10; the reported 95% interval holds it.
    assert total.uplift_low <= 0.20 <= total.uplift_high
    assert abs(total.uplift - 0.20) < 0.07
    converted_control = len([u for u in converting if u in set(control)])
    groups = stats.control_groups(plan.id)
    assert [(g["touch_id"], g["held_back"], g["converted"]) for g in groups] == [
        ("", len(control), converted_control), ("remind", len(control), converted_control)]
    assert groups[0]["conversion_rate"] == converted_control / len(control)

    series = stats.series(plan.id)
    hours = sorted({p["start_ms"] for p in series})
    assert len(hours) == 3  # first half, second half, conversions an hour later
    assert sum(p["sent"] for p in series) == len(sent)
    assert sum(p["converted"] for p in series) == converted_contacted

    stats.publish([plan.id])
    assert REGISTRY.get_sample_value("delivery_effect", {
        "plan": str(plan.id), "touch": "*", "variant": "*", "channel": "*",
        "measure": "sent"}) == len(sent)

    # The command-line report draws the same figures as PNG charts.
    from services.delivery.report import main

    out = tmp_path / "report"
    assert main(["--plan", str(plan.id), "--out", str(out), "--database", sqlite_url]) == 0
    for name in ("funnel.png", "series.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / name).stat().st_size > 5000
    assert '"sent": %d' % len(sent) in (out / "effects.json").read_text()
