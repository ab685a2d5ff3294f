"""gRPC surface of the segment service: translates protos to SegmentCore calls and back."""

from __future__ import annotations

import logging
import socket
import threading

from marketing.segment.v1 import segment_service_pb2 as pb
from marketing.segment.v1 import segment_service_pb2_grpc as pb_grpc
from services.common.auth import READERS, WRITERS, current_principal
from services.common.config import Settings, env_bool, env_float, env_int, env_str
from services.common.db import make_engine, migrate
from services.common.errors import InvalidArgument
from services.common.server import ServiceDefinition
from services.segment.catalog import CatalogCache
from services.segment.convert import (
    ms_of,
    rule_from_proto,
    rule_to_proto,
    segment_id_of,
    stamp_of,
)
from services.segment.core import Segment, SegmentCore, Snapshot, nearest_position
from services.segment.text import RuleSyntaxError, format_rule, parse_rule_with_positions

log = logging.getLogger("marketing.segment")

FULL_NAME = "marketing.segment.v1.SegmentService"
UPDATABLE = {"display_name", "description", "rule", "rule_text", "realtime", "refresh"}


def segment_to_proto(segment: Segment) -> pb.Segment:
    refresh = None
    if segment.refresh_every_minutes:
        refresh = pb.RefreshSchedule(every_minutes=segment.refresh_every_minutes)
    elif segment.refresh_daily_minute is not None:
        refresh = pb.RefreshSchedule(daily_minute_utc=segment.refresh_daily_minute)
    return pb.Segment(
        name=segment.name, display_name=segment.display_name, description=segment.description,
        rule=rule_to_proto(segment.rule), rule_text=segment.rule_text, realtime=segment.realtime,
        refresh=refresh, revision=segment.revision, creator=segment.created_by,
        create_time=stamp_of(segment.created_ms), update_time=stamp_of(segment.updated_ms),
        next_refresh_time=stamp_of(segment.next_refresh_ms),
    )


def snapshot_to_proto(snapshot: Snapshot) -> pb.Snapshot:
    trigger = (pb.SNAPSHOT_TRIGGER_SCHEDULED if snapshot.trigger == "scheduled"
               else pb.SNAPSHOT_TRIGGER_MANUAL)
    return pb.Snapshot(
        name=snapshot.name, version=snapshot.version, size=snapshot.size,
        create_time=stamp_of(snapshot.created_ms), as_of_time=stamp_of(snapshot.as_of_ms),
        rule_text=snapshot.rule_text, trigger=trigger, duration_ms=snapshot.duration_ms,
    )


def members_to_proto(members) -> list[pb.Member]:
    return [pb.Member(user_id=uid, external_id=ext) for uid, ext in members]


