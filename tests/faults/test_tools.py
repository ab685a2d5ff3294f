"""The fault and load tools themselves: the cuttable proxy and the multi-process load generator."""

from __future__ import annotations

import time

import grpc
import pytest
import redis
from google.protobuf import empty_pb2

from bench.loadgen import Call, percentile, run_load
from bench.rpc_bench import noop_definition
from services.common.testing import ROLE_KEYS, running_server, service_settings
from tests.faults.proxy import TcpProxy


def test_proxy_forwards_cuts_and_restores_a_real_redis(redis_url):
    upstream = redis.Redis.from_url(redis_url)
    host, port = upstream.connection_pool.connection_kwargs["host"], upstream.connection_pool.connection_kwargs["port"]
    with TcpProxy(host, port) as proxy:
        client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=2,
                             socket_connect_timeout=2)
        client.set("faults:probe", "1")
        assert upstream.get("faults:probe") == b"1"
        proxy.cut()
        # The open connection is reset and a new one is refused: both raise ConnectionError.
        for _ in range(2):
            with pytest.raises(redis.ConnectionError):
                client.get("faults:probe")
        # The real server is untouched by the outage.
        assert upstream.get("faults:probe") == b"1"
        proxy.restore()
        assert client.get("faults:probe") == b"1"
        assert proxy.connections >= 2


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


@pytest.fixture
def noop_server(tmp_path):
    settings = service_settings("profile", tmp_path)
    with running_server(settings, [noop_definition()]) as (_server, address):
        yield address


def test_loadgen_counts_every_call_from_separate_processes(noop_server):
    ping = Call("ping", noop_server, "/marketing.bench.v1.NoopService/Ping",
                (empty_pb2.Empty().SerializeToString(),), api_key=ROLE_KEYS["operator"])
    report = run_load([ping], processes=2, concurrency=4, count=400, warmup=5)
    stats = report.calls["ping"]
    assert stats.total == 400 and stats.ok == 400 and not stats.errors
    assert len(stats.latencies_s) == 400
    assert 0 < stats.percentile_ms(50) <= stats.percentile_ms(90) <= stats.percentile_ms(99)
    assert report.throughput() > 0


def test_loadgen_reports_status_codes_of_failed_calls(noop_server):
    denied = Call("denied", noop_server, "/marketing.bench.v1.NoopService/Ping",
                  (b"",), api_key=None)
    missing = Call("missing", noop_server, "/marketing.bench.v1.NoopService/Nothing",
                   (b"",), api_key=ROLE_KEYS["operator"])
    started = time.monotonic()
    report = run_load([denied, missing], processes=2, concurrency=2, duration=1.0, warmup=0)
    assert time.monotonic() - started < 30
    assert report.calls["denied"].errors.keys() == {grpc.StatusCode.UNAUTHENTICATED.name}
    assert report.calls["missing"].errors.keys() == {grpc.StatusCode.UNIMPLEMENTED.name}
    assert report.calls["denied"].ok == 0 and report.total.error_rate == 1.0
