"""The shared call pipeline against a real server on loopback: auth, errors, health, reflection."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from services.common import auth, errors
from services.common.observability import RPC_HANDLED
from services.common.server import ServiceDefinition, remaining_time
from services.common.testing import channel, running_server, service_settings

SERVICE = "test.v1.Echo"


class Echo:
    """A tiny service whose handlers exercise each path of the pipeline."""

    def __init__(self):
        self.release = threading.Event()
        self.seen_deadline: float | None = None

    def Say(self, request, context):
        text = request.value
        if text == "bad":
            raise errors.InvalidArgument("value", "must not be 'bad'")
        if text == "missing":
            raise errors.NotFound("echo", "echoes/missing")
        if text == "crash":
            raise RuntimeError("secret internals /etc/passwd")
        if text == "redis-down":
            import redis

            raise redis.exceptions.ConnectionError("connection refused")
        if text == "whoami":
            return wrappers_pb2.StringValue(value=auth.current_principal().subject)
        if text == "deadline":
            self.seen_deadline = remaining_time()
            return wrappers_pb2.StringValue(value=f"{self.seen_deadline:.3f}")
        if text == "slow":
            self.release.wait(5)
        return wrappers_pb2.StringValue(value=text)

    def Admin(self, request, context):
        return wrappers_pb2.StringValue(value="ok")

    def Count(self, request, context):
        subject = auth.current_principal().subject
        for i in range(int(request.value)):
            if i == 2 and request.value == "3":
                raise errors.FailedPrecondition("stream stopped", [("STATE", "x", "no")])
            yield wrappers_pb2.StringValue(value=f"{subject}:{i}")


def register(servicer: Echo, server: grpc.Server) -> None:
    def unary(fn):
        return grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=wrappers_pb2.StringValue.FromString,
            response_serializer=wrappers_pb2.StringValue.SerializeToString,
        )

    handlers = {
        "Say": unary(servicer.Say),
        "Admin": unary(servicer.Admin),
        "Count": grpc.unary_stream_rpc_method_handler(
            servicer.Count,
            request_deserializer=wrappers_pb2.StringValue.FromString,
            response_serializer=wrappers_pb2.StringValue.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def call(ch: grpc.Channel, method: str, value: str, timeout: float = 10):
    fn = ch.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )
    return fn(wrappers_pb2.StringValue(value=value), timeout=timeout).value


def stream(ch: grpc.Channel, value: str) -> list[str]:
    fn = ch.unary_stream(
        f"/{SERVICE}/Count",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )
    return [m.value for m in fn(wrappers_pb2.StringValue(value=value), timeout=10)]


@pytest.fixture
def echo_server(tmp_path):
    servicer = Echo()
    definition = ServiceDefinition(
        name="echo",
        register=register,
        servicer=servicer,
        full_name=SERVICE,
        roles={"Say": auth.READERS, "Count": {auth.OPERATOR}, "Admin": set()},
    )
    settings = service_settings("profile", tmp_path, max_message_bytes=64 * 1024)
    with running_server(settings, [definition]) as (server, address):
        yield server, address, servicer


def test_health_reports_serving_per_service_and_overall(echo_server):
    _, address, _ = echo_server
    with grpc.insecure_channel(address) as ch:  # probes need no credential
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ("", SERVICE):
            status = stub.Check(health_pb2.HealthCheckRequest(service=name)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            stub.Check(health_pb2.HealthCheckRequest(service="nope.v1.Nothing"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(echo_server):
    _, address, _ = echo_server
    with grpc.insecure_channel(address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(stub.ServerReflectionInfo(iter([request])))
        names = {s.name for s in response.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


def test_missing_and_unknown_credentials_are_unauthenticated(echo_server):
    _, address, _ = echo_server
    with channel(address, role=None) as ch:
        with pytest.raises(grpc.RpcError) as err:
            call(ch, "Say", "hi")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with channel(address, key="stolen-key") as ch:
        with pytest.raises(grpc.RpcError) as err:
            call(ch, "Say", "hi")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_roles_are_enforced_per_method_and_admin_may_call_everything(echo_server):
    _, address, _ = echo_server
    with channel(address, "operator") as ch:
        assert call(ch, "Say", "whoami") == "olivia"
        with pytest.raises(grpc.RpcError) as err:
            call(ch, "Admin", "x")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel(address, "approver") as ch:
        with pytest.raises(grpc.RpcError) as err:
            stream(ch, "2")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel(address, "admin") as ch:
        assert call(ch, "Admin", "x") == "ok"


def test_invalid_argument_names_the_field(echo_server):
    _, address, _ = echo_server
    with channel(address) as ch:
        with pytest.raises(grpc.RpcError) as err:
            call(ch, "Say", "bad")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.field_violations(err.value) == ["value"]
    info = [d for d in errors.rich_details(err.value) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert info[0].reason == "INVALID_ARGUMENT"


def test_not_found_carries_resource_info(echo_server):
    _, address, _ = echo_server
    with channel(address) as ch:
        with pytest.raises(grpc.RpcError) as err:
            call(ch, "Say", "missing")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    resource = [d for d in errors.rich_details(err.value)
                if isinstance(d, error_details_pb2.ResourceInfo)]
    assert resource[0].resource_name == "echoes/missing"


def test_bugs_become_internal_without_leaking_internals(echo_server):
    _, address, _ = echo_server
    with channel(address) as ch:
        with pytest.raises(grpc.RpcError) as err:
            call(ch, "Say", "crash")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "passwd" not in (err.value.details() or "")
    assert "Traceback" not in (err.value.details() or "")


def test_backend_outage_is_unavailable_with_retry_info(echo_server):
    _, address, _ = echo_server
    with channel(address) as ch:
        with pytest.raises(grpc.RpcError) as err:
            call(ch, "Say", "redis-down")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    retry = [d for d in errors.rich_details(err.value)
             if isinstance(d, error_details_pb2.RetryInfo)]
    assert retry and retry[0].retry_delay.ToMilliseconds() == 1000


def test_oversize_request_is_resource_exhausted(echo_server):
    _, address, _ = echo_server
    with channel(address) as ch:
        with pytest.raises(grpc.RpcError) as err:
            call(ch, "Say", "x" * 200_000)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_streams_see_the_caller_and_map_errors_midway(echo_server):
    _, address, _ = echo_server
    with channel(address, "operator") as ch:
        assert stream(ch, "2") == ["olivia:0", "olivia:1"]
        received = []
        fn = ch.unary_stream(
            f"/{SERVICE}/Count",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            for message in fn(wrappers_pb2.StringValue(value="3"), timeout=10):
                received.append(message.value)
    assert received == ["olivia:0", "olivia:1"]
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(err.value)
    assert status is not None and status.message == "stream stopped"


def test_deadline_propagates_into_the_handler(echo_server):
    _, address, servicer = echo_server
    with channel(address) as ch:
        call(ch, "Say", "deadline", timeout=2.5)
    # The handler sees the caller's budget less the time in transit. The wire carries the
    # timeout rounded up to the next unit gRPC chose (a few ms here), so what remains may
    # read a little above 2.5 s; with no deadline it would be None, with a default one far off.
    assert servicer.seen_deadline is not None and 0 < servicer.seen_deadline <= 2.6


def test_metrics_count_calls_by_code(echo_server):
    _, address, _ = echo_server
    before = RPC_HANDLED.labels(SERVICE, "Say", "INVALID_ARGUMENT")._value.get()
    with channel(address) as ch:
        with pytest.raises(grpc.RpcError):
            call(ch, "Say", "bad")
    after = RPC_HANDLED.labels(SERVICE, "Say", "INVALID_ARGUMENT")._value.get()
    assert after == before + 1


def test_graceful_stop_drains_in_flight_calls(tmp_path):
    servicer = Echo()
    definition = ServiceDefinition("echo", register, servicer, SERVICE, {"Say": auth.READERS})
    settings = service_settings("profile", tmp_path)
    with running_server(settings, [definition]) as (server, address):
        results: list[str] = []
        ch = channel(address)
        worker = threading.Thread(target=lambda: results.append(call(ch, "Say", "slow")))
        worker.start()
        time.sleep(0.3)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 5})
        stopper.start()
        time.sleep(0.3)
        # While draining, the health service already tells probes to stop sending traffic.
        status = server.health.Check(health_pb2.HealthCheckRequest(service=""), None).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        servicer.release.set()
        worker.join(5)
        stopper.join(5)
        ch.close()
    assert results == ["slow"]


def test_anonymous_access_only_with_the_dev_flag(tmp_path):
    definition = ServiceDefinition("echo", register, Echo(), SERVICE, {"Say": auth.READERS})
    settings = service_settings("profile", tmp_path, allow_anonymous=True)
    with running_server(settings, [definition]) as (_, address):
        with channel(address, role=None) as ch:
            assert call(ch, "Say", "whoami") == "anonymous"


def test_malformed_bytes_are_invalid_argument_not_internal(echo_server):
    _, address, _ = echo_server
    with channel(address) as ch:
        raw = ch.unary_unary(f"/{SERVICE}/Say", lambda b: b, lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff", timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.field_violations(err.value) == ["request"]
