"""Members of segment snapshots, read from the segment service over gRPC."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import grpc
import numpy as np

from services.common.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable

SNAPSHOT_NAME = re.compile(r"^segments/[^/\s]+/snapshots/(latest|[1-9][0-9]{0,17})$")

# Members per streamed message asked of the segment service (its maximum).
STREAM_BATCH = 10_000


def check_snapshot_name(name: str, field: str) -> None:
    if not SNAPSHOT_NAME.match(name):
        raise InvalidArgument(field, "must be segments/{id}/snapshots/{version} or "
                              "segments/{id}/snapshots/latest")


class SegmentMembers:
    """Streams a snapshot's member ids from the segment service, chunk by chunk, so scoring
    starts on the first chunk while the rest is still on the wire.

    The channel is opened on first use: the segment service may start after this one, and a
    deployment that never scores snapshots never needs it."""

    def __init__(self, open_channel: Callable[[], grpc.Channel]):
        self._open = open_channel
        self._channel: grpc.Channel | None = None
        self._stub = None
        self._lock = threading.Lock()

    def _members_rpc(self):
        with self._lock:
            if self._stub is None:
                from marketing.segment.v1 import segment_service_pb2_grpc as seg_grpc

                self._channel = self._open()
                self._stub = seg_grpc.SegmentServiceStub(self._channel)
            return self._stub.StreamSnapshotMembers

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel, self._stub = None, None

    def chunks(self, name: str, chunk_size: int, field: str,
               resolved: list[str] | None = None) -> Iterator[np.ndarray]:
        """Internal ids of the snapshot's members in chunks of ``chunk_size`` (id order).
        ``resolved`` receives the snapshot's full name (``latest`` resolved) when known."""
        from marketing.segment.v1 import segment_service_pb2 as seg_pb

        check_snapshot_name(name, field)
        request = seg_pb.StreamSnapshotMembersRequest(name=name, batch_size=STREAM_BATCH)
        pending: list[np.ndarray] = []
        held = 0
        try:
            for message in self._members_rpc()(request):
                if resolved is not None and not resolved and message.snapshot:
                    resolved.append(message.snapshot)
                ids = np.fromiter((m.user_id for m in message.members), dtype=np.int64,
                                  count=len(message.members))
                pending.append(ids)
                held += len(ids)
                while held >= chunk_size:
                    joined = np.concatenate(pending)
                    yield joined[:chunk_size]
                    rest = joined[chunk_size:]
                    pending, held = [rest], len(rest)
        except grpc.RpcError as exc:
            raise _translate(exc, name, field) from None
        if held:
            yield np.concatenate(pending)


def _translate(exc: grpc.RpcError, name: str, field: str) -> Exception:
    """The segment service's refusal, restated as this request's error."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound("segment snapshot", name)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(field, f"the segment service refused it: {details}")
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return PermissionDenied(f"the segment service refused this service: {details}")
    return Unavailable(f"the segment service could not stream {name}: {code.name} {details}")
