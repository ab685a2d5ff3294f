"""The whole loop through gRPC only: profile, segment and delivery servers on loopback."""

from __future__ import annotations

import random
import time

import pytest

from marketing.delivery.v1 import delivery_service_pb2 as pb
from marketing.delivery.v1 import delivery_service_pb2_grpc as pb_grpc
from services.common.testing import channel
from tests.delivery.grpc_world import create_segment, ingest, live_suite, seed_users, ts

USERS = 1200
CLICK_RATES = {"v1": 0.10, "v2": 0.15, "v3": 0.45, "v4": 0.15}
CONVERT_CONTACTED, CONVERT_CONTROL = 0.30, 0.05


@pytest.fixture
def suite(tmp_path, embedded_redis_url, monkeypatch):
    # Only the calls of the test move the plan; the background passes stay out of the way,
    # except the attribution consumer, which is under test.
    monkeypatch.setenv("DELIVERY_SCHEDULER_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("DELIVERY_EFFECTS_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("DELIVERY_TRIGGERS_ENABLED", "0")
    with live_suite(tmp_path, embedded_redis_url,
                    services=("profile", "segment", "delivery")) as running:
        yield running


def race_plan(segment: str) -> pb.Plan:
    now = int(time.time() * 1000)
    plan = pb.Plan(display_name="Copy race", goal_type=pb.GOAL_TYPE_CONVERT,
                   category=pb.CATEGORY_MARKETING, priority=10, owner="growth",
                   business_goal=pb.BusinessGoal(event_type="order_paid", target=100),
                   start_time=ts(now - 3_600_000), end_time=ts(now + 7 * 86_400_000),
                   control_group_percent=10)
    touch = plan.touches.add(touch_id="t1", channel=1)
    touch.content.title = "Sale"
    touch.content.body = "Hi {{ first_name }}"
    touch.audience.segment = segment
    touch.schedule.now.SetInParent()
    touch.experiment.CopyFrom(pb.Experiment(
        mode=pb.EXPERIMENT_MODE_RACE, metric=pb.EXPERIMENT_METRIC_CLICK_THROUGH,
        exploration_percent=40, observation_window_seconds=3600, min_samples_per_variant=50,
        variants=[pb.Variant(variant_id=v, content=pb.Content(body=f"Copy {v}, {{{{ first_name }}}}"))
                  for v in CLICK_RATES]))
    return plan


def all_sends(stub, plan_name: str) -> list:
    out, token = [], ""
    while True:
        page = stub.ListSends(pb.ListSendsRequest(plan=plan_name, page_size=1000,
                                                  page_token=token))
        out += page.sends
        token = page.next_page_token
        if not token:
            return out


def report(stub, outcomes: list) -> list:
    results = []
    for start in range(0, len(outcomes), 1000):
        results += stub.ReportOutcomes(
            pb.ReportOutcomesRequest(outcomes=outcomes[start:start + 1000])).results
    return results


def test_copy_race_with_control_group_end_to_end(suite):
    rng = random.Random(7)
    profile, segment_addr = suite["profile"]["address"], suite["segment"]["address"]
    seed_users(profile, USERS, push_consent=False)  # push is an opt-out channel
    segment = create_segment(segment_addr, 'city = "Paris"')
    address = suite["delivery"]["address"]
    op = pb_grpc.DeliveryServiceStub(channel(address, "operator"))
    approver2 = pb_grpc.DeliveryServiceStub(channel(address, key="approver2-key"))
    vendor = pb_grpc.DeliveryServiceStub(channel(address, "service"))

    plan = op.CreatePlan(pb.CreatePlanRequest(plan=race_plan(segment))).plan
    assert plan.touches[0].experiment.variants[2].variant_id == "v3"
    op.SubmitPlan(pb.SubmitPlanRequest(name=plan.name))
    approved = approver2.ApprovePlan(pb.ApprovePlanRequest(
        name=plan.name, content_hash=plan.content_hash)).plan
    assert approved.state == pb.PLAN_STATE_APPROVED and approved.approved_by == "bob"

    first = op.RunTouch(pb.RunTouchRequest(plan=plan.name, touch_id="t1",
                                           occurrence_key="launch")).funnel
    removed = {r.reason: r.count for r in first.removed}
    deferred = {r.reason: r.count for r in first.deferred}
    assert first.audience == USERS
    assert first.sent + removed["control_group"] + deferred["race_pending"] == USERS
    assert 0.07 * USERS < removed["control_group"] < 0.13 * USERS

    sends = all_sends(op, plan.name)
    explored = [s for s in sends if s.status == pb.SEND_STATUS_SENT]
    assert len(explored) == first.sent and {s.variant_id for s in explored} == set(CLICK_RATES)
    control = {s.user_id for s in sends if s.reason == "control_group"}
    outcomes, clicks = [], {v: 0 for v in CLICK_RATES}
    for s in explored:
        outcomes.append(pb.Outcome(idempotency_key=s.idempotency_key,
                                   type=pb.OUTCOME_TYPE_DELIVERED))
        if rng.random() < CLICK_RATES[s.variant_id]:
            clicks[s.variant_id] += 1
            outcomes.append(pb.Outcome(idempotency_key=s.idempotency_key,
                                       type=pb.OUTCOME_TYPE_CLICKED))
    outcomes.append(pb.Outcome(idempotency_key="dlv-unknown", type=pb.OUTCOME_TYPE_CLICKED))
    results = report(vendor, outcomes)
    assert [r.status.code for r in results[:-1]] == [0] * (len(outcomes) - 1)
    assert results[-1].status.code == 3 and "idempotency_key" in results[-1].status.message
    again = report(vendor, outcomes[:1])  # a repeat counts once
    assert again[0].status.code == 0 and again[0].status.message == "duplicate"

    experiment = op.GetExperiment(pb.GetExperimentRequest(plan=plan.name, touch_id="t1"))
    assert experiment.winner_variant_id == "v3", experiment.decision
    assert experiment.decision.startswith("significant")
    by_variant = {v.variant_id: v for v in experiment.variants}
    assert {v: by_variant[v].clicked for v in CLICK_RATES} == clicks

    rest = op.RunTouch(pb.RunTouchRequest(plan=plan.name, touch_id="t1",
                                          occurrence_key="launch")).funnel
    assert rest.sent == deferred["race_pending"]
    sends = all_sends(op, plan.name)
    sent = [s for s in sends if s.status == pb.SEND_STATUS_SENT]
    assert len(sent) == USERS - len(control)
    assert {s.variant_id for s in sent if s.user_id not in {e.user_id for e in explored}} \
        == {"v3"}
    assert not control & {s.user_id for s in sent}  # control users got nothing
    assert all(s.sent_time.seconds > 0 for s in sent)

    # Goal events through the profile service; the attribution consumer credits them.
    contacted = {s.user_id for s in sent}
    converted_contacted = {u for u in contacted if rng.random() < CONVERT_CONTACTED}
    converted_control = {u for u in control if rng.random() < CONVERT_CONTROL}
    ingest(profile, [(f"pay-{u}", f"u{u}", "order_paid", 20.0)
                     for u in sorted(converted_contacted | converted_control)])
    deadline = time.monotonic() + 20
    while True:
        stats = op.GetPlanStats(pb.GetPlanStatsRequest(plan=plan.name,
                                                       include_hourly_series=True))
        total = stats.totals[0]
        held = [g.converted for g in stats.control_groups[:1]]
        if (total.converted == len(converted_contacted) and held == [len(converted_control)]
                or time.monotonic() > deadline):
            break
        time.sleep(0.2)
    assert total.touch_id == "" and total.funnel.audience == USERS
    assert total.funnel.sent == len(sent)
    assert total.delivered == len(explored) and total.clicked == sum(clicks.values())
    assert total.converted == len(converted_contacted)
    assert total.revenue == pytest.approx(20.0 * len(converted_contacted))
    assert {r.reason: r.count for r in total.funnel.removed}["control_group"] == len(control)
    lift = len(converted_contacted) / len(contacted) - len(converted_control) / len(control)
    assert total.uplift == pytest.approx(lift)
    assert total.uplift_ci_low < total.uplift < total.uplift_ci_high
    # The control group's own figures, on the wire: for the plan and for its one touch.
    assert [g.touch_id for g in stats.control_groups] == ["", "t1"]
    for group in stats.control_groups:
        assert (group.held_back, group.converted) == (len(control), len(converted_control))
        assert group.conversion_rate == pytest.approx(len(converted_control) / len(control))
    assert total.uplift == pytest.approx(total.conversion_rate
                                         - stats.control_groups[0].conversion_rate)
    assert total.uplift_ci_low > 0  # 30% against 5%: the interval excludes no effect
    v3 = next(r for r in stats.totals if r.variant_id == "v3")
    assert v3.uplift_ci_low < v3.uplift < v3.uplift_ci_high
    assert sum(p.funnel.sent for p in stats.hourly) == len(sent)
    assert sum(p.clicked for p in stats.hourly) == sum(clicks.values())
