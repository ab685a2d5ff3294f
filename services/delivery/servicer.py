"""gRPC surface of the delivery service: translates proto messages to the core and back."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from marketing.common.v1 import common_pb2 as cpb
from marketing.delivery.v1 import delivery_service_pb2 as pb
from marketing.delivery.v1 import delivery_service_pb2_grpc as pb_grpc
from services.common.auth import ADMIN, APPROVER, OPERATOR, SERVICE, current_principal
from services.common.errors import InvalidArgument, NotFound
from services.delivery import model
from services.delivery.core import DeliveryCore, Funnel
from services.delivery.grpc_sources import py_value
from services.delivery.outcomes import MAX_BATCH, REFUSED, OutcomeIntake, OutcomeItem
from services.delivery.stats import EffectRow, EffectStats
from services.delivery.store import decode_token, encode_token

CHANNELS = {1: "push", 2: "sms", 3: "email", 4: "wechat", 5: "in_app", 6: "webhook", 7: "coupon"}
CHANNEL_ENUM = {v: k for k, v in CHANNELS.items()}
GOALS = {1: "acquire", 2: "convert", 3: "activate", 4: "retain", 5: "win_back"}
CATEGORY = {1: "transactional", 2: "marketing"}
STATES = {1: "draft", 2: "pending_approval", 3: "approved", 4: "rejected", 5: "scheduled",
          6: "running", 7: "paused", 8: "completed", 9: "cancelled"}
STATE_ENUM = {v: k for k, v in STATES.items()}
SEND_STATUS = {"claimed": 1, "deferred": 2, "retry": 3, "sent": 4, "suppressed": 5, "dead": 6}
SEND_STATUS_NAME = {v: k for k, v in SEND_STATUS.items()}

READ = {OPERATOR, APPROVER, ADMIN, SERVICE}
WRITE = {OPERATOR, ADMIN}
REVIEW = {APPROVER}
ROLES = {
    "CreatePlan": WRITE, "GetPlan": READ, "ListPlans": READ, "UpdatePlan": WRITE,
    "DeletePlan": WRITE, "SubmitPlan": WRITE, "ApprovePlan": REVIEW, "RejectPlan": REVIEW,
    "SchedulePlan": WRITE, "PausePlan": WRITE | {APPROVER}, "ResumePlan": WRITE,
    "CancelPlan": WRITE | {APPROVER}, "ListAuditEntries": READ, "VerifyAuditLog": READ,
    "PreviewTouch": READ, "DryRunTouch": READ, "ExecutePlan": WRITE | {SERVICE},
    "RunTouch": WRITE | {SERVICE}, "ListSends": READ, "ReportOutcomes": {SERVICE, ADMIN},
    "GetPlanStats": READ, "GetExperiment": READ,
}
CONTENT_FIELDS = ("display_name", "goal_type", "scene", "business_goal", "start_time",
                  "end_time", "priority", "category", "owner", "touches",
                  "control_group_percent", "follow_ups")
MODES = {1: "ab", 2: "race", 3: "bandit"}
MODE_ENUM = {v: k for k, v in MODES.items()}
METRICS = {0: "click", 1: "click", 2: "conversion"}
METRIC_ENUM = {"click": 1, "conversion": 2}
OUTCOME_KINDS = {1: "delivered", 2: "opened", 3: "clicked", 4: "converted", 5: "unsubscribed",
                 6: "notification_disabled", 7: "uninstalled"}
DEFAULT_MIN_SAMPLES = 1000


def _ms(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def _ts(ms: int | None) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if ms:
        ts.FromMilliseconds(ms)
    return ts


def plan_id_from(name: str, field: str = "name") -> int:
    prefix, _, raw = name.partition("/")
    if prefix != "plans" or not raw.isdigit():
        raise InvalidArgument(field, f"must look like plans/{{id}}, got {name!r}")
    return int(raw)


def _schedule_from(s: pb.Schedule, field: str) -> model.Schedule:
    kind = s.WhichOneof("kind")
    if kind is None or kind == "now":
        return model.Schedule(kind="now")
    if kind == "at_time":
        return model.Schedule(kind="at", at_ms=_ms(s.at_time))
    if kind == "local_time":
        return model.Schedule(kind="at_local", local_time=s.local_time)
    return model.Schedule(kind="cron", cron=s.cron.expression,
                          time_zone=s.cron.time_zone or "UTC",
                          user_time_zone=s.cron.user_time_zone)


def _proto_value(value) -> cpb.Value:
    if isinstance(value, bool):
        return cpb.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return cpb.Value(number_value=float(value))
    if isinstance(value, list):
        return cpb.Value(string_list_value=cpb.StringList(values=[str(v) for v in value]))
    return cpb.Value(string_value="" if value is None else str(value))


def trigger_from_proto(t: pb.Trigger) -> dict:
    """The wire trigger as ``triggers.TriggerSpec`` data."""
    if t.entered_segment:
        kind = "segment_entered"
    elif t.absent_event_type:
        kind = "event_not_followed"
    else:
        kind = "event"
    return {"kind": kind, "event_type": t.event_type, "not_event_type": t.absent_event_type,
            "within_s": t.within_seconds, "correlate_on": t.correlate_on_property,
            "segment": t.entered_segment, "delay_s": t.delay_seconds,
            "filters": [{"property": k, "op": "eq", "value": py_value(v)}
                        for k, v in sorted(t.property_equals.items())]}


def trigger_to_proto(d: dict) -> pb.Trigger:
    return pb.Trigger(
        event_type=d.get("event_type", ""), absent_event_type=d.get("not_event_type", ""),
        within_seconds=d.get("within_s", 0), entered_segment=d.get("segment", ""),
        delay_seconds=d.get("delay_s", 0), correlate_on_property=d.get("correlate_on", ""),
        property_equals={f["property"]: _proto_value(f.get("value"))
                         for f in d.get("filters", ()) if f.get("op") == "eq"})


def experiment_from_proto(e: pb.Experiment) -> dict:
    """The wire experiment as ``experiments.ExperimentSpec`` data (without the control group,
    which is the plan's)."""
    return {
        "mode": MODES.get(e.mode, ""), "metric": METRICS.get(e.metric, ""),
        "variants": [{"variant_id": v.variant_id, "title": v.content.title,
                      "body": v.content.body, "subject": v.content.subject,
                      "channel": CHANNELS.get(v.channel, "") if v.channel else "",
                      "share": v.split_percent} for v in e.variants],
        "exploration_percent": e.exploration_percent,
        "window_s": e.observation_window_seconds, "deadline_s": e.deadline_seconds,
        "min_samples": e.min_samples_per_variant or DEFAULT_MIN_SAMPLES,
        "fallback_variant": e.fallback_variant_id,
    }


def experiment_to_proto(d: dict) -> pb.Experiment:
    return pb.Experiment(
        mode=MODE_ENUM.get(d.get("mode", ""), 0), metric=METRIC_ENUM.get(d.get("metric"), 0),
        variants=[pb.Variant(variant_id=v["variant_id"], split_percent=v.get("share", 0.0),
                             channel=CHANNEL_ENUM.get(v.get("channel", ""), 0),
                             content=pb.Content(title=v.get("title", ""), body=v.get("body", ""),
                                                subject=v.get("subject", "")))
                  for v in d.get("variants", ())],
        exploration_percent=d.get("exploration_percent", 0.0),
        observation_window_seconds=d.get("window_s", 0), deadline_seconds=d.get("deadline_s", 0),
        min_samples_per_variant=d.get("min_samples", 0),
        fallback_variant_id=d.get("fallback_variant", ""))


def follow_up_from_proto(f: pb.FollowUp, i: int) -> dict:
    handover = 0
    if f.converted_handover_plan:
        handover = plan_id_from(f.converted_handover_plan,
                                f"follow_ups[{i}].converted_handover_plan")
    return {"touch_id": f.after_touch_id, "wait_s": f.wait_seconds,
            "max_retries": f.max_repeats, "spacing_s": f.repeat_spacing_seconds,
            "retry_touch_id": f.unconverted_touch_id, "next_touch_id": f.converted_next_touch_id,
            "handover_plan_id": handover, "handover_touch_id": f.converted_handover_touch_id}


def follow_up_to_proto(d: dict) -> pb.FollowUp:
    return pb.FollowUp(
        after_touch_id=d.get("touch_id", ""), wait_seconds=d.get("wait_s", 0),
        max_repeats=d.get("max_retries", 0), repeat_spacing_seconds=d.get("spacing_s", 0),
        unconverted_touch_id=d.get("retry_touch_id", ""),
        converted_next_touch_id=d.get("next_touch_id", ""),
        converted_handover_plan=(f"plans/{d['handover_plan_id']}"
                                 if d.get("handover_plan_id") else ""),
        converted_handover_touch_id=d.get("handover_touch_id", ""))


def spec_from_proto(plan: pb.Plan) -> model.PlanSpec:
    touches = []
    for i, t in enumerate(plan.touches):
        trigger = trigger_from_proto(t.trigger) if t.HasField("trigger") else None
        experiment = experiment_from_proto(t.experiment) if t.HasField("experiment") else None
        schedule = (model.Schedule(kind="trigger") if trigger is not None
                    else _schedule_from(t.schedule, f"touches[{i}].schedule"))
        audience = model.Audience(
            segment=t.audience.segment if t.audience.WhichOneof("source") == "segment" else "",
            external_ids=tuple(t.audience.users.external_ids),
        )
        touches.append(model.Touch(
            touch_id=t.touch_id, channel=CHANNELS.get(t.channel, ""),
            content=model.Content(title=t.content.title, body=t.content.body,
                                  subject=t.content.subject, data=dict(t.content.data),
                                  defaults=dict(t.content.defaults),
                                  webhook_url=t.content.webhook_url),
            audience=audience, schedule=schedule, send_rate_per_s=t.send_rate_per_second,
            trigger=trigger, experiment=experiment,
        ))
    return model.PlanSpec(
        display_name=plan.display_name, goal_type=GOALS.get(plan.goal_type, ""),
        scene=plan.scene, goal_event=plan.business_goal.event_type,
        goal_target=plan.business_goal.target if plan.HasField("business_goal") else None,
        start_ms=_ms(plan.start_time), end_ms=_ms(plan.end_time), priority=plan.priority,
        category=CATEGORY.get(plan.category, ""), owner=plan.owner, touches=tuple(touches),
        control_percent=plan.control_group_percent,
        follow_ups=tuple(follow_up_from_proto(f, i) for i, f in enumerate(plan.follow_ups)),
        attribution_window_s=plan.business_goal.attribution_window_seconds,
    )


def plan_to_proto(plan: model.Plan) -> pb.Plan:
    s = plan.spec
    out = pb.Plan(
        name=plan.name, display_name=s.display_name,
        goal_type={v: k for k, v in GOALS.items()}[s.goal_type], scene=s.scene,
        business_goal=pb.BusinessGoal(event_type=s.goal_event, target=s.goal_target or 0.0,
                                      attribution_window_seconds=s.attribution_window_s),
        control_group_percent=s.control_percent,
        follow_ups=[follow_up_to_proto(f) for f in s.follow_ups],
        start_time=_ts(s.start_ms), end_time=_ts(s.end_ms), priority=s.priority,
        category={v: k for k, v in CATEGORY.items()}[s.category], owner=s.owner,
        state=STATE_ENUM[plan.state], creator=plan.creator, content_hash=plan.content_hash,
        approved_by=plan.approved_by or "", reject_reason=plan.reject_reason or "",
        create_time=_ts(plan.created_ms), update_time=_ts(plan.updated_ms),
    )
    for t in s.touches:
        touch = out.touches.add(touch_id=t.touch_id, channel=CHANNEL_ENUM[t.channel],
                                send_rate_per_second=t.send_rate_per_s)
        touch.content.CopyFrom(pb.Content(
            title=t.content.title, body=t.content.body, subject=t.content.subject,
            data=t.content.data, defaults=t.content.defaults,
            webhook_url=t.content.webhook_url))
        if t.audience.segment:
            touch.audience.segment = t.audience.segment
        else:
            touch.audience.users.external_ids.extend(t.audience.external_ids)
        if t.trigger:
            touch.trigger.CopyFrom(trigger_to_proto(t.trigger))
        if t.experiment:
            touch.experiment.CopyFrom(experiment_to_proto(t.experiment))
        sch = t.schedule
        if sch.kind == "trigger":
            pass  # a triggered touch has no schedule on the wire
        elif sch.kind == "now":
            touch.schedule.now.SetInParent()
        elif sch.kind == "at":
            touch.schedule.at_time.CopyFrom(_ts(sch.at_ms))
        elif sch.kind == "at_local":
            touch.schedule.local_time = sch.local_time
        else:
            touch.schedule.cron.CopyFrom(pb.Cron(expression=sch.cron, time_zone=sch.time_zone,
                                                 user_time_zone=sch.user_time_zone))
    return out


def funnel_to_proto(f: Funnel) -> pb.Funnel:
    order = ["unknown_user", "plan_ended", "unsubscribed", "no_consent", "app_uninstalled",
             "notifications_disabled", "render_error", "frequency_cap", "outranked"]
    removed = sorted(f.removed.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order
                                                        else len(order), kv[0]))
    return pb.Funnel(
        audience=f.audience, sent=f.sent, failed=f.failed,
        removed=[pb.ReasonCount(reason=k, count=v) for k, v in removed],
        deferred=[pb.ReasonCount(reason=k, count=v) for k, v in sorted(f.deferred.items())],
    )


