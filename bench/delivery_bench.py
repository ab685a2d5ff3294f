"""Delivery benchmarks: fan-out decisions per second and batched cap checks per second."""

from __future__ import annotations

import pathlib
import tempfile
import time

import redis
from sqlalchemy import create_engine, insert

from services.common import profile_tables as pt
from services.common.redis_client import EmbeddedRedis
from services.delivery import caps as caps_mod
from services.delivery import model
from services.delivery.core import DeliveryConfig, DeliveryCore
from services.delivery.gateways import RecordingSink, Router
from services.delivery.sources import SqlProfileDirectory, StaticAudienceSource
from services.delivery.store import Store, open_engine
from services.delivery.tables import sink_messages

SIZES = {"quick": {"audience": 20_000, "cap_batches": 20},
         "full": {"audience": 1_000_000, "cap_batches": 200}}
RULES = (caps_mod.CapRule("push_per_day", 2, "day", channels=("push",)),
         caps_mod.CapRule("marketing_per_week", 5, "rolling", seconds=7 * 86_400))


def _profiles(url: str, n: int) -> None:
    engine = create_engine(url)
    pt.metadata.create_all(engine)
    now = int(time.time() * 1000)
    zones = ("UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York")
    with engine.begin() as conn:
        conn.execute(insert(pt.attribute_catalog).values(name="first_name", value_type="string",
                                                         created_ms=now))
        for start in range(1, n + 1, 50_000):
            ids = range(start, min(start + 50_000, n + 1))
            conn.execute(insert(pt.profiles), [
                {"id": i, "external_id": f"u{i}", "created_ms": now, "updated_ms": now,
                 "time_zone": zones[i % 4], "notifications_disabled": i % 50 == 0}
                for i in ids])
            conn.execute(insert(pt.consents), [
                {"user_id": i, "channel": "push", "subscribed": i % 20 != 0, "updated_ms": now}
                for i in ids])
            conn.execute(insert(pt.profile_attributes), [
                {"user_id": i, "name": "first_name", "str_value": f"N{i}"} for i in ids
                if i % 3])
    engine.dispose()


def bench_fanout(n: int, redis_url: str, workdir: pathlib.Path) -> dict:
    profile_url = f"sqlite:///{workdir / 'profile.db'}"
    _profiles(profile_url, n)
    engine = open_engine(f"sqlite:///{workdir / 'delivery.db'}")
    store = Store(engine)
    client = redis.Redis.from_url(redis_url)
    guard = caps_mod.CapGuard(client, RULES)
    guard.rebuild(engine)
    core = DeliveryCore(store, guard, Router({}, RecordingSink(store)),
                        SqlProfileDirectory(create_engine(profile_url)),
                        StaticAudienceSource({"everyone": range(1, n + 1)}),
                        DeliveryConfig(batch_size=1000))
    now = int(time.time() * 1000)
    spec = model.PlanSpec(
        display_name="bench", goal_type="convert", scene="", goal_event="order_paid",
        goal_target=None, start_ms=now - 3_600_000, end_ms=now + 86_400_000, priority=10,
        category="marketing", owner="bench",
        touches=(model.Touch("t1", "push", model.Content(title="Sale", body="Hi {{ first_name }}",
                                                         defaults={"first_name": "there"}),
                             model.Audience(segment="everyone"), model.Schedule(kind="now")),))
    plan = core.create_plan(spec, "maker")
    core.submit(plan.id, "maker")
    core.approve(plan.id, "checker", {"approver"}, plan.content_hash)
    core.schedule(plan.id, "maker")
    started = time.perf_counter()
    funnel = core.run_due(plan_id=plan.id)
    elapsed = time.perf_counter() - started
    decided = funnel.sent + sum(funnel.removed.values()) + sum(funnel.deferred.values())
    # Anchor: only persisting the same number of messages into the sink table, no guards.
    rows = [{"idempotency_key": f"anchor-{i}", "channel": "push", "recipient": f"u{i}",
             "title": "Sale", "body": "Hi", "payload": {}, "attempts": 1, "first_ms": now,
             "last_ms": now} for i in range(n)]
    started = time.perf_counter()
    for start in range(0, n, 1000):
        with engine.begin() as conn:
            conn.execute(insert(sink_messages), rows[start:start + 1000])
    anchor_elapsed = time.perf_counter() - started
    figure, anchor = decided / elapsed, n / anchor_elapsed
    engine.dispose()
    return {"name": f"delivery fan-out decisions/s ({n:,} users, all guards, ledger, sink)",
            "figure": round(figure, 1), "anchor": round(anchor, 1), "unit": "decisions/s",
            "ratio": round(figure / anchor, 3), "goal": 0.0, "higher_is_better": True,
            "notes": f"sent {funnel.sent}, removed {funnel.removed}, {elapsed:.1f}s; anchor: "
                     "bare bulk inserts of as many sink rows (no goal set by the issue)"}


def bench_caps(batches: int, redis_url: str) -> dict:
    client = redis.Redis.from_url(redis_url)
    guard = caps_mod.CapGuard(client, RULES)
    client.set(caps_mod.READY_KEY, "bench")
    base = 2_000_000_000
    zones = ("UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York")
    now = int(time.time() * 1000)

    def requests(offset: int):
        return [caps_mod.CapRequest(base + offset + i, f"m{offset + i}", "push", "marketing",
                                    zones[i % 4]) for i in range(1000)]

    started = time.perf_counter()
    for b in range(batches):
        guard.check_and_count(requests(b * 1000), now)
    figure = batches * 1000 / (time.perf_counter() - started)
    # Anchor: the same check-and-increment, one user per script call, 1,000 calls per
    # pipeline round trip.
    script = client.register_script(caps_mod.BATCH_SCRIPT)
    script(keys=[caps_mod.READY_KEY], args=[now, 0])  # load it once
    offset0 = batches * 1000
    started = time.perf_counter()
    for b in range(batches):
        keys, args, _ = guard._script_args(requests(offset0 + b * 1000), now, True)
        pipe = client.pipeline(transaction=False)
        k = 1
        for user_arg in args[2:]:
            n_keys = (len(user_arg.split()) - 1) // 4
            script(keys=[keys[0], *keys[k:k + n_keys]], args=[now, 1, user_arg], client=pipe)
            k += n_keys
        pipe.execute()
    anchor = batches * 1000 / (time.perf_counter() - started)
    for key in client.scan_iter(match="delivery:cap:{u:2*", count=5000):
        client.unlink(key)
    return {"name": "cap checks/s, batches of 1,000 users (2 caps each)",
            "figure": round(figure, 1), "anchor": round(anchor, 1), "unit": "checks/s",
            "ratio": round(figure / anchor, 3), "goal": 1.0, "higher_is_better": True,
            "notes": "one Lua call per batch vs one-user script x1000 per pipeline"}


def run(size: str) -> list[dict]:
    params = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        server = EmbeddedRedis(workdir / "redis", persistent=False)
        url = server.start()
        try:
            return [bench_caps(params["cap_batches"], url),
                    bench_fanout(params["audience"], url, workdir)]
        finally:
            server.stop()


if __name__ == "__main__":
    import json
    import sys

    for row in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(json.dumps(row))
