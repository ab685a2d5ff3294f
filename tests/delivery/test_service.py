"""The gRPC surface against a real server on a loopback port."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2

from marketing.delivery.v1 import delivery_service_pb2 as pb
from marketing.delivery.v1 import delivery_service_pb2_grpc as pb_grpc
from services.common.config import parse_api_keys
from services.common.errors import field_violations
from services.common.testing import TEST_API_KEYS, channel, running_server, service_settings
from services.delivery.app import build
from tests.delivery.conftest import make_profiles

DAY_S = 86_400


@pytest.fixture
def stub(tmp_path, monkeypatch, redis_client):
    kw = redis_client.connection_pool.connection_kwargs
    make_profiles(f"sqlite:///{tmp_path / 'profile.db'}",
                  [{"consents": {"push": True}, "attrs": {"first_name": n}}
                   for n in ("Ann", "Bo", "Cy")])
    monkeypatch.setenv("DELIVERY_PROFILE_SOURCE", "sql")
    monkeypatch.setenv("DELIVERY_STATIC_AUDIENCES", json.dumps({"everyone": [1, 2, 3]}))
    monkeypatch.setenv("DELIVERY_SCHEDULER_INTERVAL_SECONDS", "0")
    # The stream consumers block for up to a second per read; these tests do not use them.
    monkeypatch.setenv("DELIVERY_TRIGGERS_ENABLED", "0")
    monkeypatch.setenv("DELIVERY_ATTRIBUTION_ENABLED", "0")
    monkeypatch.setenv("DELIVERY_EFFECTS_INTERVAL_SECONDS", "0")
    settings = service_settings(
        "delivery", tmp_path, redis_url=f"redis://{kw['host']}:{kw['port']}/0",
        api_keys=parse_api_keys(TEST_API_KEYS + ";both-key:operator+approver:mallory"))
    with running_server(settings, build(settings)) as (_, address):
        stubs = {role: pb_grpc.DeliveryServiceStub(channel(address, role))
                 for role in ("operator", "approver", "admin")}
        stubs["both"] = pb_grpc.DeliveryServiceStub(channel(address, key="both-key"))
        yield stubs


def plan_message(body="Hi {{ first_name }}", **touch_kw):
    now = int(time.time())
    plan = pb.Plan(display_name="Welcome back", goal_type=pb.GOAL_TYPE_WIN_BACK,
                   scene="dormant-30d", category=pb.CATEGORY_MARKETING, priority=5,
                   owner="crm", business_goal=pb.BusinessGoal(event_type="order_paid", target=50))
    plan.start_time.FromSeconds(now - DAY_S)
    plan.end_time.FromSeconds(now + 10 * DAY_S)
    touch = plan.touches.add(touch_id="t1", channel=1, **touch_kw)
    touch.content.title = "We miss you"
    touch.content.body = body
    touch.audience.segment = "everyone"
    touch.schedule.now.SetInParent()
    return plan


def code_and_fields(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), field_violations(err.value)


def test_plan_lifecycle_over_grpc(stub):
    op, approver = stub["operator"], stub["approver"]
    plan = op.CreatePlan(pb.CreatePlanRequest(plan=plan_message())).plan
    assert plan.state == pb.PLAN_STATE_DRAFT and plan.creator == "olivia"
    code, _ = code_and_fields(lambda: op.SchedulePlan(pb.SchedulePlanRequest(name=plan.name)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    op.SubmitPlan(pb.SubmitPlanRequest(name=plan.name))
    code, _ = code_and_fields(lambda: op.ApprovePlan(
        pb.ApprovePlanRequest(name=plan.name, content_hash=plan.content_hash)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    preview = op.PreviewTouch(pb.PreviewTouchRequest(plan=plan.name, touch_id="t1",
                                                     external_id="u2"))
    assert preview.body == "Hi Bo"
    dry = op.DryRunTouch(pb.DryRunTouchRequest(plan=plan.name, touch_id="t1")).funnel
    assert (dry.audience, dry.sent) == (3, 3)
    approved = approver.ApprovePlan(pb.ApprovePlanRequest(
        name=plan.name, content_hash=plan.content_hash)).plan
    assert approved.state == pb.PLAN_STATE_APPROVED and approved.approved_by == "alice"
    op.SchedulePlan(pb.SchedulePlanRequest(name=plan.name))
    result = op.ExecutePlan(pb.ExecutePlanRequest(name=plan.name))
    assert result.funnel.sent == 3 and result.plan.state == pb.PLAN_STATE_COMPLETED
    sends = op.ListSends(pb.ListSendsRequest(plan=plan.name, page_size=2))
    assert len(sends.sends) == 2 and sends.next_page_token
    assert dict(sends.status_counts) == {"sent": 3}
    rest = op.ListSends(pb.ListSendsRequest(plan=plan.name, page_token=sends.next_page_token))
    assert {s.user_id for s in [*sends.sends, *rest.sends]} == {1, 2, 3}
    code, _ = code_and_fields(lambda: op.RunTouch(
        pb.RunTouchRequest(plan=plan.name, touch_id="t1", occurrence_key="x")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # a completed plan sends no more
    audit = op.ListAuditEntries(pb.ListAuditEntriesRequest(plan=plan.name)).entries
    assert [e.action for e in audit] == ["create", "submit", "approve", "schedule", "start",
                                         "complete"]
    assert op.VerifyAuditLog(pb.VerifyAuditLogRequest()).intact


def test_run_touch_is_refused_for_unapproved_and_idempotent_per_key(stub):
    op, approver = stub["operator"], stub["approver"]
    plan = op.CreatePlan(pb.CreatePlanRequest(plan=plan_message())).plan
    code, _ = code_and_fields(lambda: op.RunTouch(
        pb.RunTouchRequest(plan=plan.name, touch_id="t1", occurrence_key="k1")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    op.SubmitPlan(pb.SubmitPlanRequest(name=plan.name))
    approver.ApprovePlan(pb.ApprovePlanRequest(name=plan.name, content_hash=plan.content_hash))
    first = op.RunTouch(pb.RunTouchRequest(plan=plan.name, touch_id="t1", occurrence_key="k1"))
    second = op.RunTouch(pb.RunTouchRequest(plan=plan.name, touch_id="t1", occurrence_key="k1"))
    assert (first.funnel.sent, second.funnel.sent) == (3, 0)


def test_self_approval_is_denied_even_for_an_approver(stub):
    both = stub["both"]
    plan = both.CreatePlan(pb.CreatePlanRequest(plan=plan_message())).plan
    both.SubmitPlan(pb.SubmitPlanRequest(name=plan.name))
    code, _ = code_and_fields(lambda: both.ApprovePlan(
        pb.ApprovePlanRequest(name=plan.name, content_hash=plan.content_hash)))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_update_after_approval_returns_to_draft(stub):
    op, approver = stub["operator"], stub["approver"]
    plan = op.CreatePlan(pb.CreatePlanRequest(plan=plan_message())).plan
    op.SubmitPlan(pb.SubmitPlanRequest(name=plan.name))
    approver.ApprovePlan(pb.ApprovePlanRequest(name=plan.name, content_hash=plan.content_hash))
    changed = pb.Plan(name=plan.name, priority=50)
    updated = op.UpdatePlan(pb.UpdatePlanRequest(
        plan=changed, update_mask=field_mask_pb2.FieldMask(paths=["priority"]))).plan
    assert updated.state == pb.PLAN_STATE_DRAFT and updated.priority == 50
    assert updated.content_hash != plan.content_hash and updated.display_name == "Welcome back"
    code, _ = code_and_fields(lambda: approver.ApprovePlan(
        pb.ApprovePlanRequest(name=plan.name, content_hash=plan.content_hash)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("mutate,field", [
    (lambda p: setattr(p.touches[0].content, "body", "{{ ''.__class__.__mro__ }}"),
     "touches[0].content.body"),
    (lambda p: setattr(p.touches[0].content, "body", "Hi {{ first_name"),
     "touches[0].content.body"),
    (lambda p: setattr(p.touches[0].content, "body", "Hi {{ shoe_size }}"),
     "touches[0].content.body"),
    (lambda p: p.touches[0].schedule.cron.CopyFrom(pb.Cron(expression="every day")),
     "touches[0].schedule.cron"),
    (lambda p: p.end_time.FromSeconds(p.start_time.seconds - 1), "end_time"),
    (lambda p: (setattr(p.touches[0], "channel", 6),
                setattr(p.touches[0].content, "webhook_url", "http://169.254.169.254/latest")),
     "touches[0].content.webhook_url"),
    (lambda p: setattr(p, "goal_type", 0), "goal_type"),
])
def test_bad_plans_are_refused_naming_the_field(stub, mutate, field):
    plan = plan_message()
    mutate(plan)
    code, fields = code_and_fields(lambda: stub["operator"].CreatePlan(
        pb.CreatePlanRequest(plan=plan)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in fields


def test_roles_are_enforced(stub):
    code, _ = code_and_fields(lambda: stub["approver"].CreatePlan(
        pb.CreatePlanRequest(plan=plan_message())))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, fields = code_and_fields(lambda: stub["operator"].GetPlan(
        pb.GetPlanRequest(name="campaigns/1")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == ["name"]
    code, _ = code_and_fields(lambda: stub["operator"].GetPlan(pb.GetPlanRequest(name="plans/999")))
    assert code == grpc.StatusCode.NOT_FOUND


def with_experiment(plan, mode=pb.EXPERIMENT_MODE_RACE, variants=("a", "b"), shares=(),
                    window_s=3600):
    plan.touches[0].experiment.CopyFrom(pb.Experiment(
        mode=mode, exploration_percent=20, observation_window_seconds=window_s,
        variants=[pb.Variant(variant_id=v, split_percent=(shares[i] if shares else 0),
                             content=pb.Content(body=f"Copy {v}"))
                  for i, v in enumerate(variants)]))
    return plan


@pytest.mark.parametrize("make,field", [
    (lambda: with_experiment(plan_message(), variants=("a",)), "touches[0].experiment.variants"),
    (lambda: with_experiment(plan_message(), mode=pb.EXPERIMENT_MODE_SPLIT, shares=(50, 40)),
     "touches[0].experiment.variants"),
    (lambda: with_experiment(plan_message(), window_s=30 * DAY_S),
     "touches[0].experiment.observation_window_seconds"),
    (lambda: with_experiment(plan_message(body="Hi {{ shoe_size }}")), "touches[0].content.body"),
    (lambda: (lambda p: (setattr(p, "control_group_percent", 60), p)[1])(plan_message()),
     "control_group_percent"),
    (lambda: (lambda p: (p.touches[0].trigger.CopyFrom(pb.Trigger(
        event_type="order_submitted", absent_event_type="order_paid")), p)[1])(plan_message()),
     "touches[0].trigger.within_seconds"),
    (lambda: (lambda p: (p.follow_ups.add(after_touch_id="t1", wait_seconds=0), p)[1])(
        plan_message()), "follow_ups[0].wait_seconds"),
])
def test_bad_experiments_triggers_and_follow_ups_are_refused_at_save(stub, make, field):
    code, fields = code_and_fields(lambda: stub["operator"].CreatePlan(
        pb.CreatePlanRequest(plan=make())))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in fields, fields


def test_experiment_trigger_and_follow_up_are_kept_and_approval_covers_them(stub):
    op, approver = stub["operator"], stub["approver"]
    message = with_experiment(plan_message())
    message.control_group_percent = 10
    message.touches.add().CopyFrom(message.touches[0])
    message.touches[1].touch_id = "remind"
    message.touches[1].ClearField("experiment")
    message.touches[1].trigger.CopyFrom(pb.Trigger(
        event_type="order_submitted", absent_event_type="order_paid", within_seconds=600,
        correlate_on_property="order_id"))
    message.follow_ups.add(after_touch_id="t1", wait_seconds=3600, max_repeats=1,
                           repeat_spacing_seconds=3600, converted_next_touch_id="remind")
    plan = op.CreatePlan(pb.CreatePlanRequest(plan=message)).plan
    assert plan.touches[0].experiment.variants[1].variant_id == "b"
    assert plan.touches[1].trigger.within_seconds == 600
    assert not plan.touches[1].HasField("schedule")
    assert plan.follow_ups[0].converted_next_touch_id == "remind"
    op.SubmitPlan(pb.SubmitPlanRequest(name=plan.name))
    approver.ApprovePlan(pb.ApprovePlanRequest(name=plan.name, content_hash=plan.content_hash))
    changed = pb.Plan(name=plan.name)
    changed.touches.extend(plan.touches)
    changed.touches[0].experiment.variants[1].content.body = "Other copy"
    updated = op.UpdatePlan(pb.UpdatePlanRequest(
        plan=changed, update_mask=field_mask_pb2.FieldMask(paths=["touches"]))).plan
    assert updated.state == pb.PLAN_STATE_DRAFT and updated.content_hash != plan.content_hash
    # The triggered touch is never sent by the batch scheduler.
    op.SubmitPlan(pb.SubmitPlanRequest(name=plan.name))
    approver.ApprovePlan(pb.ApprovePlanRequest(name=plan.name,
                                               content_hash=updated.content_hash))
    op.SchedulePlan(pb.SchedulePlanRequest(name=plan.name))
    op.ExecutePlan(pb.ExecutePlanRequest(name=plan.name))
    sends = op.ListSends(pb.ListSendsRequest(plan=plan.name)).sends
    assert sends and {s.touch_id for s in sends} == {"t1"}