def snapshot_ref(name: str, field: str = "name") -> tuple[int, int | None]:
    """(segment id, version or None for latest) of `segments/{id}/snapshots/{version}`."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "segments" or parts[2] != "snapshots" or not (
        parts[1].isdigit() and (parts[3].isdigit() or parts[3] == "latest")
    ):
        raise InvalidArgument(field, f"expected segments/{{id}}/snapshots/{{version|latest}}, "
                              f"got {name!r}")
    return int(parts[1]), None if parts[3] == "latest" else int(parts[3])


class SegmentServicer(pb_grpc.SegmentServiceServicer):
    def __init__(self, core: SegmentCore, realtime=None):
        self.core = core
        self.realtime = realtime

    # Rule sources.
    def _rule(self, request, prefix: str = "", allow_segment: bool = True):
        """The rule of a request (tree, text or saved segment) and its text positions."""
        source = request.WhichOneof("rule_source")
        if source == "rule":
            return rule_from_proto(request.rule, prefix + "rule"), None, prefix + "rule"
        if source == "rule_text":
            rule, positions = self.core.parse(request.rule_text, prefix + "rule_text")
            return rule, positions, prefix + "rule_text"
        if source == "segment" and allow_segment:
            return self.core.get(segment_id_of(request.segment, "segment")).rule, None, "segment"
        raise InvalidArgument("rule", "set rule, rule_text" + (" or segment" if allow_segment
                                                                 else ""))

    def _checked_rule(self, request):
        rule, positions, field = self._rule(request)
        if field != "segment":
            self.core.check(rule, field, None, positions)
        return rule

    def _segment_rule(self, segment: pb.Segment, required: bool = True):
        if segment.HasField("rule"):
            return rule_from_proto(segment.rule, "segment.rule"), None
        if segment.rule_text:
            return self.core.parse(segment.rule_text, "segment.rule_text")
        if required:
            raise InvalidArgument("segment.rule", "set rule or rule_text")
        return None, None

    @staticmethod
    def _as_of(request) -> int | None:
        return ms_of(request.as_of_time) if request.HasField("as_of_time") else None

    # Segments.
    def CreateSegment(self, request, context):
        if not request.HasField("segment"):
            raise InvalidArgument("segment", "is required")
        s = request.segment
        rule, positions = self._segment_rule(s)
        every = s.refresh.every_minutes if s.refresh.WhichOneof("schedule") == "every_minutes" \
            else None
        daily = s.refresh.daily_minute_utc \
            if s.refresh.WhichOneof("schedule") == "daily_minute_utc" else None
        segment = self.core.create(
            s.display_name, rule, s.description, s.realtime, every, daily,
            created_by=current_principal().subject, positions=positions)
        if segment.realtime and self.realtime is not None:
            self.realtime.initialize(segment.id)
            self.realtime.forget_segments()
        return pb.CreateSegmentResponse(segment=segment_to_proto(segment))

    def GetSegment(self, request, context):
        segment = self.core.get(segment_id_of(request.name, "name"))
        return pb.GetSegmentResponse(segment=segment_to_proto(segment))

    def ListSegments(self, request, context):
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        items, token = self.core.list(request.page_size, request.page_token)
        return pb.ListSegmentsResponse(segments=[segment_to_proto(s) for s in items],
                                       next_page_token=token)

    def UpdateSegment(self, request, context):
        s = request.segment
        segment_id = segment_id_of(s.name, "segment.name")
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument("update_mask", "name the fields to change")
        unknown = [p for p in paths if p not in UPDATABLE]
        if unknown:
            raise InvalidArgument("update_mask", f"cannot update {', '.join(unknown)}")
        changes: dict = {}
        positions = None
        for path in paths:
            if path in ("rule", "rule_text"):
                changes["rule"], positions = self._segment_rule(s)
            elif path == "refresh":
                kind = s.refresh.WhichOneof("schedule")
                changes["refresh_every_minutes"] = (
                    s.refresh.every_minutes if kind == "every_minutes" else None)
                changes["refresh_daily_minute"] = (
                    s.refresh.daily_minute_utc if kind == "daily_minute_utc" else None)
            else:
                changes[path] = getattr(s, path)
        segment = self.core.update(segment_id, changes, s.revision or None, positions)
        if self.realtime is not None and ("rule" in changes or "realtime" in changes):
            if segment.realtime:
                self.realtime.initialize(segment.id)
            else:
                self.realtime.drop(segment.id)
            self.realtime.forget_segments()
        return pb.UpdateSegmentResponse(segment=segment_to_proto(segment))

    def DeleteSegment(self, request, context):
        segment_id = segment_id_of(request.name, "name")
        self.core.delete(segment_id)
        if self.realtime is not None:
            self.realtime.drop(segment_id)
            self.realtime.forget_segments()
        return pb.DeleteSegmentResponse()

    # Rules.
    def ValidateRule(self, request, context):
        segment_id = segment_id_of(request.segment, "segment") if request.segment else None
        source = request.WhichOneof("rule_source")
        positions: dict = {}
        if source == "rule_text":
            try:
                rule, positions = parse_rule_with_positions(request.rule_text)
            except RuleSyntaxError as exc:
                return pb.ValidateRuleResponse(valid=False, violations=[pb.RuleViolation(
                    field="rule_text", description=exc.message, line=exc.line,
                    column=exc.column)])
            prefix = "rule_text"
        elif source == "rule":
            rule, prefix = rule_from_proto(request.rule, "rule"), "rule"
        else:
            raise InvalidArgument("rule", "set rule or rule_text")
        out = []
        for path, message in self.core.violations(rule, segment_id):
            line, column = nearest_position(positions, path) or (0, 0)
            out.append(pb.RuleViolation(field=prefix + path[len("rule"):], description=message,
                                        line=line, column=column))
        return pb.ValidateRuleResponse(valid=not out, violations=out,
                                       rule_text=format_rule(rule))

    def ParseRule(self, request, context):
        rule, _ = self.core.parse(request.rule_text, "rule_text")
        return pb.ParseRuleResponse(rule=rule_to_proto(rule), rule_text=format_rule(rule))

    def FormatRule(self, request, context):
        if not request.HasField("rule"):
            raise InvalidArgument("rule", "is required")
        return pb.FormatRuleResponse(rule_text=format_rule(rule_from_proto(request.rule)))

    def EstimateSegment(self, request, context):
        rule = self._checked_rule(request)
        as_of = self._as_of(request) or self.core.now_ms()
        return pb.EstimateSegmentResponse(count=self.core.estimate(rule, as_of),
                                          population=self.core.population(),
                                          as_of_time=stamp_of(as_of))

    def PreviewSegment(self, request, context):
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        rule = self._checked_rule(request)
        members = self.core.preview(rule, request.page_size or 20, self._as_of(request))
        return pb.PreviewSegmentResponse(members=members_to_proto(members))

    # Snapshots.
    def CreateSnapshot(self, request, context):
        segment_id = segment_id_of(request.parent, "parent")
        snapshot = self.core.create_snapshot(segment_id, self._as_of(request))
        return pb.CreateSnapshotResponse(snapshot=snapshot_to_proto(snapshot))

    def GetSnapshot(self, request, context):
        segment_id, version = snapshot_ref(request.name)
        return pb.GetSnapshotResponse(
            snapshot=snapshot_to_proto(self.core.get_snapshot(segment_id, version)))

    def ListSnapshots(self, request, context):
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        items, token = self.core.list_snapshots(segment_id_of(request.parent, "parent"),
                                                request.page_size, request.page_token)
        return pb.ListSnapshotsResponse(snapshots=[snapshot_to_proto(s) for s in items],
                                        next_page_token=token)

    def StreamSnapshotMembers(self, request, context):
        segment_id, version = snapshot_ref(request.name)
        if request.batch_size < 0:
            raise InvalidArgument("batch_size", "must not be negative")
        for snapshot, batch in self.core.stream_members(segment_id, version,
                                                        request.batch_size or 1000):
            if not context.is_active():
                return
            yield pb.StreamSnapshotMembersResponse(snapshot=snapshot.name,
                                                   members=members_to_proto(batch))

    def CheckMembership(self, request, context):
        segment_id = segment_id_of(request.segment, "segment")
        if request.version < 0:
            raise InvalidArgument("version", "must not be negative")
        if not request.version and self.realtime is not None:
            answer = self.realtime.check(segment_id, request.external_id)
            if answer is not None:
                uid, member = answer
                return pb.CheckMembershipResponse(member=member, user_id=uid or 0, live=True)
        snapshot, uid, member = self.core.check_membership(
            segment_id, request.external_id, request.version or None)
        return pb.CheckMembershipResponse(member=member, snapshot=snapshot.name,
                                          user_id=uid or 0)

    def CompareSnapshots(self, request, context):
        segment_id = segment_id_of(request.segment, "segment")
        if request.from_version <= 0:
            raise InvalidArgument("from_version", "must be a snapshot version (from 1)")
        if request.to_version < 0:
            raise InvalidArgument("to_version", "must not be negative")
        limit = request.max_members if request.max_members > 0 else 100
        old, new, diff = self.core.compare(segment_id, request.from_version,
                                           request.to_version or None, limit)
        return pb.CompareSnapshotsResponse(
            from_snapshot=old.name, to_snapshot=new.name, entered_count=diff.entered_count,
            left_count=diff.left_count, stayed_count=diff.stayed_count,
            entered=members_to_proto(diff.entered), left=members_to_proto(diff.left))

    def GetInsight(self, request, context):
        rule = self._checked_rule(request)
        bounds = {}
        for i, item in enumerate(request.bucket_bounds):
            if list(item.bounds) != sorted(set(item.bounds)) or not item.bounds:
                raise InvalidArgument(f"bucket_bounds[{i}].bounds",
                                      "must be distinct and increasing")
            bounds[item.field] = list(item.bounds)
        if request.top_values < 0:
            raise InvalidArgument("top_values", "must not be negative")
        insight = self.core.insight(rule, list(request.fields), bounds,
                                    request.top_values or 10, not request.exclude_rfm,
                                    not request.exclude_lifecycle, self._as_of(request))
        return pb.GetInsightResponse(
            segment_size=insight.segment_size, population_size=insight.population_size,
            distributions=[pb.Distribution(dimension=d.dimension, buckets=[
                pb.InsightBucket(value=b.value, segment_count=b.segment_count,
                                 population_count=b.population_count,
                                 segment_share=b.segment_share,
                                 population_share=b.population_share, tgi=b.tgi)
                for b in d.buckets]) for d in insight.distributions])


ROLES = {
    "CreateSegment": WRITERS, "UpdateSegment": WRITERS, "DeleteSegment": WRITERS,
    "CreateSnapshot": WRITERS,
    **{rpc: READERS for rpc in (
        "GetSegment", "ListSegments", "ValidateRule", "ParseRule", "FormatRule",
        "EstimateSegment", "PreviewSegment", "GetSnapshot", "ListSnapshots",
        "StreamSnapshotMembers", "CheckMembership", "CompareSnapshots", "GetInsight")},
}


def build(settings: Settings, redis_client=None) -> list[ServiceDefinition]:
    """Engines, migrations, the core, the scheduler and the real-time consumer.

    Settings beyond the shared ones (defaults in parentheses):
    SEGMENT_SCHEDULER_INTERVAL_SECONDS (30) how often due refreshes are looked for;
    SEGMENT_REALTIME_ENABLED (1) consume ``profile:events`` and ``profile:changes`` for
    real-time segments;
    SEGMENT_REALTIME_BATCH (500) entries read per batch;
    SEGMENT_REALTIME_RECONCILE_SECONDS (300) how often each real-time segment is evaluated in
    full to catch up with what time alone changed (windows, tag expiry), by one replica per
    period; 0 turns it off;
    SEGMENT_MEMBERSHIP_MAXLEN (1000000) approximate cap of ``segment:membership``;
    SEGMENT_CONSUMER_NAME (host name) this replica's name in consumer group ``segment``;
    SEGMENT_KNOWN_MODELS ("") comma-separated model names accepted before any score exists;
    SEGMENT_CATALOG_TTL_SECONDS (30) how long the attribute catalogue is cached.
    """
    migrate("segment", settings.database_url)
    engine = make_engine(settings.database_url)
    read_engine = make_engine(settings.profile_read_database_url, read_only=True)
    models = tuple(m.strip() for m in env_str("SEGMENT_KNOWN_MODELS", "").split(",") if m.strip())
    catalog = CatalogCache(read_engine, env_float("SEGMENT_CATALOG_TTL_SECONDS", 30.0), models)
    core = SegmentCore(engine, read_engine, catalog,
                       cache_ttl_s=env_float("SEGMENT_SNAPSHOT_CACHE_TTL_SECONDS", 2.0))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    realtime = None
    if env_bool("SEGMENT_REALTIME_ENABLED", True):
        from services.common.redis_client import connect_redis
        from services.segment.realtime import RealtimeMembership

        client = redis_client or connect_redis(settings)
        realtime = RealtimeMembership(core, client, consumer=env_str("SEGMENT_CONSUMER_NAME",
                                                               socket.gethostname()),
                                      batch_size=env_int("SEGMENT_REALTIME_BATCH", 500),
                                      maxlen=env_int("SEGMENT_MEMBERSHIP_MAXLEN", 1_000_000))
        core.snapshot_listeners.append(
            lambda seg, members, as_of: realtime.reconcile(seg.id, members, as_of, seg.rule)
            if seg.realtime else None)
    erasures = None
    if env_bool("SEGMENT_ERASURES_ENABLED", True):
        from services.common.redis_client import connect_redis
        from services.segment.erasure import ErasureConsumer

        erasures = ErasureConsumer(core, redis_client or connect_redis(settings),
                                   consumer=env_str("SEGMENT_CONSUMER_NAME", socket.gethostname()))
    interval = env_float("SEGMENT_SCHEDULER_INTERVAL_SECONDS", 30.0)
    reconcile_s = env_float("SEGMENT_REALTIME_RECONCILE_SECONDS", 300.0)
    if reconcile_s < 0:
        raise ValueError(f"SEGMENT_REALTIME_RECONCILE_SECONDS must not be negative, "
                         f"got {reconcile_s}")
    servicer = SegmentServicer(core, realtime)

    def start() -> None:
        stop.clear()
        workers = [threading.Thread(target=core.run_scheduler, args=(stop, interval),
                                    name="segment-scheduler", daemon=True)]
        if realtime is not None:
            realtime.ensure_group()
            workers.append(threading.Thread(target=realtime.run, args=(stop,),
                                            name="segment-realtime", daemon=True))
            if reconcile_s > 0:
                workers.append(threading.Thread(
                    target=realtime.run_reconciler, args=(stop, reconcile_s),
                    name="segment-reconcile", daemon=True))
        if erasures is not None:
            erasures.ensure_group()
            workers.append(threading.Thread(target=erasures.run, args=(stop,),
                                            name="segment-erasures", daemon=True))
        for worker in workers:
            worker.start()
        threads[:] = workers

    def stop_all() -> None:
        stop.set()
        for worker in threads:
            worker.join(timeout=5)
        engine.dispose()
        read_engine.dispose()

    return [ServiceDefinition(
        name="segment", register=pb_grpc.add_SegmentServiceServicer_to_server,
        servicer=servicer, full_name=FULL_NAME, roles=ROLES, start=start, stop=stop_all)]


__all__ = ["SegmentServicer", "build"]