def _page_size(value: int, default: int, maximum: int, field: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    return min(value or default, maximum)


class DeliveryServicer(pb_grpc.DeliveryServiceServicer):
    """Thin translation; every rule lives in DeliveryCore."""

    def __init__(self, core: DeliveryCore, intake: OutcomeIntake | None = None,
                 stats: EffectStats | None = None):
        self.core = core
        self.intake = intake
        self.stats = stats or EffectStats(core.store.engine)

    @staticmethod
    def _actor() -> tuple[str, frozenset[str]]:
        principal = current_principal()
        return principal.subject, frozenset(principal.roles)

    def CreatePlan(self, request, context):
        if not request.HasField("plan"):
            raise InvalidArgument("plan", "is required")
        actor, _ = self._actor()
        plan = self.core.create_plan(spec_from_proto(request.plan), actor)
        return pb.CreatePlanResponse(plan=plan_to_proto(plan))

    def GetPlan(self, request, context):
        return pb.GetPlanResponse(plan=plan_to_proto(
            self.core.get_plan(plan_id_from(request.name))))

    def ListPlans(self, request, context):
        size = _page_size(request.page_size, 50, 500)
        after = decode_token(request.page_token)
        states = [STATES[s] for s in request.states if s in STATES]
        plans = self.core.store.list_plans(after, size + 1, states)
        more = len(plans) > size
        plans = plans[:size]
        return pb.ListPlansResponse(
            plans=[plan_to_proto(p) for p in plans],
            next_page_token=encode_token(plans[-1].id) if more else "")

    def UpdatePlan(self, request, context):
        actor, _ = self._actor()
        plan_id = plan_id_from(request.plan.name, "plan.name")
        current = self.core.get_plan(plan_id)
        paths = list(request.update_mask.paths) or list(CONTENT_FIELDS)
        unknown = [p for p in paths if p not in CONTENT_FIELDS]
        if unknown:
            raise InvalidArgument("update_mask", f"cannot update {', '.join(unknown)}")
        merged = plan_to_proto(current)
        for path in paths:
            if path in ("touches", "follow_ups"):
                del getattr(merged, path)[:]
                getattr(merged, path).extend(getattr(request.plan, path))
            elif path in ("business_goal", "start_time", "end_time"):
                getattr(merged, path).CopyFrom(getattr(request.plan, path))
            else:
                setattr(merged, path, getattr(request.plan, path))
        plan = self.core.update_plan(plan_id, spec_from_proto(merged), actor)
        return pb.UpdatePlanResponse(plan=plan_to_proto(plan))

    def DeletePlan(self, request, context):
        actor, _ = self._actor()
        self.core.delete_plan(plan_id_from(request.name), actor)
        return pb.DeletePlanResponse()

    def SubmitPlan(self, request, context):
        actor, _ = self._actor()
        return pb.SubmitPlanResponse(plan=plan_to_proto(
            self.core.submit(plan_id_from(request.name), actor)))

    def ApprovePlan(self, request, context):
        actor, roles = self._actor()
        return pb.ApprovePlanResponse(plan=plan_to_proto(self.core.approve(
            plan_id_from(request.name), actor, roles, request.content_hash, request.reason)))

    def RejectPlan(self, request, context):
        actor, roles = self._actor()
        return pb.RejectPlanResponse(plan=plan_to_proto(self.core.reject(
            plan_id_from(request.name), actor, roles, request.reason)))

    def SchedulePlan(self, request, context):
        actor, _ = self._actor()
        return pb.SchedulePlanResponse(plan=plan_to_proto(
            self.core.schedule(plan_id_from(request.name), actor)))

    def PausePlan(self, request, context):
        actor, _ = self._actor()
        return pb.PausePlanResponse(plan=plan_to_proto(
            self.core.pause(plan_id_from(request.name), actor, request.reason)))

    def ResumePlan(self, request, context):
        actor, _ = self._actor()
        return pb.ResumePlanResponse(plan=plan_to_proto(
            self.core.resume(plan_id_from(request.name), actor)))

    def CancelPlan(self, request, context):
        actor, _ = self._actor()
        return pb.CancelPlanResponse(plan=plan_to_proto(
            self.core.cancel(plan_id_from(request.name), actor, request.reason)))

    def ListAuditEntries(self, request, context):
        size = _page_size(request.page_size, 100, 1000)
        plan_id = plan_id_from(request.plan, "plan") if request.plan else None
        rows = self.core.store.list_audit(plan_id, decode_token(request.page_token), size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListAuditEntriesResponse(
            entries=[pb.AuditEntry(
                sequence=r["seq"], plan=f"plans/{r['plan_id']}", action=r["action"],
                from_state=STATE_ENUM.get(r["from_state"] or "", 0),
                to_state=STATE_ENUM.get(r["to_state"] or "", 0), actor=r["actor"],
                time=_ts(r["ts_ms"]), reason=r["reason"], content_hash=r["content_hash"],
                previous_hash=r["prev_hash"], entry_hash=r["entry_hash"]) for r in rows],
            next_page_token=encode_token(rows[-1]["seq"]) if more else "")

    def VerifyAuditLog(self, request, context):
        intact, bad = self.core.store.verify_audit_chain()
        return pb.VerifyAuditLogResponse(intact=intact, first_broken_sequence=bad or 0)

    def PreviewTouch(self, request, context):
        if not request.external_id:
            raise InvalidArgument("external_id", "is required")
        out = self.core.preview(plan_id_from(request.plan, "plan"), request.touch_id,
                                request.external_id)
        return pb.PreviewTouchResponse(title=out.get("title", ""), body=out.get("body", ""),
                                       subject=out.get("subject", ""))

    def DryRunTouch(self, request, context):
        funnel = self.core.dry_run(plan_id_from(request.plan, "plan"), request.touch_id)
        return pb.DryRunTouchResponse(funnel=funnel_to_proto(funnel))

    def ExecutePlan(self, request, context):
        plan_id = plan_id_from(request.name)
        plan = self.core.get_plan(plan_id)
        self.core._require_sendable(plan)
        funnel = self.core.run_due(plan_id=plan_id)
        return pb.ExecutePlanResponse(funnel=funnel_to_proto(funnel),
                                      plan=plan_to_proto(self.core.get_plan(plan_id)))

    def RunTouch(self, request, context):
        funnel = self.core.run_touch(plan_id_from(request.plan, "plan"), request.touch_id,
                                     request.occurrence_key)
        return pb.RunTouchResponse(funnel=funnel_to_proto(funnel))

    def ListSends(self, request, context):
        plan_id = plan_id_from(request.plan, "plan")
        self.core.get_plan(plan_id)
        size = _page_size(request.page_size, 100, 1000)
        status = SEND_STATUS_NAME.get(request.status, "")
        rows = self.core.store.list_sends(plan_id, decode_token(request.page_token), size + 1,
                                          status)
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListSendsResponse(
            sends=[pb.Send(
                touch_id=r.touch_id, occurrence_key=r.occurrence_key, user_id=r.user_id,
                channel=CHANNEL_ENUM.get(r.channel, 0), status=SEND_STATUS[r.status],
                reason=r.reason or "", attempts=r.attempts, idempotency_key=r.idempotency_key,
                not_before_time=_ts(r.not_before_ms), update_time=_ts(r.updated_ms),
                variant_id=r.variant_id or "", sent_time=_ts(r.sent_ms))
                for r in rows],
            next_page_token=encode_token(rows[-1].id) if more else "",
            status_counts=self.core.store.status_counts(plan_id))

    def ReportOutcomes(self, request, context):
        if len(request.outcomes) > MAX_BATCH:
            raise InvalidArgument("outcomes", f"at most {MAX_BATCH} outcomes per call")
        if self.intake is None:
            from services.common.errors import Unavailable

            raise Unavailable("outcome intake is not configured")
        items = [OutcomeItem(o.idempotency_key, OUTCOME_KINDS.get(o.type, ""),
                             _ms(o.time) if o.HasField("time") else 0,
                             o.value if o.type == pb.OUTCOME_TYPE_CONVERTED else None)
                 for o in request.outcomes]
        out = pb.ReportOutcomesResponse()
        for r in self.intake.report(items, source=f"api:{self._actor()[0]}"):
            status = status_pb2.Status(code=code_pb2.OK, message=r.status)
            if r.status == REFUSED:
                field = r.field.replace(".message_id", ".idempotency_key").replace(
                    ".kind", ".type")
                status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT,
                                           message=f"{field}: {r.reason}")
                detail = error_details_pb2.BadRequest(field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=field,
                                                                description=r.reason)])
                status.details.add().Pack(detail)
            out.results.add(index=r.index, status=status)
        return out

    def GetPlanStats(self, request, context):
        plan_id = plan_id_from(request.plan, "plan")
        self.core.get_plan(plan_id)
        out = pb.GetPlanStatsResponse(
            totals=[effect_to_proto(r) for r in self.stats.totals(plan_id)],
            control_groups=[pb.ControlGroupStats(**g)
                            for g in self.stats.control_groups(plan_id)])
        if request.include_hourly_series:
            for p in self.stats.series(plan_id):
                out.hourly.add(
                    touch_id=p["touch_id"], variant_id=p["variant"], hour=_ts(p["start_ms"]),
                    funnel=pb.Funnel(sent=p["sent"]), delivered=p["delivered"],
                    opened=p["opened"], clicked=p["clicked"], converted=p["converted"],
                    unsubscribed=p["unsubscribes"],
                    notification_disabled=p["notification_disabled"],
                    uninstalled=p["uninstalls"],
                    click_through_rate=p["clicked"] / p["sent"] if p["sent"] else 0.0,
                    conversion_rate=p["converted"] / p["sent"] if p["sent"] else 0.0)
        return out

    def GetExperiment(self, request, context):
        plan_id = plan_id_from(request.plan, "plan")
        if not request.touch_id:
            raise InvalidArgument("touch_id", "is required")
        plan = self.core.get_plan(plan_id)
        plan.touch(request.touch_id)
        exp = self.core.experiments.find(plan_id, request.touch_id)
        if exp is None:
            raise NotFound("experiment", f"{plan.name}/touches/{request.touch_id}/experiment")
        if exp.spec.mode == "race" and exp.state == "open" and exp.started_ms is not None:
            exp = self.core.evaluate_race(plan_id, request.touch_id)
        rows = {r.variant: r for r in self.stats.totals(plan_id)
                if r.touch_id == request.touch_id and r.variant}
        successes, trials = self.core.experiments.counts(plan_id, request.touch_id)
        ids = exp.spec.variant_ids
        from services.delivery.experiments import prob_best

        probs = prob_best([successes[v] for v in ids], [trials[v] for v in ids],
                          exp.spec.mc_draws, exp.spec.seed).tolist()
        if exp.state == "decided":
            decision = (f"{exp.decision_rule}: {exp.winner} with probability of being best "
                        f"{(exp.prob_best or 0.0):.3f}")
        elif exp.spec.mode != "race":
            decision = f"{exp.spec.mode}: no winner is declared in this mode"
        elif exp.started_ms is None:
            decision = "not started"
        else:
            decision = (f"open: best so far {ids[max(range(len(ids)), key=probs.__getitem__)]}"
                        f" at {max(probs):.3f}; needs {exp.spec.prob_best:.2f} with "
                        f"{exp.spec.min_samples} sends per variant")
        variants = []
        for v in ids:
            row = rows.get(v)
            if row is None:
                row = EffectRow(request.touch_id, v, "")
            variants.append(effect_to_proto(row))
        return pb.GetExperimentResponse(variants=variants, winner_variant_id=exp.winner or "",
                                        decision=decision, mode=MODE_ENUM[exp.spec.mode],
                                        probability_best=probs)


def effect_to_proto(r: EffectRow) -> pb.EffectStats:
    removed = sorted(r.suppressed.items())
    out = pb.EffectStats(
        touch_id=r.touch_id, variant_id=r.variant, channel=CHANNEL_ENUM.get(r.channel, 0),
        funnel=pb.Funnel(audience=r.audience, sent=r.sent,
                         failed=r.suppressed.get("dead", 0),
                         removed=[pb.ReasonCount(reason=k, count=v) for k, v in removed
                                  if k != "dead"]),
        delivered=r.delivered, opened=r.opened, clicked=r.clicked,
        click_through_rate=r.click_through_rate, converted=r.converted,
        conversion_rate=r.conversion_rate, revenue=r.revenue, unsubscribed=r.unsubscribes,
        notification_disabled=r.notification_disabled, uninstalled=r.uninstalls)
    if r.uplift is not None:
        out.uplift, out.uplift_ci_low, out.uplift_ci_high = r.uplift, r.uplift_low, r.uplift_high
    return out
