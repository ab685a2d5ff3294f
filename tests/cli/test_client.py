"""The Python client helpers against a real profile service: stubs, pagination, deadlines, errors."""

from __future__ import annotations

import time

import grpc
import pytest

from services.client import Suite, connect, describe_error, messages, pages, paginate
from services.client.connection import resolve_address, resolve_api_key


def _create(stub, pb, external_id: str):
    return stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(external_id=external_id)))


def test_connect_uses_address_and_key_from_the_environment(monkeypatch, profile_address):
    monkeypatch.setenv("PROFILE_ADDR", profile_address)
    monkeypatch.setenv("MKT_API_KEY", "operator-key")
    assert resolve_address("profile") == profile_address
    assert resolve_address("profile", "10.0.0.1:1") == "10.0.0.1:1"
    assert resolve_api_key() == "operator-key"
    pb = messages("profile")
    stub = connect("profile")
    created = _create(stub, pb, "u-env").profile
    assert created.name == "profiles/u-env" and created.user_id > 0
    fetched = stub.GetProfile(pb.GetProfileRequest(name="profiles/u-env")).profile
    assert fetched.user_id == created.user_id
    stub.channel.close()


def test_explicit_key_overrides_the_environment(monkeypatch, profile_address):
    monkeypatch.setenv("MKT_API_KEY", "operator-key")
    pb = messages("profile")
    stub = connect("profile", profile_address, api_key="wrong-key", retries=False)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetProfile(pb.GetProfileRequest(name="profiles/x"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert describe_error(info.value).startswith("UNAUTHENTICATED: ")


def test_unknown_service_is_refused():
    with pytest.raises(ValueError, match="unknown service"):
        connect("billing")


def test_paginate_walks_every_page_without_touching_the_request(profile_address):
    pb = messages("profile")
    stub = connect("profile", profile_address, "operator-key")
    for i in range(23):
        _create(stub, pb, f"p-{i:02d}")
    request = pb.ListProfilesRequest(page_size=5)
    names = [p.external_id for p in paginate(stub.ListProfiles, request)]
    assert names == [f"p-{i:02d}" for i in range(23)]
    assert request.page_token == ""  # the caller's request is left as it was
    assert len(list(pages(stub.ListProfiles, request))) == 5
    assert len(list(pages(stub.ListProfiles, request, max_pages=2))) == 2


def test_describe_error_names_the_field_at_fault(profile_address):
    pb = messages("profile")
    stub = connect("profile", profile_address, "operator-key")
    with pytest.raises(grpc.RpcError) as info:
        _create(stub, pb, "bad id with spaces")
    line = describe_error(info.value)
    assert line.startswith("INVALID_ARGUMENT: profile.external_id: "), line
    assert "\n" not in line
    with pytest.raises(grpc.RpcError) as info:
        stub.GetProfile(pb.GetProfileRequest(name="profiles/nobody"))
    line = describe_error(info.value)
    assert line.startswith("NOT_FOUND: ") and "nobody" in line, line


def test_describe_error_of_an_unreachable_service():
    pb = messages("profile")
    stub = connect("profile", "127.0.0.1:1", "operator-key", timeout=2.0)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetProfile(pb.GetProfileRequest(name="profiles/x"))
    line = describe_error(info.value)
    assert line.startswith(("UNAVAILABLE: service not reachable", "DEADLINE_EXCEEDED")), line


def test_default_deadline_applies_to_calls_without_their_own(profile_address):
    # A server that accepts the connection but never answers: the channel's default deadline
    # ends the call instead of hanging.
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")

    class Slow(grpc.GenericRpcHandler):
        def service(self, details):
            def wait(request, context):
                time.sleep(5)
                return b""
            return grpc.unary_unary_rpc_method_handler(wait)

    server.add_generic_rpc_handlers((Slow(),))
    server.start()
    try:
        pb = messages("profile")
        stub = connect("profile", f"127.0.0.1:{port}", "operator-key", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.GetProfile(pb.GetProfileRequest(name="profiles/x"))
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3
        # A per-call timeout wins over the default.
        with pytest.raises(grpc.RpcError) as info:
            stub.GetProfile(pb.GetProfileRequest(name="profiles/x"), timeout=0.1)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        server.stop(0)


def test_suite_shares_a_key_and_switches_credentials(profile_address):
    pb = messages("profile")
    with Suite("operator-key", {"profile": profile_address}) as suite:
        _create(suite.profile, pb, "s-1")
        assert suite.profile is suite.stub("profile")
        other = suite.with_key("no-such-key")
        with pytest.raises(grpc.RpcError) as info:
            other.profile.GetProfile(pb.GetProfileRequest(name="profiles/s-1"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        other.close()
