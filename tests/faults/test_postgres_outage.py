"""PostgreSQL goes away mid-run (a cut proxy link): the profile service answers UNAVAILABLE with
RetryInfo, loses nothing it acknowledged, and recovers by itself when the link returns."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from marketing.profile.v1 import profile_service_pb2 as pb
from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc
from services.common.errors import rich_details
from services.common.profile_tables import events
from services.common.testing import (
    channel,
    postgres_schema,
    postgres_url,
    running_server,
    service_settings,
)
from services.profile.servicer import build
from tests.faults.proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def events_batch(start: int, count: int) -> pb.IngestEventsRequest:
    now = int(time.time())
    return pb.IngestEventsRequest(events=[
        pb.Event(event_id=f"pg-{i:05d}", user_id=f"pg-user-{i % 11}", event_type="view",
                 timestamp=timestamp_pb2.Timestamp(seconds=now - 60 - i))
        for i in range(start, start + count)
    ])


def unavailable_with_retry_info(call) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    info = [d for d in rich_details(err.value) if isinstance(d, error_details_pb2.RetryInfo)]
    assert info and info[0].retry_delay.ToMilliseconds() > 0, rich_details(err.value)


@pytest.fixture
def profile_via_proxy(tmp_path, redis_url):
    if postgres_url() is None:
        pytest.skip("PostgreSQL not reachable (set TEST_POSTGRES_URL or run it on 127.0.0.1:5432)")
    with postgres_schema("faults") as direct_url:
        parsed = make_url(direct_url)
        with TcpProxy(parsed.host, parsed.port or 5432) as proxy:
            via_proxy = parsed.set(host="127.0.0.1", port=proxy.port)
            url = via_proxy.render_as_string(hide_password=False)
            settings = service_settings("profile", tmp_path, database_url=url,
                                        profile_read_database_url=url, redis_url=redis_url)
            with running_server(settings, build(settings)) as (_, address):
                direct = create_engine(direct_url)
                yield pb_grpc.ProfileServiceStub(channel(address, "operator")), proxy, direct
                direct.dispose()


def test_profile_answers_unavailable_while_postgres_is_cut_and_recovers(profile_via_proxy):
    stub, proxy, direct = profile_via_proxy
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="before")))
    assert stub.IngestEvents(events_batch(0, 100)).accepted_count == 100
    assert proxy.connections > 0, "the service must reach PostgreSQL through the proxy"

    proxy.cut()
    get = pb.GetProfileRequest(name="profiles/before")
    unavailable_with_retry_info(lambda: stub.GetProfile(get))
    unavailable_with_retry_info(lambda: stub.CreateProfile(
        pb.CreateProfileRequest(profile=pb.Profile(external_id="during"))))
    unavailable_with_retry_info(lambda: stub.IngestEvents(events_batch(100, 100)))
    # The server itself is fine: PostgreSQL, reached directly, still has what was acknowledged.
    with direct.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 100

    proxy.restore()
    # No restart: the connection pool replaces its dead connections on the next calls.
    deadline = time.monotonic() + 15
    while True:
        try:
            assert stub.GetProfile(get).profile.external_id == "before"
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            assert time.monotonic() < deadline, "did not recover within 15 s"
            time.sleep(0.2)
    for _ in range(20):  # every pooled connection works again, not just one
        assert stub.GetProfile(get).profile.external_id == "before"
    # The client re-sends the refused calls; each lands exactly once.
    stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id="during")))
    again = stub.IngestEvents(events_batch(100, 100))
    assert again.accepted_count + again.duplicate_count == 100
    with direct.connect() as conn:
        ids = conn.execute(select(events.c.event_id)).scalars().all()
    assert sorted(ids) == [f"pg-{i:05d}" for i in range(200)]
