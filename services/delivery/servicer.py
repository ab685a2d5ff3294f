"""gRPC surface of the delivery service: translates proto messages to the core and back."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from marketing.delivery.v1 import delivery_service_pb2 as pb
from marketing.delivery.v1 import delivery_service_pb2_grpc as pb_grpc
from services.common.auth import ADMIN, APPROVER, OPERATOR, SERVICE, current_principal
from services.common.errors import InvalidArgument
from services.delivery import model
from services.delivery.core import DeliveryCore, Funnel
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
                  "end_time", "priority", "category", "owner", "touches")


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


def spec_from_proto(plan: pb.Plan) -> model.PlanSpec:
    touches = []
    for i, t in enumerate(plan.touches):
        if t.HasField("trigger") or t.HasField("experiment"):
            raise InvalidArgument(f"touches[{i}].trigger",
                                  "triggers and experiments are not available yet")
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
            audience=audience, schedule=_schedule_from(t.schedule, f"touches[{i}].schedule"),
            send_rate_per_s=t.send_rate_per_second,
        ))
    return model.PlanSpec(
        display_name=plan.display_name, goal_type=GOALS.get(plan.goal_type, ""),
        scene=plan.scene, goal_event=plan.business_goal.event_type,
        goal_target=plan.business_goal.target if plan.HasField("business_goal") else None,
        start_ms=_ms(plan.start_time), end_ms=_ms(plan.end_time), priority=plan.priority,
        category=CATEGORY.get(plan.category, ""), owner=plan.owner, touches=tuple(touches),
    )


def plan_to_proto(plan: model.Plan) -> pb.Plan:
    s = plan.spec
    out = pb.Plan(
        name=plan.name, display_name=s.display_name,
        goal_type={v: k for k, v in GOALS.items()}[s.goal_type], scene=s.scene,
        business_goal=pb.BusinessGoal(event_type=s.goal_event, target=s.goal_target or 0.0),
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
        sch = t.schedule
        if sch.kind == "now":
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

    def __init__(self, core: DeliveryCore):
        self.core = core

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
            if path == "touches":
                del merged.touches[:]
                merged.touches.extend(request.plan.touches)
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
                not_before_time=_ts(r.not_before_ms), update_time=_ts(r.updated_ms))
                for r in rows],
            next_page_token=encode_token(rows[-1].id) if more else "",
            status_counts=self.core.store.status_counts(plan_id))
