"""SIGKILL the profile service mid-stream of event ingestion: after re-sending, every event is
stored exactly once."""

from __future__ import annotations

import collections
import random
import time

import grpc
import pytest
from google.protobuf import timestamp_pb2
from sqlalchemy import create_engine, func, select

from marketing.profile.v1 import profile_service_pb2 as pb
from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc
from services.common.profile_tables import event_type_counts, events
from services.common.testing import channel
from tests.faults.procs import ServiceProcess

pytestmark = pytest.mark.slow

# Not a multiple of the server's flush (200): the last partial flush commits only when a
# stream closes, so a killed stream always leaves events for the re-send.
EVENTS = 3150
PER_MESSAGE = 50
USERS = 97


def make_messages(now_s: int) -> list[pb.StreamEventsRequest]:
    messages = []
    for start in range(0, EVENTS, PER_MESSAGE):
        batch = []
        for i in range(start, start + PER_MESSAGE):
            ts = timestamp_pb2.Timestamp(seconds=now_s - 3600 - i)
            event = pb.Event(event_id=f"ev-{i:06d}", user_id=f"user-{i % USERS}",
                             event_type="purchase" if i % 3 == 0 else "view", timestamp=ts)
            if i % 3 == 0:
                event.value = 10.0 + i % 7
            batch.append(event)
        messages.append(pb.StreamEventsRequest(events=batch))
    return messages


def stored(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events)).scalar_one()


def stream(stub, messages, kill_after: int | None = None, service: ServiceProcess | None = None,
           engine=None):
    """Streams ``messages``; once the server has committed ``kill_after`` events (and before
    the stream ends), SIGKILLs ``service``. Returns the response, or the RpcError seen."""

    def requests():
        killed = False

        def maybe_kill() -> bool:
            if kill_after is None or stored(engine) < kill_after:
                return False
            # A little jitter, so the kill lands at different points of the server's work
            # (receiving, validating, committing the next flush).
            time.sleep(random.uniform(0, 0.02))
            service.kill()
            return True

        for message in messages:
            yield message
            time.sleep(0.002)
            if not killed:
                killed = maybe_kill()
        # The last partial flush is committed only when the stream closes: hold it open
        # until the kill has happened.
        deadline = time.monotonic() + 30
        while not killed and kill_after is not None and time.monotonic() < deadline:
            time.sleep(0.02)
            killed = maybe_kill()

    try:
        return stub.StreamEvents(requests(), timeout=60)
    except grpc.RpcError as exc:
        return exc


def test_kill_during_stream_ingestion_then_resend_stores_each_event_once(tmp_path, redis_url):
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    random.seed(seed)
    messages = make_messages(int(time.time()))
    # Small flushes, so a kill finds some of the stream committed and some not.
    env = {"PROFILE_STREAM_FLUSH_EVENTS": "200", "PROFILE_MAINTENANCE_INTERVAL_SECONDS": "0",
           "PROFILE_FULL_RECOMPUTE_INTERVAL_SECONDS": "0", "REDIS_URL": redis_url}
    service = ServiceProcess("profile", tmp_path, **env)
    engine = create_engine(service.env["DATABASE_URL"])
    try:
        service.start()
        stored_before_each_round = []
        with channel(service.address, "operator") as ch:
            stub = pb_grpc.ProfileServiceStub(ch)
            # Two crashes at random points of the stream; the client learns nothing about a
            # stream that ends in an error, so it re-sends the whole stream each time.
            for _ in range(2):
                # Each crash comes after a random amount of committed work, beyond what the
                # previous round left (flushes commit 200 events at a time).
                floor = stored(engine) + 1
                ceiling = EVENTS - 400
                # When an earlier round already committed most of the stream, this one is
                # killed as soon as it starts (nothing more may ever commit before the close).
                kill_after = random.randrange(floor, ceiling) if floor < ceiling else floor - 1
                outcome = stream(stub, messages, kill_after, service, engine)
                assert isinstance(outcome, grpc.RpcError), f"seed {seed}: stream outlived the kill"
                assert outcome.code() in {grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.CANCELLED}, outcome
                stored_before_each_round.append(stored(engine))
                service.start()
            response = stream(stub, messages)
        assert not isinstance(response, grpc.RpcError), response
        assert 0 < stored_before_each_round[0] < EVENTS, "the first crash came mid-stream"
        already = stored_before_each_round[-1]
        assert response.accepted_count == EVENTS - already, f"seed {seed}"
        assert response.duplicate_count == already, f"seed {seed}"
        assert response.message_count == len(messages)
        assert service.kills == 2
        with engine.connect() as conn:
            ids = conn.execute(select(events.c.event_id)).scalars().all()
            counts = dict(conn.execute(
                select(event_type_counts.c.event_type, func.sum(event_type_counts.c.count_total))
                .group_by(event_type_counts.c.event_type)).all())
        duplicated = [e for e, n in collections.Counter(ids).items() if n > 1]
        assert not duplicated, f"seed {seed}: stored twice: {duplicated[:5]}"
        assert set(ids) == {f"ev-{i:06d}" for i in range(EVENTS)}, f"seed {seed}"
        # The per-user counters derived in the same transactions agree: nothing counted twice.
        assert counts == {"purchase": EVENTS // 3, "view": EVENTS - EVENTS // 3}, f"seed {seed}"
    finally:
        service.stop()
        engine.dispose()
