"""Score write-back: scores and the model version stored as traits through the profile service."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ScoreWriter(Protocol):
    """Stores one score per user for a model; returns how many were stored."""

    def write_scores(self, model_name: str, model_version: str, user_ids: np.ndarray,
                     scores: np.ndarray, scored_ms: int) -> int: ...


class ProfileScoreWriter:
    """Writes through the profile service's WriteScores RPC, in chunks sent concurrently."""

    def __init__(self, channel, chunk_size: int = 5_000, in_flight: int = 4,
                 timeout_s: float = 60.0):
        from marketing.profile.v1 import profile_service_pb2_grpc

        self.stub = profile_service_pb2_grpc.ProfileServiceStub(channel)
        self.chunk_size = chunk_size
        self.in_flight = in_flight
        self.timeout_s = timeout_s

    def write_scores(self, model_name: str, model_version: str, user_ids: np.ndarray,
                     scores: np.ndarray, scored_ms: int) -> int:
        from google.protobuf.timestamp_pb2 import Timestamp

        from marketing.profile.v1 import profile_service_pb2 as pb

        when = Timestamp()
        when.FromMilliseconds(int(scored_ms))
        pending, written = [], 0
        for start in range(0, len(user_ids), self.chunk_size):
            ids = user_ids[start:start + self.chunk_size].tolist()
            values = scores[start:start + self.chunk_size].tolist()
            request = pb.WriteScoresRequest(scores=[
                pb.ModelScore(user_id=u, model_name=model_name, score=s,
                              model_version=model_version, score_time=when)
                for u, s in zip(ids, values)])
            pending.append(self.stub.WriteScores.future(request, timeout=self.timeout_s))
            if len(pending) >= self.in_flight:
                written += pending.pop(0).result().written_count
        for future in pending:
            written += future.result().written_count
        return written
