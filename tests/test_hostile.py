"""Every RPC of every service: the role matrix, and random or malformed requests never crash it."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import message_factory, timestamp_pb2
from hypothesis import HealthCheck, given, settings, strategies as st

from marketing.common.v1 import common_pb2
from marketing.delivery.v1 import delivery_service_pb2 as dpb
from marketing.delivery.v1 import delivery_service_pb2_grpc as dgrpc
from marketing.profile.v1 import profile_service_pb2 as ppb
from marketing.profile.v1 import profile_service_pb2_grpc as pgrpc
from marketing.segment.v1 import segment_service_pb2 as spb
from marketing.segment.v1 import segment_service_pb2_grpc as sgrpc
from services.common import auth
from services.common.errors import field_violations
from services.common.testing import ROLE_KEYS, channel
from tests.suite import ORDER, running_suite, service_descriptor

pytestmark = pytest.mark.slow

NO_STATUS_LEAK = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
IDENTITY = (lambda b: b, lambda b: b)


@pytest.fixture(scope="module")
def suite(tmp_path_factory, embedded_redis):
    with running_suite(tmp_path_factory.mktemp("suite"), embedded_redis) as started:
        yield started


def rpcs():
    for service in ORDER:
        for method in service_descriptor(service).methods:
            yield service, method


def caller(ch: grpc.Channel, method: d.MethodDescriptor):
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming and method.server_streaming:
        rpc = ch.stream_stream(path, *IDENTITY)
        return lambda payload: list(rpc(iter([payload]), timeout=20))
    if method.client_streaming:
        rpc = ch.stream_unary(path, *IDENTITY)
        return lambda payload: rpc(iter([payload]), timeout=20)
    if method.server_streaming:
        rpc = ch.unary_stream(path, *IDENTITY)
        return lambda payload: list(rpc(payload, timeout=20))
    rpc = ch.unary_unary(path, *IDENTITY)
    return lambda payload: rpc(payload, timeout=20)


def code_of(fn, payload: bytes) -> grpc.StatusCode:
    try:
        fn(payload)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_every_rpc_declares_its_roles(suite):
    for service, method in rpcs():
        definition = suite[service]["definitions"][0]
        assert method.name in definition.roles, f"{service}: {method.name} has no roles"


@pytest.mark.parametrize("role", [None, *ROLE_KEYS])
def test_role_matrix_every_rpc_reachable_by_exactly_its_roles(suite, role):
    for service in ORDER:
        definition = suite[service]["definitions"][0]
        with channel(suite[service]["address"], role) as ch:
            for method in service_descriptor(service).methods:
                code = code_of(caller(ch, method), b"")
                allowed = set(definition.roles.get(method.name, ())) | {auth.ADMIN}
                where = f"{service}.{method.name} as {role}: {code}"
                if role is None:
                    assert code == grpc.StatusCode.UNAUTHENTICATED, where
                elif role in allowed:
                    assert code not in {grpc.StatusCode.PERMISSION_DENIED,
                                        grpc.StatusCode.UNAUTHENTICATED}, where
                    assert code not in NO_STATUS_LEAK, where
                else:
                    assert code == grpc.StatusCode.PERMISSION_DENIED, where


SCALARS = {
    d.FieldDescriptor.TYPE_STRING: st.one_of(
        st.text(max_size=40), st.sampled_from(["", " ", "../../etc", "'; DROP TABLE profiles;--",
                                               "{{ ''.__class__.__mro__ }}", "\x00", "a" * 300])),
    d.FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    d.FieldDescriptor.TYPE_BOOL: st.booleans(),
    d.FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    d.FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    d.FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    d.FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    d.FieldDescriptor.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    d.FieldDescriptor.TYPE_FIXED64: st.integers(0, 2**64 - 1),
    d.FieldDescriptor.TYPE_ENUM: st.integers(-3, 12),
}


def message_strategy(descriptor: d.Descriptor, depth: int = 0):
    """Random messages of a type: any subset of fields, extreme scalars, unknown enum values."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3 or descriptor.full_name.startswith("google.protobuf.Any"):
        return st.just(cls())

    fields = {}
    for field in descriptor.fields:
        if field.type == d.FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                value = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3) \
                    if all(f.type == d.FieldDescriptor.TYPE_STRING
                           for f in field.message_type.fields) else st.just({})
            else:
                inner = message_strategy(field.message_type, depth + 1)
                value = st.lists(inner, max_size=3) if _is_repeated(field) else inner
        else:
            base = SCALARS.get(field.type, st.none())
            value = st.lists(base, max_size=4) if _is_repeated(field) else base
        fields[field.name] = st.one_of(st.none(), value)

    def build(values):
        message = cls()
        for name, value in values.items():
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            try:
                _assign(message, field, value)
            except (TypeError, ValueError):
                continue
        return message

    return st.fixed_dictionaries(fields).map(build)


