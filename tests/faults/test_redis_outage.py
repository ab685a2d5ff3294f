"""Redis goes away mid-run (a cut proxy link): delivery answers UNAVAILABLE with RetryInfo,
sends nothing while frequency caps cannot be checked, and recovers by itself."""

from __future__ import annotations

import json
import time

import grpc
import pytest
import redis
from google.rpc import error_details_pb2
from sqlalchemy import create_engine, func, select

from marketing.delivery.v1 import delivery_service_pb2 as pb
from marketing.delivery.v1 import delivery_service_pb2_grpc as pb_grpc
from services.common.errors import rich_details
from services.common.testing import channel, running_server, service_settings
from services.delivery.app import build
from services.delivery.tables import sends, sink_messages
from tests.delivery.conftest import make_profiles
from tests.delivery.test_service import plan_message
from tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.slow

USERS = 3


def retry_info(exc: grpc.RpcError) -> error_details_pb2.RetryInfo | None:
    return next((d for d in rich_details(exc) if isinstance(d, error_details_pb2.RetryInfo)), None)


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture
def delivery(tmp_path, monkeypatch, redis_url):
    upstream = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    make_profiles(f"sqlite:///{tmp_path / 'profile.db'}",
                  [{"consents": {"push": True}, "attrs": {"first_name": f"n{i}"}}
                   for i in range(USERS)])
    monkeypatch.setenv("DELIVERY_PROFILE_SOURCE", "sql")
    monkeypatch.setenv("DELIVERY_STATIC_AUDIENCES",
                       json.dumps({"everyone": list(range(1, USERS + 1))}))
    # The background scheduler is what must pick the work up again once Redis is back.
    monkeypatch.setenv("DELIVERY_SCHEDULER_INTERVAL_SECONDS", "0.3")
    # Two marketing pushes per user and day: the third plan must be held back by the cap,
    # which is only known if the counters survived the outage.
    monkeypatch.setenv("DELIVERY_FREQUENCY_CAPS", json.dumps(
        [{"name": "push_per_day", "limit": 2, "window": "day", "channels": ["push"]}]))
    # Sends claimed by the pass that Redis broke off are taken up again after this lease.
    monkeypatch.setenv("DELIVERY_CLAIM_LEASE_SECONDS", "2")
    with TcpProxy(upstream["host"], upstream["port"]) as proxy:
        settings = service_settings("delivery", tmp_path,
                                    redis_url=f"redis://{proxy.address}/{upstream.get('db', 0)}")
        with running_server(settings, build(settings)) as (_, address):
            engine = create_engine(settings.database_url)
            stubs = {role: pb_grpc.DeliveryServiceStub(channel(address, role))
                     for role in ("operator", "approver")}
            yield stubs, proxy, engine
            engine.dispose()


def scheduled(stubs, name: str) -> str:
    """A plan created, approved by someone else and scheduled to send now."""
    op = stubs["operator"]
    message = plan_message()
    message.display_name = name
    plan = op.CreatePlan(pb.CreatePlanRequest(plan=message)).plan
    op.SubmitPlan(pb.SubmitPlanRequest(name=plan.name))
    stubs["approver"].ApprovePlan(pb.ApprovePlanRequest(name=plan.name,
                                                        content_hash=plan.content_hash))
    op.SchedulePlan(pb.SchedulePlanRequest(name=plan.name))
    return plan.name


def ledger(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(select(sends.c.plan_id, sends.c.user_id, sends.c.status,
                                   sends.c.reason)).all()


def delivered(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(sink_messages)).scalar_one()


def test_delivery_fails_closed_while_redis_is_cut_and_recovers_by_itself(delivery):
    stubs, proxy, engine = delivery
    op = stubs["operator"]
    first = scheduled(stubs, "before the outage")
    # The scheduler may have sent it already; ExecutePlan then has nothing left to do.
    op.ExecutePlan(pb.ExecutePlanRequest(name=first))
    assert wait_until(lambda: delivered(engine) == USERS, timeout=10)

    proxy.cut()
    second = scheduled(stubs, "executed during the outage")
    with pytest.raises(grpc.RpcError) as err:
        op.ExecutePlan(pb.ExecutePlanRequest(name=second))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    info = retry_info(err.value)
    assert info is not None and info.retry_delay.ToMilliseconds() > 0, rich_details(err.value)
    third = scheduled(stubs, "scheduled during the outage")
    # The scheduler keeps trying in the background; nothing may go out meanwhile.
    time.sleep(1.5)
    assert delivered(engine) == USERS, "sent while frequency caps could not be checked"

    proxy.restore()
    # No call from the client: the scheduler takes both plans up again once Redis answers;
    # the second is sent, the third meets the daily cap of two and is suppressed.
    assert wait_until(lambda: len(ledger(engine)) == 3 * USERS, timeout=20), ledger(engine)
    assert wait_until(lambda: delivered(engine) == 2 * USERS, timeout=5), delivered(engine)
    # The client's retry of the refused call (after the delay RetryInfo gave) finds the plan
    # completed by the scheduler and sends nothing again.
    time.sleep(info.retry_delay.ToMilliseconds() / 1000)
    with pytest.raises(grpc.RpcError) as again:
        op.ExecutePlan(pb.ExecutePlanRequest(name=second))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION, again.value
    time.sleep(0.5)
    assert delivered(engine) == 2 * USERS
    rows = ledger(engine)
    by_plan = {}
    for plan_id, user_id, status, reason in rows:
        by_plan.setdefault(plan_id, []).append((user_id, status, reason))
    plans = sorted(by_plan)
    # Every user got the first two plans exactly once and was capped on the third.
    assert [sorted(by_plan[p]) for p in plans[:2]] == [
        [(u, "sent", None) for u in range(1, USERS + 1)]] * 2
    assert sorted(by_plan[plans[2]]) == [
        (u, "suppressed", "frequency_cap:push_per_day") for u in range(1, USERS + 1)]
    assert third.endswith(f"/{plans[2]}")
