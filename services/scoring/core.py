"""The scoring service's rules: registry, training operations, scoring and write-back."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from services.common.errors import FailedPrecondition, InvalidArgument
from services.scoring.evaluation import evaluate_scores
from services.scoring.features import (
    FeatureBatch,
    FeatureSpec,
    UserReader,
    apply_defaults,
    check_known,
    iter_feature_chunks,
    load_features,
    now_ms,
)
from services.scoring.onnx_model import LoadedModel, OutputSpec
from services.scoring.operations import OperationRunner
from services.scoring.registry import (
    PRODUCTION,
    ModelRegistry,
    parse_model_name,
    parse_version_name,
)
from services.scoring.segments import SegmentMembers
from services.scoring.store import ModelVersion
from services.scoring.training import (
    LabelSpec,
    TrainingRequest,
    build_dataset,
    train,
    validate_request,
)
from services.scoring.writeback import ScoreWriter


@functools.lru_cache(maxsize=1024)
def parse_model_ref(ref: str, field: str = "model") -> tuple[str, int | str]:
    """``models/{m}/versions/{n}``, ``models/{m}@{alias}`` or ``models/{m}`` (production)."""
    if "/versions/" in ref or "@" in ref:
        return parse_version_name(ref, field)
    return parse_model_name(ref, field), PRODUCTION


@dataclasses.dataclass
class ScoredBatch:
    """Scores of a batch of users; ``found`` False marks users the profile store lacks."""

    model: str
    external_ids: list[str]
    user_ids: np.ndarray
    found: np.ndarray
    scores: np.ndarray


@dataclasses.dataclass(slots=True)
class UserScores:
    """Scores of the users asked for, in the order asked, as plain lists (what a response is
    built from); ``found`` False marks a user the profile store lacks, whose score is NaN and
    whose other id is empty (0 or "")."""

    model: str
    external_ids: list[str]
    user_ids: list[int]
    found: list[bool]
    scores: list[float]


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
    max_model_bytes: int = 64 * 1024 * 1024
    intra_op_threads: int = 1
    training_workers: int = 1
    training_threads: int = 1
    snapshot_chunk: int = 5_000
    max_users_per_call: int = 10_000
    max_rows_per_call: int = 100_000
    alias_ttl_s: float = 1.0

    @classmethod
    def from_env(cls) -> ScoringConfig:
        from services.common.config import env_float, env_int

        return cls(
            max_model_bytes=env_int("SCORING_MAX_MODEL_BYTES", cls.max_model_bytes),
            intra_op_threads=env_int("SCORING_INTRA_OP_THREADS", cls.intra_op_threads),
            training_workers=env_int("SCORING_TRAINING_WORKERS", cls.training_workers),
            training_threads=env_int("SCORING_TRAINING_THREADS", cls.training_threads),
            snapshot_chunk=env_int("SCORING_SNAPSHOT_CHUNK", cls.snapshot_chunk),
            max_users_per_call=env_int("SCORING_MAX_USERS_PER_CALL", cls.max_users_per_call),
            max_rows_per_call=env_int("SCORING_MAX_ROWS_PER_CALL", cls.max_rows_per_call),
            alias_ttl_s=env_float("SCORING_ALIAS_TTL_SECONDS", cls.alias_ttl_s),
        )


# Settings of the scoring service, with their defaults (documented for operators).
ENV_VARS = {
    "SCORING_MAX_MODEL_BYTES": "largest ONNX file accepted, bytes (default 64 MiB)",
    "SCORING_INTRA_OP_THREADS": "ONNX Runtime intra-op threads per loaded model (default 1)",
    "SCORING_TRAINING_WORKERS": "training operations run at once (default 1)",
    "SCORING_TRAINING_THREADS": "OpenMP/BLAS threads of one training run (default 1)",
    "SCORING_SNAPSHOT_CHUNK": "users per feature query and per streamed message (default 5000)",
    "SCORING_MAX_USERS_PER_CALL": "most users in one ScoreUsers call (default 10000)",
    "SCORING_MAX_ROWS_PER_CALL": "most rows in one ScoreRows call (default 100000)",
    "SCORING_ALIAS_TTL_SECONDS": "how long an alias lookup is cached (default 1)",
}


class ScoringCore:
    """Everything the servicer calls; raises the shared domain errors."""

    def __init__(self, registry: ModelRegistry, profile_engine: Engine, runner: OperationRunner,
                 writer: ScoreWriter | None, config: ScoringConfig | None = None,
                 segments: SegmentMembers | None = None):
        self.registry = registry
        self.profile_engine = profile_engine
        self.runner = runner
        self.writer = writer
        self.config = config or ScoringConfig()
        self.segments = segments

    # Registry -------------------------------------------------------------------------------

    def register(self, model: str, task: str, onnx_bytes: bytes, features: Sequence[FeatureSpec],
                 output: OutputSpec, *, description: str = "", check_features: bool = True,
                 metrics=None, lineage=None, created_by: str = "") -> ModelVersion:
        if check_features:
            check_known(self.profile_engine, features, "feature_schema")
        return self.registry.register(model, task, onnx_bytes, features, output,
                                      description=description, metrics=metrics, lineage=lineage,
                                      created_by=created_by)

    # Training -------------------------------------------------------------------------------

    def start_training(self, request: TrainingRequest, created_by: str = "") -> str:
        """Checks the request now (a bad one never becomes an operation), then trains on a
        worker thread; returns the operation's name."""
        parse_model_name(request.model_name, "model")
        from services.scoring.registry import TASKS

        if request.task not in TASKS:
            raise InvalidArgument("task", f"must be one of {', '.join(TASKS)}")
        validate_request(request)
        check_known(self.profile_engine, request.features, "features")
        summary = {"model": request.model_name, "task": request.task,
                   "algorithm": request.algorithm, "label": request.label.to_dict(),
                   "features": [f.to_dict() for f in request.features],
                   "cutoff_ms": request.cutoff_ms, "params": request.params}

        def work(progress, cancelled, operation: str) -> dict[str, Any]:
            out = train(self.profile_engine, request, progress, cancelled,
                        self.config.training_threads)
            lineage = {**out["lineage"], "operation": operation}
            version = self.registry.register(
                request.model_name, request.task, out["onnx_bytes"], out["features"],
                out["output"], description=request.description, metrics=out["metrics"],
                lineage=lineage, created_by=created_by)
            if request.promote:
                self.registry.promote(version.model_name, version.version, created_by)
            return {"model_name": version.model_name, "version": version.version}

        return self.runner.start("train", summary, work, created_by)

    # Scoring --------------------------------------------------------------------------------

    def _model(self, ref: str, field: str = "model") -> LoadedModel:
        model, version = parse_model_ref(ref, field)
        return self.registry.loaded(model, version)

    def score_users(self, ref: str, *, external_ids: Sequence[str] | None = None,
                    user_ids: Sequence[int] | None = None,
                    as_of_ms: int | None = None) -> UserScores:
        loaded = self._model(ref)
        if loaded.direct:
            # One user, the online path: straight to its own lookup and the bound row.
            if user_ids is not None and len(user_ids) == 1 and not external_ids:
                return self._score_one(loaded, user_ids[0], False, as_of_ms)
            if external_ids is not None and len(external_ids) == 1 and not user_ids:
                return self._score_one(loaded, external_ids[0], True, as_of_ms)
        count = len(external_ids or []) + len(user_ids or [])
        if count == 0:
            raise InvalidArgument("users", "name at least one user")
        if count > self.config.max_users_per_call:
            raise InvalidArgument("users", f"at most {self.config.max_users_per_call} per call")
        if external_ids and user_ids:
            raise InvalidArgument("users", "give external ids or internal ids, not both")
        batch = load_features(self.profile_engine, loaded.specs,
                              external_ids=external_ids or None,
                              user_ids=None if external_ids else user_ids, as_of_ms=as_of_ms)
        found = batch.found
        if found.all():
            scores = loaded.run(batch.numeric, batch.strings)
        else:
            scores = np.full(len(batch), np.nan)
            if found.any():
                scores[found] = loaded.run(batch.numeric[found],
                                           {i: c[found] for i, c in batch.strings.items()})
        return UserScores(loaded.resource_name, batch.external_ids, batch.user_ids.tolist(),
                          found.tolist(), scores.tolist())

    def _score_one(self, loaded: LoadedModel, key, by_external: bool,
                   as_of_ms: int | None) -> UserScores:
        """One user, for a model fed one float matrix: the row read goes straight into the
        model's bound input (missing values take their defaults there), with no batch or
        array built around it."""
        reader = loaded.readers.get(by_external)
        if reader is None or reader.engine is not self.profile_engine:
            reader = loaded.readers[by_external] = UserReader(self.profile_engine, loaded.specs,
                                                              by_external)
        row = reader.read(key if by_external else int(key), as_of_ms)
        if row is None:
            return UserScores(loaded.resource_name, [key if by_external else ""],
                              [0 if by_external else int(key)], [False], [math.nan])
        return UserScores(loaded.resource_name, [row[1]], [row[0]], [True],
                          [loaded.score_row(row[2:])])

    def score_rows(self, ref: str, columns: Sequence[str], values: np.ndarray,
                   string_columns: Sequence[str] = (), string_values: Sequence[str] = (),
                   rows: int | None = None) -> tuple[str, np.ndarray]:
        """Scores inline feature rows: ``values`` is row-major, one column per name of
        ``columns``; features not given take their defaults."""
        loaded = self._model(ref)
        layout = loaded.layout(tuple(columns), tuple(string_columns))
        if rows is None:
            if not columns:
                raise InvalidArgument("row_count", "is required when no numeric column is sent")
            rows = len(values) // len(columns) if len(columns) else 0
        if rows <= 0:
            raise InvalidArgument("row_count", "at least one row is required")
        if rows > self.config.max_rows_per_call:
            raise InvalidArgument("row_count", f"at most {self.config.max_rows_per_call} rows")
        if len(values) != rows * len(columns):
            raise InvalidArgument("values", f"holds {len(values)} numbers; {rows} rows of "
                                  f"{len(columns)} columns need {rows * len(columns)}")
        if len(string_values) != rows * len(string_columns):
            raise InvalidArgument("string_values", f"holds {len(string_values)} strings; {rows} "
                                  f"rows of {len(string_columns)} columns need "
                                  f"{rows * len(string_columns)}")
        if layout.identity and loaded.direct:
            return loaded.resource_name, loaded.run_values(values, rows)
        positions = list(layout.positions)
        string_positions = layout.string_positions
        matrix = np.asarray(values, dtype=np.float64).reshape(rows, len(columns)) \
            if columns else np.empty((rows, 0))
        width = len(loaded.specs)
        if layout.identity:
            # Defaults are filled in place: never in the caller's array.
            numeric = matrix.copy()
        else:
            numeric = np.full((rows, width), np.nan)
            if positions:
                numeric[:, positions] = matrix
        strings: dict[int, np.ndarray] = {}
        if any(s.is_string for s in loaded.specs):
            given = np.asarray(list(string_values), dtype=object).reshape(
                rows, len(string_columns)) if string_columns else None
            for i, spec in enumerate(loaded.specs):
                if spec.is_string:
                    strings[i] = np.full(rows, None, dtype=object)
            for j, pos in enumerate(string_positions):
                strings[pos] = given[:, j].copy()
        apply_defaults(loaded.specs, numeric, strings)
        return loaded.resource_name, loaded.run(numeric, strings)

    def _snapshot_batches(self, specs, snapshot: str, chunk: int, as_of_ms: int | None,
                          resolved: list[str]) -> Iterator[FeatureBatch]:
        if self.segments is None:
            raise FailedPrecondition("segment snapshots cannot be read (no segment service)")
        as_of_ms = now_ms() if as_of_ms is None else as_of_ms
        for ids in self.segments.chunks(snapshot, chunk, "audience.segment_snapshot", resolved):
            yield load_features(self.profile_engine, specs, user_ids=ids, as_of_ms=as_of_ms)

    def score_snapshot(self, ref: str, user_ids: Sequence[int] | None = None, *,
                       as_of_ms: int | None = None, chunk_size: int | None = None,
                       snapshot: str | None = None,
                       resolved: list[str] | None = None) -> Iterator[ScoredBatch]:
        """Scores a whole audience (the given internal ids, the members of a segment snapshot
        read from the segment service, or every profile) chunk by chunk, one feature query
        and one inference per chunk. ``resolved`` receives the snapshot's full name."""
        loaded = self._model(ref)
        chunk = chunk_size or self.config.snapshot_chunk
        if snapshot is not None:
            batches: Iterator[FeatureBatch] = self._snapshot_batches(
                loaded.specs, snapshot, chunk, as_of_ms, [] if resolved is None else resolved)
        else:
            batches = iter_feature_chunks(self.profile_engine, loaded.specs, as_of_ms=as_of_ms,
                                          chunk_size=chunk, user_ids=user_ids)
        for batch in batches:
            scores = np.full(len(batch), np.nan)
            found = batch.found
            if found.any():
                scores[found] = loaded.run(batch.numeric[found],
                                           {i: c[found] for i, c in batch.strings.items()})
            yield ScoredBatch(loaded.resource_name, batch.external_ids, batch.user_ids, found,
                              scores)

    def write_back(self, ref: str, user_ids: Sequence[int] | None = None, *,
                   score_name: str = "", as_of_ms: int | None = None,
                   snapshot: str | None = None) -> dict[str, Any]:
        """Scores the audience and stores each score, with the model version, in the profile
        store (so a segment can say ``churn_risk >= 0.7``)."""
        if self.writer is None:
            raise FailedPrecondition("score write-back is not configured (no profile service)")
        loaded = self._model(ref)
        name = score_name or loaded.name
        parse_model_name(name, "score_name")
        version = f"{loaded.version}"
        scored, written, missing = 0, 0, 0
        when = now_ms()
        for batch in self.score_snapshot(loaded.resource_name, user_ids, as_of_ms=as_of_ms,
                                         snapshot=snapshot):
            found = batch.found
            missing += int((~found).sum())
            if found.any():
                scored += int(found.sum())
                written += self.writer.write_scores(name, version, batch.user_ids[found],
                                                    batch.scores[found], when)
        return {"model": loaded.resource_name, "score_name": name, "scored": scored,
                "written": written, "missing": missing}

    # Evaluation -----------------------------------------------------------------------------

    def evaluate(self, ref: str, label: LabelSpec, cutoff_ms: int | None = None) -> dict:
        """AUC, lift and calibration of a registered model against a labelled population."""
        loaded = self._model(ref)
        probe = TrainingRequest(model_name="x", task="other", label=label,
                                features=loaded.specs, algorithm="logistic_regression")
        validate_request(probe)
        cutoff = cutoff_ms if cutoff_ms is not None else now_ms()
        data = build_dataset(self.profile_engine, loaded.specs, label, cutoff)
        scores = loaded.run(data.numeric, data.strings)
        metrics = evaluate_scores(data.y, scores)
        metrics["model"] = loaded.resource_name
        return metrics
