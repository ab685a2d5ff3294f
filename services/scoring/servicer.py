"""gRPC servicer of the scoring service: translates proto messages to the core and back."""

from __future__ import annotations

import base64
import json
import logging

import numpy as np
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from marketing.common.v1 import common_pb2
from marketing.scoring.v1 import scoring_service_pb2 as pb
from marketing.scoring.v1 import scoring_service_pb2_grpc as pb_grpc
from services.common.auth import ADMIN, APPROVER, OPERATOR, READERS, SERVICE, current_principal
from services.common.config import SERVICE_NAMES, Settings, service_address
from services.common.db import make_engine, migrate
from services.common.errors import InvalidArgument
from services.common.server import ServiceDefinition
from services.scoring.core import ScoringConfig, ScoringCore, parse_model_ref
from services.scoring.features import FeatureSpec, release_connections
from services.scoring.onnx_model import OutputSpec
from services.scoring.operations import OperationRunner
from services.scoring.registry import PRODUCTION, ModelRegistry, parse_model_name
from services.scoring.segments import SegmentMembers, check_snapshot_name
from services.scoring.store import ModelVersion, ScoringStore
from services.scoring.training import LabelSpec, TrainingRequest

log = logging.getLogger("marketing.scoring")

FULL_NAME = SERVICE_NAMES["scoring"]
MUTATORS = frozenset({OPERATOR, ADMIN, SERVICE})
ROLES = {
    "RegisterModelVersion": MUTATORS,
    "GetModelVersion": READERS,
    "ListModelVersions": READERS,
    "DeleteModelVersion": frozenset({OPERATOR, ADMIN}),
    "ListModels": READERS,
    "SetAlias": MUTATORS,
    # Production changes are an approver's decision; rollback is open to operators too so
    # that a bad model can be withdrawn at once.
    "PromoteModelVersion": frozenset({APPROVER, ADMIN}),
    "RollbackAlias": frozenset({OPERATOR, APPROVER, ADMIN}),
    "TrainModel": MUTATORS,
    "GetOperation": READERS,
    "ListOperations": READERS,
    "CancelOperation": MUTATORS,
    "ScoreUsers": READERS,
    "ScoreRows": READERS,
    "ScoreSnapshot": READERS,
    "WriteBackScores": MUTATORS,
    "EvaluateModel": READERS,
}

_TASKS = {pb.MODEL_TASK_CONVERSION: "conversion", pb.MODEL_TASK_CHURN: "churn",
          pb.MODEL_TASK_LOOKALIKE: "lookalike", pb.MODEL_TASK_OTHER: "other"}
_TASKS_OUT = {v: k for k, v in _TASKS.items()}
_SOURCES = {pb.FEATURE_SOURCE_ATTRIBUTE: "attribute", pb.FEATURE_SOURCE_TRAIT: "trait",
            pb.FEATURE_SOURCE_EVENT: "event"}
_SOURCES_OUT = {v: k for k, v in _SOURCES.items()}
_TYPES = {pb.FEATURE_TYPE_NUMBER: "number", pb.FEATURE_TYPE_BOOL: "bool",
          pb.FEATURE_TYPE_STRING: "string"}
_TYPES_OUT = {v: k for k, v in _TYPES.items()}
_AGGREGATES = {pb.EVENT_AGGREGATE_COUNT: "count", pb.EVENT_AGGREGATE_SUM: "sum",
               pb.EVENT_AGGREGATE_DAYS_SINCE_LAST: "days_since_last"}
_AGGREGATES_OUT = {v: k for k, v in _AGGREGATES.items()}
_STATE_CODES = {"cancelled": code_pb2.CANCELLED}


