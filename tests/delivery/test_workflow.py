"""Approval workflow: maker-checker, approvals bound to content, the hash-chained audit log."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.delivery import model
from services.delivery.model import State
from tests.delivery.conftest import approved_plan, build_core, make_profiles, spec, touch


@pytest.fixture
def core(db_url, redis_client, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(3)])
    url = redis_client.connection_pool.connection_kwargs
    return build_core(db_url, f"redis://{url['host']}:{url['port']}/0", profiles,
                      audiences={"everyone": [1, 2, 3]})


def test_maker_cannot_approve_own_plan(core):
    plan = core.create_plan(spec(), "alice")
    core.submit(plan.id, "alice")
    with pytest.raises(PermissionDenied):
        core.approve(plan.id, "alice", {"approver"}, plan.content_hash)
    with pytest.raises(PermissionDenied):
        core.approve(plan.id, "carol", {"operator"}, plan.content_hash)
    approved = core.approve(plan.id, "bob", {"approver"}, plan.content_hash)
    assert approved.state == State.APPROVED and approved.approved_by == "bob"


def test_approval_is_bound_to_the_reviewed_content(core):
    plan = core.create_plan(spec(), "alice")
    core.submit(plan.id, "alice")
    with pytest.raises(FailedPrecondition):
        core.approve(plan.id, "bob", {"approver"}, "0" * 64)
    plan = core.approve(plan.id, "bob", {"approver"}, plan.content_hash)
    changed = dataclasses.replace(plan.spec, display_name="Spring sale v2")
    plan = core.update_plan(plan.id, changed, "alice")
    assert plan.state == State.DRAFT and not plan.approved
    with pytest.raises(FailedPrecondition):
        core.schedule(plan.id, "alice")


def test_unapproved_plan_never_sends(core):
    plan = core.create_plan(spec(), "alice")
    with pytest.raises(FailedPrecondition):
        core.schedule(plan.id, "alice")
    with pytest.raises(FailedPrecondition):
        core.run_touch(plan.id, "t1", "manual-1")
    core.submit(plan.id, "alice")
    with pytest.raises(FailedPrecondition):
        core.run_touch(plan.id, "t1", "manual-1")
    assert core.run_due(plan_id=plan.id).sent == 0
    assert core.store.sink_count() == 0


def test_change_after_schedule_returns_to_draft_and_stops_sending(core):
    plan = approved_plan(core, spec(touches=[touch(schedule=model.Schedule(
        kind="at", at_ms=model_now() + 3_600_000))]))
    assert plan.state == State.SCHEDULED
    changed = dataclasses.replace(plan.spec, priority=99)
    plan = core.update_plan(plan.id, changed, "alice")
    assert plan.state == State.DRAFT
    assert core.run_due(now=model_now() + 7_200_000, plan_id=plan.id).sent == 0


def model_now():
    import time

    return int(time.time() * 1000)


def test_reject_needs_reason_and_allows_resubmission(core):
    plan = core.create_plan(spec(), "alice")
    core.submit(plan.id, "alice")
    with pytest.raises(InvalidArgument) as err:
        core.reject(plan.id, "bob", {"approver"}, "  ")
    assert err.value.violations[0][0] == "reason"
    plan = core.reject(plan.id, "bob", {"approver"}, "copy too pushy")
    assert plan.state == State.REJECTED and plan.reject_reason == "copy too pushy"
    assert core.submit(plan.id, "alice").state == State.PENDING_APPROVAL


def test_pause_resume_cancel_and_terminal_states(core):
    plan = approved_plan(core, spec())
    assert core.pause(plan.id, "alice").state == State.PAUSED
    assert core.run_due(plan_id=plan.id).sent == 0
    assert core.resume(plan.id, "alice").state == State.SCHEDULED
    assert core.cancel(plan.id, "alice", "budget cut").state == State.CANCELLED
    with pytest.raises(FailedPrecondition):
        core.resume(plan.id, "alice")
    with pytest.raises(FailedPrecondition):
        core.update_plan(plan.id, plan.spec, "alice")


def test_audit_log_chains_every_transition_and_shows_tampering(core):
    plan = approved_plan(core, spec())
    core.pause(plan.id, "alice", "waiting for stock")
    entries = core.store.list_audit(plan.id, 0, 100)
    assert [e["action"] for e in entries] == ["create", "submit", "approve", "schedule", "pause"]
    assert entries[2]["actor"] == "bob" and entries[4]["reason"] == "waiting for stock"
    assert all(b["prev_hash"] == a["entry_hash"] for a, b in itertools.pairwise(entries))
    assert core.store.verify_audit_chain() == (True, None)
    engine = core.store.engine
    # The database refuses edits of the log itself ...
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(text("UPDATE delivery_audit_log SET actor = 'mallory' WHERE seq = 3"))
    # ... and when someone with DDL rights removes that protection, verification notices.
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER delivery_audit_no_update"))
        else:
            conn.execute(text("DROP TRIGGER delivery_audit_append_only ON delivery_audit_log"))
        conn.execute(text("UPDATE delivery_audit_log SET actor = 'mallory' WHERE seq = 3"))
    assert core.store.verify_audit_chain() == (False, 3)


def test_invalid_plan_fields_are_named(core):
    bad = spec(start_ms=2_000_000, end_ms=1_000_000, touches=[
        touch(schedule=model.Schedule(kind="cron", cron="61 * * * *")),
        touch(touch_id="t2", channel="webhook", webhook_url="http://127.0.0.1:9/hook"),
    ])
    with pytest.raises(InvalidArgument) as err:
        core.create_plan(bad, "alice")
    fields = [f for f, _ in err.value.violations]
    assert "end_time" in fields
    assert "touches[0].schedule.cron" in fields
    assert "touches[1].content.webhook_url" in fields