def _is_repeated(field) -> bool:
    # protobuf 7 dropped FieldDescriptor.label; older releases lack is_repeated.
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return field.label == d.FieldDescriptor.LABEL_REPEATED


def _assign(message, field, value) -> None:
    target = getattr(message, field.name)
    if field.type == d.FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry:
            target.update(value)
        elif _is_repeated(field):
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.CopyFrom(value)
    elif _is_repeated(field):
        target.extend(value)
    else:
        setattr(message, field.name, value)


@pytest.mark.parametrize("service,method", list(rpcs()), ids=lambda x: getattr(x, "name", x))
def test_random_requests_never_crash_an_rpc(suite, service, method):
    strategy = st.one_of(
        message_strategy(method.input_type).map(lambda m: m.SerializeToString()),
        st.binary(max_size=64),  # malformed protobuf on the wire
    )
    with channel(suite[service]["address"], "admin") as ch:
        call = caller(ch, method)

        @settings(max_examples=12, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def check(payload):
            code = code_of(call, payload)
            assert code not in NO_STATUS_LEAK, f"{method.full_name}: {code}"

        check()


# -- explicit attacks ---------------------------------------------------------------------

INJECTIONS = ["x'); DROP TABLE profiles; --", "' OR '1'='1", "x\" OR 1=1 --", "%' --",
              "\\'; DELETE FROM events; --"]


def test_sql_in_rule_strings_is_data_and_in_field_names_is_refused(suite):
    with channel(suite["profile"]["address"], "admin") as ch:
        profiles = pgrpc.ProfileServiceStub(ch)
        profiles.CreateAttribute(ppb.CreateAttributeRequest(attribute=ppb.Attribute(
            name="attributes/member_level", value_type=common_pb2.VALUE_TYPE_STRING)))
        for i, level in enumerate(["silver", INJECTIONS[1]]):
            profiles.CreateProfile(ppb.CreateProfileRequest(profile=ppb.Profile(
                external_id=f"inj-{i}",
                attributes={"member_level": common_pb2.Value(string_value=level)})))
    with channel(suite["segment"]["address"], "operator") as ch:
        segments = sgrpc.SegmentServiceStub(ch)
        total = segments.EstimateSegment(spb.EstimateSegmentRequest(
            rule_text='member_level = "silver"')).population
        for payload in INJECTIONS:
            text = 'member_level = "' + payload.replace("\\", "\\\\").replace('"', '\\"') + '"'
            response = segments.EstimateSegment(spb.EstimateSegmentRequest(rule_text=text))
            # A payload is a value compared as data: it matches only a user holding it.
            assert response.count == (1 if payload == INJECTIONS[1] else 0), payload
            assert response.population == total
        with pytest.raises(grpc.RpcError) as err:
            segments.EstimateSegment(spb.EstimateSegmentRequest(
                rule_text='member_level; DROP TABLE profiles = "x"'))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(err.value) == ["rule_text"]
        # The store is intact.
        assert segments.EstimateSegment(spb.EstimateSegmentRequest(
            rule_text='member_level = "silver"')).count == 1


def test_template_escapes_are_refused_when_the_plan_is_saved(suite):
    start = timestamp_in(3600)
    with channel(suite["delivery"]["address"], "operator") as ch:
        plans = dgrpc.DeliveryServiceStub(ch)
        for body in ("{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}",
                     "{% for x in range(10**9) %}{% endfor %}{{ x"):
            plan = dpb.Plan(
                display_name="escape", goal_type=dpb.GOAL_TYPE_CONVERT,
                category=dpb.CATEGORY_MARKETING, start_time=start, end_time=timestamp_in(7200),
                touches=[dpb.Touch(touch_id="t1", channel=common_pb2.CHANNEL_PUSH,
                                   content=dpb.Content(title="hi", body=body),
                                   audience=dpb.Audience(users=dpb.UserList(external_ids=["u"])))])
            with pytest.raises(grpc.RpcError) as err:
                plans.CreatePlan(dpb.CreatePlanRequest(plan=plan))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, body
            assert any("content.body" in f for f in field_violations(err.value)), body


def timestamp_in(seconds: int):
    return timestamp_pb2.Timestamp(seconds=int(time.time()) + seconds)


@pytest.mark.parametrize("service", ORDER)
def test_oversized_requests_are_resource_exhausted_everywhere(suite, service):
    method = service_descriptor(service).methods[0]
    limit = suite[service]["settings"].max_message_bytes
    with channel(suite[service]["address"], "admin") as ch:
        code = code_of(caller(ch, method), b"\x0a" + b"\xff" * (limit + 1024))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