# The range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def _ms(ts: timestamp_pb2.Timestamp, field: str) -> int:
    """Epoch milliseconds of a Timestamp, refusing values outside the type's valid range
    (protobuf's own conversion raises a bare ValueError that would surface as INTERNAL)."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS:
        raise InvalidArgument(f"{field}.seconds", "must lie between 0001-01-01 and 9999-12-31")
    if not 0 <= ts.nanos <= 999_999_999:
        raise InvalidArgument(f"{field}.nanos", "must be between 0 and 999999999")
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def _optional_ms(request, field: str) -> int | None:
    return _ms(getattr(request, field), field) if request.HasField(field) else None


def _ts(ms: int | None) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    if ms is not None:
        out.FromMilliseconds(int(ms))
    return out


def _task(value: int, field: str = "task") -> str:
    if value not in _TASKS:
        raise InvalidArgument(field, "is required (conversion, churn, lookalike or other)")
    return _TASKS[value]


def feature_in(message: pb.FeatureSpec, field: str) -> FeatureSpec:
    problems = []
    if message.source not in _SOURCES:
        problems.append((f"{field}.source", "is required"))
    if message.type not in _TYPES:
        problems.append((f"{field}.type", "is required"))
    if message.aggregate and message.aggregate not in _AGGREGATES:
        problems.append((f"{field}.aggregate", f"unknown value {message.aggregate}"))
    if problems:
        raise InvalidArgument(violations=problems)
    default = None
    kind = message.default_value.WhichOneof("kind") if message.HasField("default_value") else None
    if kind == "number_value":
        default = message.default_value.number_value
    elif kind == "bool_value":
        default = 1.0 if message.default_value.bool_value else 0.0
    elif kind == "string_value":
        default = message.default_value.string_value
    elif kind is not None:
        raise InvalidArgument(f"{field}.default_value", "must be a number, bool or string")
    return FeatureSpec(name=message.name, source=_SOURCES[message.source], key=message.key,
                       value_type=_TYPES[message.type], default=default,
                       aggregate=_AGGREGATES.get(message.aggregate, ""),
                       window_days=message.window_days, input=message.input)


def feature_out(spec: FeatureSpec) -> pb.FeatureSpec:
    out = pb.FeatureSpec(name=spec.name, source=_SOURCES_OUT.get(spec.source, 0), key=spec.key,
                         type=_TYPES_OUT.get(spec.value_type, 0),
                         aggregate=_AGGREGATES_OUT.get(spec.aggregate, 0),
                         window_days=spec.window_days, input=spec.input)
    if isinstance(spec.default, str):
        out.default_value.string_value = spec.default
    elif spec.default is not None:
        out.default_value.number_value = float(spec.default)
    return out


def metrics_out(metrics: dict, tables: bool = True) -> pb.ModelMetrics:
    out = pb.ModelMetrics(
        auc=metrics.get("auc", 0.0), log_loss=metrics.get("log_loss", 0.0),
        top_decile_lift=metrics.get("top_decile_lift", 0.0),
        base_rate=metrics.get("base_rate", 0.0), rows=metrics.get("rows", 0),
        positives=metrics.get("positives", 0),
        onnx_parity_max_abs_diff=metrics.get("onnx_parity_max_abs_diff", 0.0),
        train_rows=metrics.get("train_rows", 0), test_rows=metrics.get("test_rows", 0))
    if tables:
        out.lift.extend(pb.LiftRow(**row) for row in metrics.get("lift_table", []))
        out.calibration.extend(pb.CalibrationRow(**row) for row in metrics.get("calibration", []))
    return out


def metrics_in(message: pb.ModelMetrics) -> dict:
    out = {k: getattr(message, k) for k in ("auc", "log_loss", "top_decile_lift", "base_rate",
                                             "rows", "positives")}
    out["lift_table"] = [
        {f: getattr(r, f) for f in ("decile", "rows", "positives", "response_rate", "lift",
                                     "cumulative_gain", "cumulative_lift", "min_score",
                                     "max_score")} for r in message.lift]
    out["calibration"] = [{f: getattr(r, f) for f in ("decile", "rows", "mean_score",
                                                       "observed_rate")}
                          for r in message.calibration]
    return out


def version_out(version: ModelVersion, tables: bool = True) -> pb.ModelVersion:
    lineage = version.lineage or {}
    label = lineage.get("label")
    out = pb.ModelVersion(
        name=version.resource_name, model=f"models/{version.model_name}",
        version=version.version, task=_TASKS_OUT.get(version.task, 0),
        description=version.description, features=[feature_out(f) for f in version.features],
        output=pb.OutputSpec(name=version.output.name, column=version.output.column),
        onnx_sha256=version.sha256, size_bytes=version.size_bytes, aliases=version.aliases,
        metrics=metrics_out(version.metrics, tables), create_time=_ts(version.created_ms),
        creator=version.created_by,
        lineage=pb.Lineage(
            label=json.dumps(label, sort_keys=True) if label else "",
            algorithm=lineage.get("algorithm", ""),
            params={k: str(v) for k, v in (lineage.get("params") or {}).items()},
            code_version=lineage.get("code_version") or {},
            population=lineage.get("population", 0), operation=lineage.get("operation", "")),
    )
    if lineage.get("cutoff_ms") is not None:
        out.lineage.cutoff_time.CopyFrom(_ts(lineage["cutoff_ms"]))
    return out


def label_in(message: pb.Label, field: str = "label") -> LabelSpec:
    kind = message.WhichOneof("kind")
    if kind == "segment":
        return LabelSpec(kind="ids", external_ids=list(message.segment.external_ids))
    if kind == "attribute":
        value = message.attribute.value
        which = value.WhichOneof("kind")
        number = string = None
        if which == "number_value":
            number = value.number_value
        elif which == "bool_value":
            number = 1.0 if value.bool_value else 0.0
        elif which == "string_value":
            string = value.string_value
        return LabelSpec(kind="attribute", attribute=message.attribute.name,
                         operator=message.attribute.operator, number=number, string=string)
    if kind == "tag":
        return LabelSpec(kind="tag", tag=message.tag)
    if kind == "event":
        return LabelSpec(kind="event", event_type=message.event.event_type,
                         within_days=message.event.within_days)
    raise InvalidArgument(field, "one of segment, attribute, tag or event is required")


def _page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(value or 50, 500)


def _token_in(token: str) -> dict:
    if not token:
        return {}
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token", "is not a token this service issued") from None


def _token_out(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _audience_snapshot(request) -> str | None:
    """The segment snapshot the audience names, checked; None for other audiences."""
    if not request.HasField("audience") or \
            request.audience.WhichOneof("members") != "segment_snapshot":
        return None
    name = request.audience.segment_snapshot
    check_snapshot_name(name, "audience.segment_snapshot")
    return name


def _audience_ids(request) -> list[int] | None:
    if not request.HasField("audience"):
        return None
    kind = request.audience.WhichOneof("members")
    if kind == "user_ids":
        return list(request.audience.user_ids.ids)
    if kind == "roaring_bitmap":
        from pyroaring import BitMap64

        try:
            return list(BitMap64.deserialize(request.audience.roaring_bitmap))
        except Exception:  # noqa: BLE001 - any decoding failure is the request's fault
            try:
                from pyroaring import BitMap

                return list(BitMap.deserialize(request.audience.roaring_bitmap))
            except Exception:  # noqa: BLE001
                raise InvalidArgument("audience.roaring_bitmap",
                                      "is not a serialized bitmap") from None
    return None


class ScoringServicer(pb_grpc.ScoringServiceServicer):
    """Thin translation layer; every rule lives in ScoringCore."""

    def __init__(self, core: ScoringCore):
        self.core = core

    # Registry -------------------------------------------------------------------------------

    def RegisterModelVersion(self, request, context):
        model = parse_model_name(request.model, "model")
        task = _task(request.task)
        features = [feature_in(f, f"features[{i}]") for i, f in enumerate(request.features)]
        if not request.HasField("output") or not request.output.name:
            raise InvalidArgument("output.name", "is required")
        output = OutputSpec(request.output.name, request.output.column)
        version = self.core.register(
            model, task, request.onnx_model, features, output,
            description=request.description,
            metrics=metrics_in(request.metrics) if request.HasField("metrics") else None,
            created_by=current_principal().subject)
        return pb.RegisterModelVersionResponse(model_version=version_out(version))

    def GetModelVersion(self, request, context):
        version = self.core.registry.get_by_name(request.name)
        return pb.GetModelVersionResponse(model_version=version_out(version))

    def ListModelVersions(self, request, context):
        model = parse_model_name(request.model, "model")
        limit = _page_size(request.page_size)
        after = int(_token_in(request.page_token).get("after", 0))
        versions = self.core.registry.list_versions(model, after, limit + 1)
        more = len(versions) > limit
        versions = versions[:limit]
        return pb.ListModelVersionsResponse(
            model_versions=[version_out(v, tables=False) for v in versions],
            next_page_token=_token_out({"after": versions[-1].version}) if more else "")

    def DeleteModelVersion(self, request, context):
        model, version = parse_model_ref(request.name, "name")
        if not isinstance(version, int):
            raise InvalidArgument("name", "name a version number, not an alias")
        self.core.registry.delete(model, version)
        return pb.DeleteModelVersionResponse()

    def ListModels(self, request, context):
        limit = _page_size(request.page_size)
        after = str(_token_in(request.page_token).get("after", ""))
        models = self.core.registry.list_models(after, limit + 1)
        more = len(models) > limit
        models = models[:limit]
        return pb.ListModelsResponse(
            models=[pb.Model(name=f"models/{m['name']}", task=_TASKS_OUT.get(m["task"], 0),
                             version_count=m["versions"], latest_version=m["latest"],
                             aliases=m["aliases"]) for m in models],
            next_page_token=_token_out({"after": models[-1]["name"]}) if more else "")

    def _version_ref(self, name: str) -> tuple[str, int]:
        model, version = parse_model_ref(name, "name")
        if not isinstance(version, int):
            raise InvalidArgument("name", "name a version: models/{model}/versions/{n}")
        return model, version

    def SetAlias(self, request, context):
        model, version = self._version_ref(request.name)
        previous = self.core.registry.set_alias(model, request.alias, version,
                                                current_principal().subject)
        return pb.SetAliasResponse(
            model_version=version_out(self.core.registry.get(model, version)),
            previous_version=previous or 0)

    def PromoteModelVersion(self, request, context):
        model, version = self._version_ref(request.name)
        previous = self.core.registry.promote(model, version, current_principal().subject)
        return pb.PromoteModelVersionResponse(
            model_version=version_out(self.core.registry.get(model, version)),
            previous_version=previous or 0)

    def RollbackAlias(self, request, context):
        model = parse_model_name(request.model, "model")
        alias = request.alias or PRODUCTION
        moved_from, moved_to = self.core.registry.rollback(model, alias)
        return pb.RollbackAliasResponse(
            model_version=version_out(self.core.registry.get(model, moved_to)),
            rolled_back_version=moved_from)

    # Training and operations ----------------------------------------------------------------

    def TrainModel(self, request, context):
        model = parse_model_name(request.model, "model")
        if not request.HasField("label"):
            raise InvalidArgument("label", "is required")
        training = TrainingRequest(
            model_name=model, task=_task(request.task), label=label_in(request.label),
            features=[feature_in(f, f"features[{i}]") for i, f in enumerate(request.features)],
            algorithm=request.algorithm,
            cutoff_ms=_optional_ms(request, "cutoff_time"),
            params=dict(request.params), test_fraction=request.test_fraction or 0.4,
            random_state=request.random_state if request.HasField("random_state") else 1,
            description=request.description, promote=request.promote)
        name = self.core.start_training(training, current_principal().subject)
        return pb.TrainModelResponse(operation=self._operation_out(self.core.runner.get(name)))

    def _operation_out(self, row) -> common_pb2.Operation:
        request = row.request or {}
        metadata = any_pb2.Any()
        metadata.Pack(pb.TrainingProgress(stage=row.stage, percent=row.progress_percent,
                                          model=f"models/{request.get('model', '')}",
                                          algorithm=request.get("algorithm", "")))
        out = common_pb2.Operation(name=row.name, metadata=metadata,
                                   done=row.state in ("succeeded", "failed", "cancelled"),
                                   create_time=_ts(row.created_ms),
                                   update_time=_ts(row.updated_ms),
                                   progress_percent=row.progress_percent)
        if row.state == "succeeded" and row.result:
            version = self.core.registry.store.get_version(row.result["model_name"],
                                                           row.result["version"])
            if version is not None:
                out.response.Pack(version_out(version))
        elif row.state in ("failed", "cancelled"):
            status = status_pb2.Status(code=row.error_code or code_pb2.UNKNOWN,
                                       message=row.error_message or row.state)
            status.details.add().Pack(error_details_pb2.ErrorInfo(
                reason=row.state.upper(), domain="marketing.suite"))
            if row.error_violations:
                bad = error_details_pb2.BadRequest()
                for field, description in row.error_violations:
                    bad.field_violations.add(field=field, description=description)
                status.details.add().Pack(bad)
            out.error.CopyFrom(status)
        return out

    def GetOperation(self, request, context):
        return pb.GetOperationResponse(operation=self._operation_out(
            self.core.runner.get(request.name)))

    def ListOperations(self, request, context):
        limit = _page_size(request.page_size)
        token = _token_in(request.page_token)
        rows = self.core.runner.store.list_operations(token.get("before"), limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return pb.ListOperationsResponse(
            operations=[self._operation_out(r) for r in rows],
            next_page_token=_token_out({"before": [rows[-1].created_ms, rows[-1].name]})
            if more else "")

    def CancelOperation(self, request, context):
        return pb.CancelOperationResponse(operation=self._operation_out(
            self.core.runner.cancel(request.name)))

    # Scoring --------------------------------------------------------------------------------

    def ScoreUsers(self, request, context):
        as_of = _optional_ms(request, "as_of_time")
        result = self.core.score_users(request.model,
                                       external_ids=list(request.external_ids) or None,
                                       user_ids=list(request.user_ids) or None, as_of_ms=as_of)
        response = pb.ScoreUsersResponse(model_version=result.model)
        for external, user, ok, score in zip(result.external_ids, result.user_ids,
                                             result.found, result.scores):
            if ok:
                response.scores.add(external_id=external, user_id=user, found=True, score=score)
            else:
                response.scores.add(external_id=external, user_id=user, found=False)
        return response

    def ScoreRows(self, request, context):
        model, scores = self.core.score_rows(
            request.model, list(request.columns), request.values,
            list(request.string_columns), list(request.string_values),
            rows=request.row_count or None)
        response = pb.ScoreRowsResponse(model_version=model)
        # A list converts in one C loop; extending from a numpy array goes element by element.
        response.scores.extend(scores.tolist())
        return response

    def ScoreSnapshot(self, request, context):
        as_of = _optional_ms(request, "as_of_time")
        if request.chunk_size < 0:
            raise InvalidArgument("chunk_size", "must not be negative")
        snapshot = _audience_snapshot(request)
        resolved: list[str] = []
        for batch in self.core.score_snapshot(request.model, _audience_ids(request),
                                              as_of_ms=as_of,
                                              chunk_size=request.chunk_size or None,
                                              snapshot=snapshot, resolved=resolved):
            found = batch.found
            out = pb.ScoreSnapshotResponse(model_version=batch.model,
                                           segment_snapshot=resolved[0] if resolved else "")
            out.user_ids.extend(batch.user_ids[found].tolist())
            out.scores.extend(batch.scores[found].tolist())
            if not found.all():
                missing = np.asarray(batch.user_ids)
                out.missing_user_ids.extend(missing[~found].tolist())
            yield out

    def WriteBackScores(self, request, context):
        as_of = _optional_ms(request, "as_of_time")
        summary = self.core.write_back(request.model, _audience_ids(request),
                                       score_name=request.score_name, as_of_ms=as_of,
                                       snapshot=_audience_snapshot(request))
        return pb.WriteBackScoresResponse(
            model_version=summary["model"], score_name=summary["score_name"],
            scored_count=summary["scored"], written_count=summary["written"],
            missing_count=summary["missing"])

    def EvaluateModel(self, request, context):
        if not request.HasField("label"):
            raise InvalidArgument("label", "is required")
        cutoff = _optional_ms(request, "cutoff_time")
        metrics = self.core.evaluate(request.model, label_in(request.label), cutoff)
        return pb.EvaluateModelResponse(model_version=metrics["model"],
                                        metrics=metrics_out(metrics))


def build_core(settings: Settings, config: ScoringConfig | None = None,
               writer=None) -> ScoringCore:
    """Migrates the scoring tables and wires the registry, runner and write-back."""
    config = config or ScoringConfig.from_env()
    migrate("scoring", settings.database_url)
    engine = make_engine(settings.database_url)
    profile_engine = make_engine(settings.profile_read_database_url, read_only=True)
    store = ScoringStore(engine)
    registry = ModelRegistry(store, max_model_bytes=config.max_model_bytes,
                             intra_op_threads=config.intra_op_threads,
                             alias_ttl_s=config.alias_ttl_s)
    runner = OperationRunner(store, config.training_workers)
    if writer is None:
        from services.common.clients import open_channel
        from services.scoring.writeback import ProfileScoreWriter

        channel = open_channel(service_address("profile"), settings.outbound_api_key)
        writer = ProfileScoreWriter(channel)
    from services.common.clients import open_channel as open_segment_channel

    segments = SegmentMembers(lambda: open_segment_channel(service_address("segment"),
                                                           settings.outbound_api_key,
                                                           default_timeout=None))
    return ScoringCore(registry, profile_engine, runner, writer, config, segments)


def build(settings: Settings, config: ScoringConfig | None = None,
          writer=None) -> list[ServiceDefinition]:
    """The scoring service to mount. Health turns SERVING only after every production model
    is loaded (the start hook runs before the server reports ready)."""
    core = build_core(settings, config, writer)

    def start() -> None:
        interrupted = core.runner.recover()
        if interrupted:
            log.warning("operations interrupted by a restart", extra={"count": interrupted})
        loaded = core.registry.load_production()
        log.info("production models loaded", extra={"models": loaded})

    def stop() -> None:
        core.runner.shutdown()
        core.registry.store.engine.dispose()
        release_connections(core.profile_engine)
        core.profile_engine.dispose()
        core.segments.close()

    definition = ServiceDefinition(
        name="scoring", register=pb_grpc.add_ScoringServiceServicer_to_server,
        servicer=ScoringServicer(core), full_name=FULL_NAME, roles=ROLES, start=start, stop=stop)
    definition.core = core  # the domain core, for tools and tests that drive it directly
    return [definition]
