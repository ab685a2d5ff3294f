"""Plain RPC round trip: profile GetProfile against a no-op RPC on the same server pipeline."""

from __future__ import annotations

import os
import tempfile

import grpc
from google.protobuf import empty_pb2

from bench.loadgen import Call, run_load
from services.common import auth
from services.common.server import ServiceDefinition, create_server
from services.common.testing import ROLE_KEYS, channel, service_settings

NOOP_SERVICE = "marketing.bench.v1.NoopService"
SIZES = {
    # profiles seeded, seconds per latency run, seconds per throughput run
    "quick": {"profiles": 500, "latency_s": 3.0, "load_s": 4.0},
    "full": {"profiles": 20_000, "latency_s": 10.0, "load_s": 15.0},
}


def noop_definition() -> ServiceDefinition:
    """A service whose one RPC, Ping, does nothing: mounted with ``create_server`` it goes
    through the same pipeline (auth, deadline, logging, metrics, error mapping) as a real one."""

    def ping(request, context):
        return empty_pb2.Empty()

    handler = grpc.method_handlers_generic_handler(NOOP_SERVICE, {
        "Ping": grpc.unary_unary_rpc_method_handler(
            ping,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        ),
    })
    return ServiceDefinition(
        name="noop",
        register=lambda _servicer, server: server.add_generic_rpc_handlers((handler,)),
        servicer=None,
        full_name=NOOP_SERVICE,
        roles={"Ping": auth.ROLES},
    )


def _seed_profiles(address: str, count: int) -> list[str]:
    """Creates ``count`` profiles through the public API; returns their resource names."""
    from marketing.profile.v1 import profile_service_pb2 as pb
    from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc

    names = []
    with channel(address, "operator") as ch:
        stub = pb_grpc.ProfileServiceStub(ch)
        futures = []
        for i in range(count):
            request = pb.CreateProfileRequest(profile=pb.Profile(external_id=f"bench-{i:07d}"))
            futures.append(stub.CreateProfile.future(request))
            if len(futures) >= 64:
                names += [f.result().profile.name for f in futures]
                futures = []
        names += [f.result().profile.name for f in futures]
    return names


def _row(name, figure, anchor, unit, goal, higher_is_better, notes) -> dict:
    ratio = figure / anchor if anchor else float("inf")
    return {"name": name, "figure": figure, "anchor": anchor, "unit": unit, "ratio": ratio,
            "goal": goal, "higher_is_better": higher_is_better, "notes": notes}


def run(size: str) -> list[dict]:
    from marketing.profile.v1 import profile_service_pb2 as pb
    from services.profile.servicer import build

    params = SIZES[size]
    cpus = os.cpu_count() or 1
    processes = max(1, cpus // 2)
    concurrency = 8
    saved_log = os.environ.get("LOG_LEVEL")
    # Per-call INFO logs would measure the terminal, not the RPC.
    os.environ["LOG_LEVEL"] = "WARNING"
    with tempfile.TemporaryDirectory(prefix="rpc-bench-") as tmp:
        from services.common.redis_client import EmbeddedRedis

        redis = EmbeddedRedis(os.path.join(tmp, "redis"), persistent=False)
        settings = service_settings("profile", tmp, redis_url=redis.start(), log_level="WARNING")
        try:
            definitions = build(settings) + [noop_definition()]
            server, port = create_server(settings, definitions, address="127.0.0.1:0")
            server.start()
            address = f"127.0.0.1:{port}"
            try:
                names = _seed_profiles(address, params["profiles"])
                key = ROLE_KEYS["operator"]
                get = Call("GetProfile", address, f"/{definitions[0].full_name}/GetProfile",
                           tuple(pb.GetProfileRequest(name=n).SerializeToString() for n in names),
                           api_key=key)
                ping = Call("Ping", address, f"/{NOOP_SERVICE}/Ping",
                            (empty_pb2.Empty().SerializeToString(),), api_key=key)
                # One call at a time from one process: the bare round trip.
                serial = {c.name: run_load([c], processes=1, concurrency=1,
                                           duration=params["latency_s"])
                          for c in (get, ping)}
                # Several processes keeping calls in flight: what the server sustains.
                loaded = {c.name: run_load([c], processes=processes, concurrency=concurrency,
                                           duration=params["load_s"])
                          for c in (get, ping)}
            finally:
                server.stop(0)
        finally:
            redis.stop()
            if saved_log is None:
                os.environ.pop("LOG_LEVEL", None)
            else:
                os.environ["LOG_LEVEL"] = saved_log
    for report in (*serial.values(), *loaded.values()):
        failed = report.total.total - report.total.ok
        if failed:
            raise RuntimeError(f"{failed} calls failed during the benchmark: {report.total.errors}")
    s_get, s_ping = serial["GetProfile"].summary(), serial["Ping"].summary()
    l_get, l_ping = loaded["GetProfile"].summary(), loaded["Ping"].summary()
    where = (f"server in the benchmark process ({cpus} CPUs shared with the clients), "
             f"{params['profiles']} profiles in SQLite, grpc.aio clients in separate processes")
    return [
        _row("rpc.get_profile.round_trip_p50", s_get["p50_ms"], s_ping["p50_ms"], "ms", 3.0, False,
             f"1 client process, 1 call in flight, {params['latency_s']:g} s each; "
             f"GetProfile p90 {s_get['p90_ms']:.2f} / p99 {s_get['p99_ms']:.2f} ms, "
             f"no-op Ping p90 {s_ping['p90_ms']:.2f} / p99 {s_ping['p99_ms']:.2f} ms; {where}"),
        _row("rpc.get_profile.throughput", l_get["rps"], l_ping["rps"], "calls/s", 0.4, True,
             f"{processes} client processes x {concurrency} calls in flight, "
             f"{params['load_s']:g} s each; GetProfile p50/p90/p99 {l_get['p50_ms']:.2f}/"
             f"{l_get['p90_ms']:.2f}/{l_get['p99_ms']:.2f} ms, no-op Ping {l_ping['p50_ms']:.2f}/"
             f"{l_ping['p90_ms']:.2f}/{l_ping['p99_ms']:.2f} ms"),
        _row("rpc.get_profile.loaded_p99", l_get["p99_ms"], l_ping["p99_ms"], "ms", 4.0, False,
             f"tail latency under the load of the throughput row "
             f"({processes} x {concurrency} in flight)"),
    ]
