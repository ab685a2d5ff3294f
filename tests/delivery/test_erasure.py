"""Erasure notices against a real Redis and SQLite: personal data goes, the ledger stays."""

from __future__ import annotations

import json

import redis as redis_mod
from sqlalchemy import func, select, update

from services.delivery.caps import CapRule
from services.delivery.erasure import ERASURES_STREAM, GROUP, ErasureConsumer
from services.delivery.followups import FollowUps, FollowUpSpec
from services.delivery.tables import sends, sink_messages
from services.delivery.tables_effects import followups
from services.delivery.triggers import (
    DONE_KEY,
    DUE_KEY,
    OPS_SCRIPT,
    TIMERS_KEY,
    Fire,
    TriggeredSender,
    b_key,
    user_key,
)
from tests.delivery.conftest import Clock, approved_plan, build_core, make_profiles, spec, touch


def publish(client, user_id, external_id, kind):
    """An entry with the fields the profile service publishes."""
    return client.xadd(ERASURES_STREAM, {
        "user_id": user_id, "external_id": external_id, "aliases": json.dumps([]),
        "kind": kind, "erasure_id": "e-1" if kind != "merged" else "", "ts_ms": 1})


def count(conn, table, *where):
    return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def test_erasure_removes_personal_data_and_keeps_the_ledger(sqlite_url, redis_url, profile_url):
    profiles = make_profiles(profile_url, [{"consents": {"push": True}}] * 3)
    clock = Clock()
    core = build_core(sqlite_url, redis_url, profiles, clock=clock,
                      rules=(CapRule("push_per_day", 10, "day", channels=("push",)),))
    plan = approved_plan(core, spec([touch("offer", body="20% off", external_ids=["u1"]),
                                     touch("thanks", body="Thank you", external_ids=["u1"])]))
    sender = TriggeredSender(core)
    paths = FollowUps(core.store.engine, sender, clock)
    paths.save(plan, "offer", FollowUpSpec(wait_s=3600, max_retries=2, spacing_s=3600,
                                           next_touch_id="thanks"))
    assert sender.send([Fire(plan.id, "offer", u, f"start-{u}") for u in (1, 2, 3)]).sent == 3
    assert paths.enroll() == 3
    # User 1 also has a dead letter; users 1 and 2 have pending trigger timers.
    engine = core.store.engine
    with engine.begin() as conn:
        conn.execute(update(sends).where(sends.c.user_id == 1)
                     .values(status="dead", reason="recipient refused: u1@example.com"))

    client = redis_mod.Redis.from_url(redis_url)
    client.delete(ERASURES_STREAM)
    ops = client.register_script(OPS_SCRIPT)
    args = []
    for uid in (1, 2):
        args += ["add", f"{plan.id}:offer:ev-{uid}", str(clock() + 10**6), user_key(uid),
                 json.dumps({"plan": plan.id, "touch": "offer", "user": uid,
                             "event": f"ev-{uid}", "a_ts": 0, "deadline": 0, "not_key": "",
                             "corr": ""})]
    ops(keys=[DUE_KEY, "delivery:trg:inflight", TIMERS_KEY, DONE_KEY], args=[2, *args])
    # The B events recorded for users 1 and 2 (what an early payment leaves).
    for uid in (1, 2):
        client.zadd(b_key(uid), {f"{plan.id}:offer:order_paid|o{uid}|pay-{uid}": 5})
    with engine.connect() as conn:
        assert count(conn, sink_messages, sink_messages.c.recipient == "u1") == 1
        ledger_before = conn.execute(
            select(sends.c.id, sends.c.user_id, sends.c.idempotency_key)).all()

    consumer = ErasureConsumer(engine, client, consumer="c1", clock=clock)
    consumer.ensure_group()
    publish(client, 1, "u1", "erased")
    assert consumer.poll_once(block_ms=10) == 1

    with engine.connect() as conn:
        assert count(conn, sink_messages, sink_messages.c.recipient == "u1") == 0
        assert count(conn, sink_messages) == 2
        assert count(conn, sends, sends.c.reason.is_not(None)) == 0
        assert conn.execute(select(sends.c.id, sends.c.user_id,
                                   sends.c.idempotency_key)).all() == ledger_before
        status = dict(conn.execute(select(followups.c.user_id, followups.c.status)).all())
        assert status == {1: "dropped", 2: "waiting", 3: "waiting"}
    assert paths.enroll() == 0  # the kept ledger does not re-enrol the erased user
    assert client.hget(TIMERS_KEY, f"{plan.id}:offer:ev-1") is None
    assert client.zscore(DUE_KEY, f"{plan.id}:offer:ev-1") is None
    assert not client.exists(user_key(1)) and not client.exists(b_key(1))
    assert client.exists(b_key(2))
    assert client.hget(TIMERS_KEY, f"{plan.id}:offer:ev-2") is not None
    assert client.xpending(ERASURES_STREAM, GROUP)["pending"] == 0

    # A redelivered notice (a dead consumer's pending entry, claimed) is harmless.
    publish(client, 1, "u1", "erased")
    client.xreadgroup(GROUP, "dead", {ERASURES_STREAM: ">"}, count=10)
    other = ErasureConsumer(engine, client, consumer="c2", clock=clock, claim_idle_ms=0)
    assert other.poll_once(block_ms=10) == 1
    assert client.xpending(ERASURES_STREAM, GROUP)["pending"] == 0
    with engine.connect() as conn:
        assert count(conn, sink_messages) == 2
        assert count(conn, followups, followups.c.status == "waiting") == 2

    # A merge names the merged-away id: nobody is erased.
    publish(client, 2, "u2", "merged")
    assert consumer.poll_once(block_ms=10) == 1
    with engine.connect() as conn:
        assert count(conn, sink_messages, sink_messages.c.recipient == "u2") == 1
        assert count(conn, followups, followups.c.status == "waiting") == 2
    assert client.hget(TIMERS_KEY, f"{plan.id}:offer:ev-2") is not None
    client.close()
