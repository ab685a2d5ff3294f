"""Outcome intake: per-item refusals, duplicates counted once, opt-outs, webhook, attribution."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from sqlalchemy import create_engine, func, select, update

from services.common import profile_tables as pt
from services.delivery.gateways import sign
from services.delivery.outcomes import (
    ACCEPTED,
    DUPLICATE,
    REFUSED,
    Attribution,
    GoalEvent,
    OutcomeIntake,
    OutcomeItem,
    WebhookIntake,
    serve_webhook,
)
from services.delivery.sources import SqlProfileDirectory
from services.delivery.store import dialect_insert
from services.delivery.tables import sends
from services.delivery.tables_effects import outcomes
from tests.delivery.conftest import approved_plan, build_core, make_profiles, spec, touch


class ProfileConsentWriter:
    """Stands in for the profile service's consent RPC (its proto is not published yet):
    writes the profile store the directory reads, as that RPC would."""

    def __init__(self, engine, fail: bool = False):
        self.engine = engine
        self.fail = fail
        self.calls = 0

    def apply(self, changes):
        self.calls += 1
        if self.fail:
            raise ConnectionError("profile service unavailable")
        with self.engine.begin() as conn:
            for c in changes:
                if c.kind == "unsubscribed":
                    conn.execute(dialect_insert(conn, pt.consents).values(
                        user_id=c.user_id, channel=c.channel, subscribed=False,
                        updated_ms=c.ts_ms, source=c.source).on_conflict_do_update(
                        index_elements=[pt.consents.c.user_id, pt.consents.c.channel],
                        set_={"subscribed": False, "updated_ms": c.ts_ms}))
                else:
                    column = ("notifications_disabled" if c.kind == "notification_disabled"
                              else "app_uninstalled")
                    conn.execute(update(pt.profiles).where(pt.profiles.c.id == c.user_id)
                                 .values({column: True}))


@pytest.fixture
def world(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(6)])
    core = build_core(sqlite_url, redis_url, profiles)
    plan = approved_plan(core, spec([touch(external_ids=[f"u{i}" for i in range(1, 6)])]))
    core.run_due()
    with core.store.engine.connect() as conn:
        keys = {r.user_id: r.idempotency_key for r in conn.execute(
            select(sends).where(sends.c.plan_id == plan.id, sends.c.status == "sent"))}
    assert len(keys) == 5
    writer = ProfileConsentWriter(create_engine(profile_url))
    intake = OutcomeIntake(core.store.engine, writer, SqlProfileDirectory(profiles))
    return core, plan, keys, intake, writer, profiles


def count(engine, **where):
    query = select(func.count()).select_from(outcomes)
    for k, v in where.items():
        query = query.where(getattr(outcomes.c, k) == v)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_unknown_messages_are_refused_per_item_and_duplicates_count_once(world):
    core, plan, keys, intake, _, _ = world
    results = intake.report([
        OutcomeItem(keys[1], "delivered"),
        OutcomeItem("dlv-no-such-message", "opened"),
        OutcomeItem(keys[1], "opened"),
        OutcomeItem(keys[2], "teleported"),
        OutcomeItem(keys[1], "opened"),  # repeated inside the batch
    ])
    assert [r.status for r in results] == [ACCEPTED, REFUSED, ACCEPTED, REFUSED, DUPLICATE]
    assert results[1].field == "outcomes[1].message_id"
    assert results[3].field == "outcomes[3].kind"
    again = intake.report([OutcomeItem(keys[1], "opened"), OutcomeItem(keys[3], "clicked")])
    assert [r.status for r in again] == [DUPLICATE, ACCEPTED]
    engine = core.store.engine
    assert count(engine, kind="opened") == 1 and count(engine, kind="delivered") == 1
    assert count(engine, kind="clicked", plan_id=plan.id, user_id=3) == 1


def test_unsubscribe_updates_profile_consent_at_once_and_stops_later_sends(world):
    core, plan, keys, intake, writer, profiles = world
    results = intake.report([OutcomeItem(keys[2], "unsubscribed"),
                             OutcomeItem(keys[3], "notification_disabled")])
    assert [r.status for r in results] == [ACCEPTED, ACCEPTED]
    contacts = SqlProfileDirectory(profiles).contactability([2, 3], "push")
    assert contacts[2].consent is False and contacts[3].notifications_disabled
    # A repeated opt-out is a duplicate and is not forwarded again.
    intake.report([OutcomeItem(keys[2], "unsubscribed")])
    assert writer.calls == 1
    # The guards of the next send of the touch remove both users with the profile's reasons.
    funnel = core.dry_run(plan.id, "t1")
    assert funnel.removed.get("unsubscribed") == 1
    assert funnel.removed.get("notifications_disabled") == 1


def test_opt_outs_are_kept_and_retried_when_the_profile_service_is_down(world):
    core, _, keys, intake, writer, profiles = world
    writer.fail = True
    assert intake.report([OutcomeItem(keys[4], "unsubscribed")])[0].status == ACCEPTED
    assert SqlProfileDirectory(profiles).contactability([4], "push")[4].consent is True
    writer.fail = False
    assert intake.retry_pending_consents() == 1
    assert SqlProfileDirectory(profiles).contactability([4], "push")[4].consent is False
    assert intake.retry_pending_consents() == 0


def test_signed_webhook_intake_over_http(world):
    _, _, keys, intake, _, _ = world
    secret = b"vendor-secret"
    server = serve_webhook(WebhookIntake(intake, {"pushco": secret}))
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/outcomes/pushco"

    def post(body: bytes, signature: str):
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Signature": signature})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        body = json.dumps({"outcomes": [{"message_id": keys[5], "kind": "clicked"},
                                        {"message_id": "nope", "kind": "clicked"}]}).encode()
        ts = str(int(time.time()))
        status, payload = post(body, f"t={ts},v1={sign(secret, ts, body)}")
        assert status == 200
        assert [r["status"] for r in payload["results"]] == [ACCEPTED, REFUSED]
        # Wrong key, tampered body, and a stale (replayed) timestamp are all refused.
        assert post(body, f"t={ts},v1={sign(b'other', ts, body)}")[0] == 401
        assert post(body + b" ", f"t={ts},v1={sign(secret, ts, body)}")[0] == 401
        old = str(int(time.time()) - 3600)
        assert post(body, f"t={old},v1={sign(secret, old, body)}")[0] == 401
        assert post(body, "")[0] == 401
    finally:
        server.shutdown()
        server.server_close()
    assert count(intake.engine, kind="clicked") == 1


def test_conversion_goes_to_the_last_touch_inside_the_window(sqlite_url, redis_url, profile_url):
    from tests.delivery.conftest import Clock

    profiles = make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(3)])
    clock = Clock()
    core = build_core(sqlite_url, redis_url, profiles, clock=clock)
    plan = approved_plan(core, spec([
        touch("first", external_ids=["u1", "u2"], schedule=None),
        touch("second", external_ids=["u1"])], goal_event="order_paid"))
    core.run_touch(plan.id, "first", "a")
    clock.advance(3_600_000)
    core.run_touch(plan.id, "second", "a")
    t_second = clock()
    attribution = Attribution(core.store.engine, window_ms=86_400_000, clock=clock)
    events = [
        GoalEvent("e1", 1, "order_paid", t_second + 1000, 42.0),   # last touch: "second"
        GoalEvent("e2", 1, "order_paid", t_second + 2000, 10.0),   # same message: counted once
        GoalEvent("e3", 2, "order_paid", t_second + 2 * 86_400_000, 5.0),  # outside window
        GoalEvent("e4", 3, "order_paid", t_second + 1000, 5.0),    # never contacted
        GoalEvent("e5", 2, "page_view", t_second + 1000),          # not a goal event
    ]
    assert attribution.attribute(events) == 1
    assert attribution.attribute(events) == 0  # replaying the stream adds nothing
    with core.store.engine.connect() as conn:
        rows = conn.execute(select(outcomes).where(outcomes.c.kind == "converted")).all()
    assert [(r.touch_id, r.user_id, r.value, r.event_id) for r in rows] == \
        [("second", 1, 42.0, "e1")]
    first = Attribution(core.store.engine, window_ms=86_400_000, rule="first_touch",
                        clock=clock)
    assert first.attribute([GoalEvent("e6", 2, "order_paid", t_second + 1000, 7.0)]) == 1
