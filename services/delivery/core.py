"""The delivery rules: approval workflow, guards, exactly-once fan-out, dry run and preview."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from croniter import croniter
from pyroaring import BitMap

from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.delivery import model
from services.delivery.caps import CapGuard, CapRequest, RateLimiter, _zone, calendar_bucket
from services.delivery.experiments import (
    ARM_CONTROL,
    Experiments,
    ExperimentSpec,
    validate_experiment,
)
from services.delivery.gateways import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    OutboundMessage,
    Router,
    validate_webhook_url,
)
from services.delivery.model import State
from services.delivery.sources import AudienceSource, Contact, ProfileDirectory
from services.delivery.store import Store
from services.delivery.templates import CompiledContent, RenderError, compile_content

log = logging.getLogger(__name__)

APPROVER_ROLES = frozenset({"approver"})
RACE_RECHECK_MS = 60_000  # how often rows waiting for a race winner look again
RACE_PENDING = "race_pending"
LOCAL_DUE_LEAD_MS = 14 * 3_600_000  # the earliest zone (UTC+14) reaches a wall-clock first
CRON_HORIZON_MS = 86_400_000  # cron occurrences are materialized a day ahead (reservations)


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """Tunables of the fan-out, each read from a ``DELIVERY_*`` variable by ``__main__``."""

    batch_size: int = 1000
    lease_ms: int = 30_000
    max_attempts: int = 5
    retry_backoff_ms: int = 30_000
    allow_private_webhooks: bool = False
    # Channels where sending needs a recorded opt-in (no recorded choice = no consent).
    opt_in_channels: frozenset[str] = frozenset({"email", "sms"})
    # Channels where the law makes even transactional messages respect an unsubscribe.
    transactional_consent_channels: frozenset[str] = frozenset({"email", "sms", "wechat"})
    worker_id: str = ""


@dataclasses.dataclass
class Funnel:
    """Counts of a dry run or a run: audience, removals by reason, and sends."""

    audience: int = 0
    removed: dict[str, int] = dataclasses.field(default_factory=dict)
    deferred: dict[str, int] = dataclasses.field(default_factory=dict)
    sent: int = 0
    failed: int = 0

    def remove(self, reason: str, n: int = 1) -> None:
        self.removed[reason] = self.removed.get(reason, 0) + n

    def defer(self, reason: str, n: int = 1) -> None:
        self.deferred[reason] = self.deferred.get(reason, 0) + n

    def add(self, other: Funnel) -> None:
        self.audience += other.audience
        for k, v in other.removed.items():
            self.remove(k, v)
        for k, v in other.deferred.items():
            self.defer(k, v)
        self.sent += other.sent
        self.failed += other.failed


def _local_minute(contact: Contact, at_ms: int) -> int:
    local = dt.datetime.fromtimestamp(at_ms / 1000, _zone(contact.time_zone))
    return local.hour * 60 + local.minute


def quiet_until(contact: Contact, at_ms: int) -> int | None:
    """When quiet hours end, if ``at_ms`` falls in the user's quiet hours (local time)."""
    start, end = contact.quiet_start_minute, contact.quiet_end_minute
    if start is None or end is None or start == end:
        return None
    minute = _local_minute(contact, at_ms)
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    zone = _zone(contact.time_zone)
    local = dt.datetime.fromtimestamp(at_ms / 1000, zone)
    target = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if target <= local:
        target = (local + dt.timedelta(days=1)).replace(
            hour=end // 60, minute=end % 60, second=0, microsecond=0)
    # Rebuild from the wall-clock so a DST change in between lands on the local end time.
    target = target.replace(tzinfo=None).replace(tzinfo=zone)
    return int(target.timestamp() * 1000)


def follow_up_spec(data: dict[str, Any]):
    """A stored follow-up path (with its ``touch_id``) as a ``followups.FollowUpSpec``."""
    from services.delivery.followups import FollowUpSpec

    return FollowUpSpec(**{k: v for k, v in data.items() if k != "touch_id"})


# Internal field names of the trigger, experiment and follow-up checks -> the proto's names.
_WIRE_NAMES = {
    ".within": ".within_seconds", ".delay": ".delay_seconds",
    ".not_event_type": ".absent_event_type", ".segment": ".entered_segment",
    ".window": ".observation_window_seconds", ".min_samples": ".min_samples_per_variant",
    ".variants.share": ".variants", ".share": ".split_percent", ".wait": ".wait_seconds",
    ".spacing": ".repeat_spacing_seconds", ".max_retries": ".max_repeats",
    ".retry_touch_id": ".unconverted_touch_id", ".next_touch_id": ".converted_next_touch_id",
    ".handover_plan_id": ".converted_handover_plan",
    ".handover_touch_id": ".converted_handover_touch_id",
}


def _wire_name(field: str) -> str:
    for internal, wire in _WIRE_NAMES.items():
        if field.endswith(internal):
            return field[: -len(internal)] + wire
    return field


def local_due_ms(wallclock: str, time_zone: str) -> int:
    local = model.parse_local_time(wallclock).replace(tzinfo=_zone(time_zone))
    return int(local.timestamp() * 1000)


class DeliveryCore:
    """Everything the delivery service does, independent of gRPC."""

    def __init__(self, store: Store, caps: CapGuard, router: Router,
                 directory: ProfileDirectory, audiences: AudienceSource,
                 config: DeliveryConfig | None = None, rate_limiter: RateLimiter | None = None):
        self.store = store
        self.caps = caps
        self.router = router
        self.directory = directory
        self.audiences = audiences
        self.config = config or DeliveryConfig()
        self.rate_limiter = rate_limiter or RateLimiter(caps.redis)
        base = self.config.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.worker_id = f"{base}-{uuid.uuid4().hex[:6]}"
        self.clock = store.clock
        self._compiled: dict[tuple, CompiledContent] = {}
        self._lock = threading.Lock()
        self.experiments = Experiments(store.engine, store.clock)

    # Validation ----------------------------------------------------------------------------

    def validate(self, spec: model.PlanSpec) -> None:
        """Every check done at save time; raises InvalidArgument naming each bad field."""
        violations = model.validate_spec(spec)
        known = None
        for i, touch in enumerate(spec.touches):
            prefix = f"touches[{i}].content"
            if touch.channel == "webhook" and touch.content.webhook_url:
                try:
                    validate_webhook_url(touch.content.webhook_url,
                                         self.config.allow_private_webhooks,
                                         f"{prefix}.webhook_url")
                except InvalidArgument as exc:
                    violations.extend(exc.violations)
            if known is None:
                known = self.directory.attribute_names()
            try:
                self.compile_touch(touch, known, prefix)
            except InvalidArgument as exc:
                violations.extend(exc.violations)
            violations.extend(self._validate_effects(spec, i, touch, known))
        violations.extend(self._validate_follow_ups(spec))
        if violations:
            raise InvalidArgument(violations=violations)

    def _validate_effects(self, spec: model.PlanSpec, i: int, touch: model.Touch,
                          known) -> list[tuple[str, str]]:
        """The trigger and the experiment of one touch, fields named as on the wire."""
        from services.delivery.triggers import TriggerSpec, validate_trigger

        out: list[tuple[str, str]] = []
        prefix = f"touches[{i}]"
        if touch.trigger:
            try:
                trig = TriggerSpec.from_dict(touch.trigger)
            except (TypeError, ValueError) as exc:
                return [(f"{prefix}.trigger", f"is not a trigger: {exc}")]
            out += [(_wire_name(f), d) for f, d in
                    validate_trigger(trig, spec, touch.touch_id, f"{prefix}.trigger")]
        if touch.experiment:
            try:
                exp = self.experiment_spec(spec, touch)
            except (TypeError, ValueError) as exc:
                return out + [(f"{prefix}.experiment", f"is not an experiment: {exc}")]
            out += [(_wire_name(f), d) for f, d in
                    validate_experiment(exp, spec, touch.touch_id, f"{prefix}.experiment")
                    if not f.endswith(".control_percent")]
            for j, variant in enumerate(exp.variants):
                try:
                    self.compile_touch(self.experiments.apply_variant(touch, variant), known,
                                       f"{prefix}.experiment.variants[{j}].content")
                except InvalidArgument as exc:
                    out += exc.violations
        return out

    @staticmethod
    def _validate_follow_ups(spec: model.PlanSpec) -> list[tuple[str, str]]:
        from services.delivery.followups import validate_followup

        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, data in enumerate(spec.follow_ups):
            prefix = f"follow_ups[{i}]"
            touch_id = data.get("touch_id", "")
            if touch_id in seen:
                out.append((f"{prefix}.after_touch_id", "one follow-up path per touch"))
            seen.add(touch_id)
            follow = follow_up_spec(data)
            out += [(_wire_name(f.replace(f"{prefix}.touch_id", f"{prefix}.after_touch_id")), d)
                    for f, d in validate_followup(follow, spec, touch_id, prefix)]
        return out

    @staticmethod
    def experiment_spec(spec: model.PlanSpec, touch: model.Touch) -> ExperimentSpec:
        """A touch's experiment with the plan's control group."""
        return ExperimentSpec.from_dict({**touch.experiment,
                                         "control_percent": spec.control_percent})

    def _sync_effects(self, plan: model.Plan) -> None:
        """Stores a saved plan's experiments, triggers and follow-up rules where the workers
        read them (replacing what an earlier version of the plan declared)."""
        from services.delivery.tables_effects import followup_rules, triggers

        ts = self.clock()
        spec = plan.spec
        with self.store.engine.begin() as conn:
            conn.execute(triggers.delete().where(triggers.c.plan_id == plan.id))
            conn.execute(followup_rules.delete().where(followup_rules.c.plan_id == plan.id))
            trigger_rows = [{"plan_id": plan.id, "touch_id": t.touch_id, "spec": t.trigger,
                             "updated_ms": ts} for t in spec.touches if t.trigger]
            if trigger_rows:
                conn.execute(triggers.insert(), trigger_rows)
            rule_rows = [{"plan_id": plan.id, "touch_id": f["touch_id"],
                          "spec": dataclasses.asdict(follow_up_spec(f)), "updated_ms": ts}
                         for f in spec.follow_ups]
            if rule_rows:
                conn.execute(followup_rules.insert(), rule_rows)
        with_experiment = [t for t in spec.touches if t.experiment]
        self.experiments.forget(plan.id, keep=[t.touch_id for t in with_experiment])
        for touch in with_experiment:
            self.experiments.save(plan, touch.touch_id, self.experiment_spec(spec, touch))

    @staticmethod
    def compile_touch(touch: model.Touch, known: Iterable[str], prefix: str) -> CompiledContent:
        """Compiles a touch's templates (sandboxed), checking variables against ``known``."""
        parts = {"title": touch.content.title, "body": touch.content.body,
                 "subject": touch.content.subject}
        return compile_content(touch.channel, parts, touch.content.defaults, known, prefix)

    def compiled(self, plan: model.Plan, touch: model.Touch, variant: str = "") -> CompiledContent:
        key = (plan.id, touch.touch_id, plan.content_hash, variant)
        with self._lock:
            cached = self._compiled.get(key)
        if cached is None:
            cached = self.compile_touch(touch, self.directory.attribute_names(),
                                        f"touches[{touch.touch_id}].content")
            with self._lock:
                self._compiled[key] = cached
        return cached

    # Workflow ------------------------------------------------------------------------------

    def create_plan(self, spec: model.PlanSpec, actor: str) -> model.Plan:
        self.validate(spec)
        plan = self.store.create_plan(spec, actor)
        self._sync_effects(plan)
        return plan

    def get_plan(self, plan_id: int) -> model.Plan:
        return self.store.get_plan(plan_id)

    def update_plan(self, plan_id: int, spec: model.PlanSpec, actor: str) -> model.Plan:
        """Saves new content; a plan that was approved or scheduled goes back to draft."""
        self.validate(spec)

        def decide(plan: model.Plan):
            if plan.state == State.RUNNING:
                raise FailedPrecondition("a running plan cannot change; pause it first",
                                         [("STATE", plan.name, plan.state)])
            if plan.state in model.TERMINAL_STATES:
                raise FailedPrecondition(f"a {plan.state} plan cannot change",
                                         [("STATE", plan.name, plan.state)])
            if model.content_hash(spec) == plan.content_hash:
                return plan.state, {}, None
            return State.DRAFT, {"approved_hash": None, "approved_by": None}, spec

        before = self.store.get_plan(plan_id)
        plan = self.store.change_plan(plan_id, actor, "update", decide,
                                      reason="content changed")
        if before.state in (State.SCHEDULED, State.PAUSED, State.APPROVED):
            self.store.cancel_pending_occurrences(plan_id)
        if plan.content_hash != before.content_hash:
            self._sync_effects(plan)
        return plan

    def delete_plan(self, plan_id: int, actor: str) -> None:
        def decide(plan: model.Plan):
            if plan.state not in (State.DRAFT, State.REJECTED, State.CANCELLED,
                                  State.COMPLETED):
                raise FailedPrecondition(
                    f"a {plan.state} plan cannot be deleted; cancel it first",
                    [("STATE", plan.name, plan.state)])
            return plan.state, {"deleted_ms": self.clock()}, None

        self.store.change_plan(plan_id, actor, "delete", decide)

    def _transition(self, plan_id: int, actor: str, action: str, allowed_from: Iterable[str],
                    to_state: str, reason: str = "", extra: Callable | None = None,
                    need_approval: bool = False) -> model.Plan:
        allowed = frozenset(allowed_from)

        def decide(plan: model.Plan):
            if plan.state not in allowed:
                raise FailedPrecondition(
                    f"cannot {action} a plan that is {plan.state}",
                    [("STATE", plan.name, f"{action} needs one of: {', '.join(sorted(allowed))}")])
            if need_approval and not plan.approved:
                raise FailedPrecondition(
                    f"cannot {action} a plan whose current content is not approved",
                    [("APPROVAL", plan.name, "not approved")])
            changes = extra(plan) if extra else {}
            return to_state, changes, None

        return self.store.change_plan(plan_id, actor, action, decide, reason=reason)

    def submit(self, plan_id: int, actor: str) -> model.Plan:
        return self._transition(plan_id, actor, "submit", [State.DRAFT, State.REJECTED],
                                State.PENDING_APPROVAL)

    def approve(self, plan_id: int, actor: str, roles: Iterable[str], content_hash: str,
                reason: str = "") -> model.Plan:
        """Maker-checker: an approver who did not create the plan, approving the exact content
        (``content_hash``) they reviewed."""
        if not APPROVER_ROLES & set(roles):
            raise PermissionDenied("only an approver may approve a plan")
        if not content_hash:
            raise InvalidArgument("content_hash", "the hash of the reviewed content is required")

        def extra(plan: model.Plan):
            if actor == plan.creator:
                raise PermissionDenied("a plan cannot be approved by its own creator")
            if content_hash != plan.content_hash:
                raise FailedPrecondition(
                    "the plan changed since it was reviewed",
                    [("CONTENT_HASH", plan.name, f"current content hash is {plan.content_hash}")])
            return {"approved_hash": content_hash, "approved_by": actor, "reject_reason": None}

        return self._transition(plan_id, actor, "approve", [State.PENDING_APPROVAL],
                                State.APPROVED, reason, extra)

    def reject(self, plan_id: int, actor: str, roles: Iterable[str], reason: str) -> model.Plan:
        if not APPROVER_ROLES & set(roles):
            raise PermissionDenied("only an approver may reject a plan")
        if not reason.strip():
            raise InvalidArgument("reason", "a rejection needs a reason")

        def extra(plan: model.Plan):
            if actor == plan.creator:
                raise PermissionDenied("a plan cannot be reviewed by its own creator")
            return {"reject_reason": reason, "approved_hash": None, "approved_by": None}

        return self._transition(plan_id, actor, "reject", [State.PENDING_APPROVAL],
                                State.REJECTED, reason, extra)

    def schedule(self, plan_id: int, actor: str) -> model.Plan:
        """Approved -> scheduled; materializes the first occurrences (which reserve capacity
        for this plan's priority)."""
        plan = self._transition(plan_id, actor, "schedule", [State.APPROVED], State.SCHEDULED,
                                need_approval=True)
        self.materialize(plan, self.clock())
        return plan

    def pause(self, plan_id: int, actor: str, reason: str = "") -> model.Plan:
        return self._transition(plan_id, actor, "pause", [State.SCHEDULED, State.RUNNING],
                                State.PAUSED, reason)

    def resume(self, plan_id: int, actor: str) -> model.Plan:
        plan = self._transition(plan_id, actor, "resume", [State.PAUSED], State.SCHEDULED,
                                need_approval=True)
        self.materialize(plan, self.clock())
        return plan

    def cancel(self, plan_id: int, actor: str, reason: str = "") -> model.Plan:
        live = [s for s in vars(State).values() if isinstance(s, str) and s.islower()
                and s not in model.TERMINAL_STATES]
        plan = self._transition(plan_id, actor, "cancel", live, State.CANCELLED, reason)
        self.store.cancel_pending_occurrences(plan_id)
        return plan

    def _require_sendable(self, plan: model.Plan) -> None:
        """The single gate before any send: approved content, in a sending state."""
        if plan.state not in model.SENDABLE_STATES or not plan.approved:
            raise FailedPrecondition(
                f"plan {plan.name} is {plan.state} and its current content is "
                f"{'approved' if plan.approved else 'not approved'}; nothing is sent",
                [("STATE", plan.name, "sending needs an approved, scheduled plan")])

    # Occurrences and scheduling ------------------------------------------------------------

    def _occurrence_slots(self, plan: model.Plan, touch: model.Touch, now: int,
                          manual_key: str = "") -> list[tuple[str, int, str | None]]:
        """(key, due ms, local wall-clock) of the touch's runs due by ``now`` + horizon."""
        s = touch.schedule
        start = plan.spec.start_ms
        if s.kind == "trigger":
            return []  # sent by the trigger engine when its event comes, never in batch
        if s.kind == "now":
            return [("once", max(now, start), None)]
        if s.kind == "at":
            return [("at", s.at_ms, None)]
        if s.kind == "at_local":
            due = local_due_ms(s.local_time, "UTC") - LOCAL_DUE_LEAD_MS
            return [(f"local-{s.local_time}", max(due, start), s.local_time)]
        slots = []
        until = min(now + CRON_HORIZON_MS, plan.spec.end_ms)
        if s.user_time_zone:
            base = dt.datetime.fromtimestamp(max(now, start) / 1000 - 14 * 3600,
                                          dt.UTC).replace(tzinfo=None)
            it = croniter(s.cron, base)
            while len(slots) < 500:
                wall = it.get_next(dt.datetime)
                text = wall.strftime("%Y-%m-%dT%H:%M")
                due = local_due_ms(text, "UTC") - LOCAL_DUE_LEAD_MS
                if due > until:
                    break
                if local_due_ms(text, "UTC") + LOCAL_DUE_LEAD_MS >= max(now, start) - 60_000:
                    slots.append((f"cronl-{text}", max(due, start), text))
        else:
            zone = _zone(s.time_zone)
            base = dt.datetime.fromtimestamp(max(now - 60_000, start) / 1000, zone)
            it = croniter(s.cron, base)
            while len(slots) < 500:
                at = it.get_next(dt.datetime)
                due = int(at.timestamp() * 1000)
                if due > until:
                    break
                slots.append((f"cron-{dt.datetime.fromtimestamp(due / 1000, dt.UTC):%Y%m%dT%H%M}",
                              due, None))
        return slots

    def materialize(self, plan: model.Plan, now: int) -> list[int]:
        """Creates the occurrences due up to the horizon; future ones get a provisional
        audience snapshot so their capacity is reserved against lower-priority plans."""
        ids = []
        for touch in plan.spec.touches:
            for key, due, wall in self._occurrence_slots(plan, touch, now):
                if due > plan.spec.end_ms:
                    continue
                occ_id = self.store.ensure_occurrence(plan, touch, key, due, wall)
                ids.append(occ_id)
                occ = self.store.occurrence(occ_id)
                if occ.audience is None and occ.state == "pending":
                    self.store.set_snapshot(occ_id, self.snapshot(touch), final=False)
        return ids

    def snapshot(self, touch: model.Touch) -> BitMap:
        """The touch's audience now: a segment snapshot, or the explicit list resolved."""
        if touch.audience.segment:
            return self.audiences.snapshot(touch.audience.segment)
        return BitMap(self.directory.resolve(list(touch.audience.external_ids)).values())

    def run_due(self, now: int | None = None, plan_id: int | None = None,
                wait_for_leases: bool = False) -> Funnel:
        """One scheduler pass: materialize, run due occurrences, send due deferred/retry rows,
        complete finished plans. Safe to run in any number of replicas at once."""
        now = self.clock() if now is None else now
        total = Funnel()
        ids = [plan_id] if plan_id is not None else self.store.plan_ids_in_states(
            [State.SCHEDULED, State.RUNNING])
        for pid in ids:
            try:
                plan = self.store.get_plan(pid)
            except NotFound:
                continue
            if plan.state not in (State.SCHEDULED, State.RUNNING) or not plan.approved:
                continue
            self.materialize(plan, now)
            for occ in self.store.occurrences_for_plan(pid, ["pending", "running"]):
                if occ.due_ms <= now:
                    try:
                        total.add(self.run_occurrence(occ.id, wait_for_leases=wait_for_leases))
                    except FailedPrecondition:
                        # Another replica finished the plan (or someone paused or cancelled
                        # it) after this pass listed its occurrences: nothing is left to send.
                        if self._still_sendable(pid):
                            raise
                        break
            total.add(self.process_due(plan_id=pid))
            self._maybe_complete(pid, now)
        return total

    def _maybe_complete(self, plan_id: int, now: int) -> None:
        plan = self.store.get_plan(plan_id)
        if plan.state != State.RUNNING:
            return
        if self.store.occurrences_for_plan(plan_id, ["pending", "running"]):
            return
        recurring = any(t.schedule.kind == "cron" for t in plan.spec.touches)
        if recurring and now < plan.spec.end_ms:
            return
        try:
            self._transition(plan_id, "system", "complete", [State.RUNNING], State.COMPLETED)
        except FailedPrecondition:
            pass  # another replica completed it first

    def run_touch(self, plan_id: int, touch_id: str, occurrence_key: str) -> Funnel:
        """Runs one touch now under an explicit occurrence key (idempotent per key)."""
        if not occurrence_key:
            raise InvalidArgument("occurrence_key", "is required (it makes the run idempotent)")
        plan = self.store.get_plan(plan_id)
        self._require_sendable(plan)
        touch = plan.touch(touch_id)
        occ_id = self.store.ensure_occurrence(plan, touch, f"manual-{occurrence_key}",
                                              self.clock(), None)
        return self.run_occurrence(occ_id, wait_for_leases=True)

    def run_occurrence(self, occurrence_id: int, wait_for_leases: bool = False,
                       stop: threading.Event | None = None) -> Funnel:
        """Fans one occurrence out in batches: claim in the ledger, guard, render, send, mark.
        Resumable: a restart skips recipients already in the ledger and reclaims the claims of
        dead workers once their lease ends."""
        funnel = Funnel()
        occ = self.store.occurrence(occurrence_id)
        if occ.state in ("done", "cancelled"):
            return funnel
        plan = self.store.get_plan(occ.plan_id)
        self._require_sendable(plan)
        touch = plan.touch(occ.touch_id)
        if not occ.snapshot_final:
            self.store.set_snapshot(occ.id, self.snapshot(touch), final=True)
            occ = self.store.occurrence(occurrence_id)
        if plan.state == State.SCHEDULED:
            try:
                self._transition(plan.id, "system", "start", [State.SCHEDULED], State.RUNNING,
                                 need_approval=True)
            except FailedPrecondition:
                pass  # another replica started it
        audience = BitMap.deserialize(occ.audience)
        funnel.audience = len(audience)
        compiled = self.compiled(plan, touch)
        size = self.config.batch_size
        for start in range(0, len(audience), size):
            if stop is not None and stop.is_set():
                return funnel
            if not self._still_sendable(plan.id):
                return funnel
            chunk = audience[start:start + size]
            claimed = self.store.claim_new(occ, list(chunk), self.worker_id, self.config.lease_ms)
            if claimed:
                funnel.add(self.process_claimed(plan, touch, occ, claimed, compiled))
        while True:
            if stop is not None and stop.is_set():
                return funnel
            if not self._still_sendable(plan.id):
                return funnel
            rows = self.store.claim_due(self.worker_id, self.config.lease_ms, size,
                                        occurrence_id=occ.id)
            if rows:
                funnel.add(self.process_claimed(plan, touch, occ, [r[:2] for r in rows],
                                                compiled))
                continue
            open_rows = self.store.occurrence_open_rows(occ.id)
            if open_rows == 0:
                self.store.set_occurrence_state(occ.id, "done")
                break
            if not wait_for_leases or self._only_deferred(occ.id):
                break
            time.sleep(min(0.2, self.config.lease_ms / 4000))
        return funnel

    def _only_deferred(self, occurrence_id: int) -> bool:
        rows = self.store.status_counts_for_occurrence(occurrence_id)
        return rows.get("claimed", 0) == 0

    def _still_sendable(self, plan_id: int) -> bool:
        try:
            plan = self.store.get_plan(plan_id)
        except NotFound:
            return False
        return plan.state in model.SENDABLE_STATES and plan.approved

    def process_due(self, plan_id: int | None = None) -> Funnel:
        """Sends deferred and retrying rows whose time has come (and reclaims dead claims)."""
        funnel = Funnel()
        while True:
            rows = self.store.claim_due(self.worker_id, self.config.lease_ms,
                                        self.config.batch_size, plan_id=plan_id)
            if not rows:
                return funnel
            by_occ: dict[int, list] = {}
            for send_id, user_id, occ_id in rows:
                by_occ.setdefault(occ_id, []).append((send_id, user_id))
            for occ_id, claimed in by_occ.items():
                occ = self.store.occurrence(occ_id)
                plan = self.store.get_plan(occ.plan_id)
                if plan.state not in model.SENDABLE_STATES or not plan.approved:
                    self._settle_unsendable(plan, claimed)
                    continue
                touch = plan.touch(occ.touch_id)
                funnel.add(self.process_claimed(plan, touch, occ, claimed))

    def _settle_unsendable(self, plan: model.Plan, claimed: list) -> None:
        """Rows of a cancelled plan end suppressed; rows of a paused plan wait a minute."""
        if plan.state == State.CANCELLED:
            self.store.mark([{"id": i, "status": "suppressed", "reason": "plan_cancelled"}
                             for i, _ in claimed], self.worker_id)
        else:
            later = self.clock() + 60_000
            self.store.mark([{"id": i, "status": "deferred", "reason": "plan_paused",
                              "not_before_ms": later} for i, _ in claimed], self.worker_id)

    # Guards --------------------------------------------------------------------------------

    def _consent_reason(self, category: str, channel: str, contact: Contact) -> str | None:
        if category == "transactional":
            if channel in self.config.transactional_consent_channels and contact.consent is False:
                return "unsubscribed"
            return None
        if contact.consent is False:
            return "unsubscribed"
        if contact.consent is None and channel in self.config.opt_in_channels:
            return "no_consent"
        return None

    @staticmethod
    def _flag_reason(channel: str, contact: Contact) -> str | None:
        if channel in ("push", "in_app") and contact.app_uninstalled:
            return "app_uninstalled"
        if channel == "push" and contact.notifications_disabled:
            return "notifications_disabled"
        return None

    def _pre_cap_guards(self, plan: model.Plan, occ, contact: Contact | None,
                        now: int) -> tuple[str, str, int | None]:
        """(outcome, reason, not_before) for the guards before caps, in the issue's order:
        consent, device flags, then per-user schedule time and quiet hours (deferrals)."""
        if contact is None:
            return "suppressed", "unknown_user", None
        if now > plan.spec.end_ms:
            return "suppressed", "plan_ended", None
        reason = self._consent_reason(plan.spec.category, occ.channel, contact)
        if reason:
            return "suppressed", reason, None
        reason = self._flag_reason(occ.channel, contact)
        if reason:
            return "suppressed", reason, None
        if occ.local_wallclock:
            due = local_due_ms(occ.local_wallclock, contact.time_zone)
            if due > now:
                return "deferred", "user_time_zone", due
        if plan.spec.category == "marketing":
            until = quiet_until(contact, now)
            if until is not None:
                return "deferred", "quiet_hours", until
        return "ok", "", None

    def _reservations(self, plan: model.Plan, occ, users: Sequence[int], contacts, now: int
                      ) -> dict[int, dict[str, int]]:
        """Cap slots held for higher-priority occurrences due within the cap windows of this
        send, per user and rule: the users' bit in each reserving audience bitmap, minus the
        users that reserving run already handled."""
        rules = self.caps.rules_for(occ.channel, occ.category)
        if not rules or not users:
            return {}
        horizon = max(r.horizon_ms for r in rules)
        found = self.store.reservations(plan.spec.priority, now, now + horizon, plan.id)
        if not found:
            return {}
        batch = BitMap(users)
        running = [r.id for r in found if r.state == "running"]
        handled = self.store.users_in_ledger(running, users) if running else set()
        out: dict[int, dict[str, int]] = {}
        for res in found:
            members = BitMap.deserialize(res.audience) & batch
            if not members:
                continue
            res_rules = [r for r in rules if r.applies(res.channel, res.category)]
            for uid in members:
                if (res.id, uid) in handled:
                    continue
                tz = contacts[uid].time_zone
                for rule in res_rules:
                    if rule.window == "rolling":
                        same = res.due_ms - now < rule.seconds * 1000
                    else:
                        same = (calendar_bucket(rule.window, tz, now // 60_000)[0]
                                == calendar_bucket(rule.window, tz, res.due_ms // 60_000)[0])
                    if same:
                        slot = out.setdefault(uid, {})
                        slot[rule.name] = slot.get(rule.name, 0) + 1
        return out

    def process_claimed(self, plan: model.Plan, touch: model.Touch, occ,
                        claimed: Sequence[tuple[int, int]],
                        compiled: CompiledContent | None = None,
                        pending_to_leader: bool = False) -> Funnel:
        """Decides and sends claimed ledger rows (send id, user id) of one occurrence.

        Before any guard, a touch with an experiment or a plan with a control group splits
        the rows: control users end suppressed with reason ``control_group`` (and take no
        cap slot); each variant's users get the variant's copy and channel, with the variant
        recorded in the ledger; users of an open copy race outside its exploration slice wait
        (deferred, reason ``race_pending``) for the winner, or, for triggered sends that
        cannot wait (``pending_to_leader``), get the current leader. Assignments are stored,
        so a deferred or retried row is resent the user's own variant."""
        funnel = Funnel()
        exp = self.experiments.find(plan.id, touch.touch_id)
        users = [uid for _, uid in claimed]
        if exp is None and plan.spec.control_percent <= 0:
            return self._process(plan, touch, occ, compiled or self.compiled(plan, touch),
                                 claimed)
        if exp is None:
            assigned = self.experiments.assign_holdout(plan.id, touch.touch_id, users,
                                                       plan.spec.control_percent)
        else:
            if exp.spec.mode == "race" and exp.state == "open":
                exp = self.evaluate_race(plan.id, touch.touch_id)
            assigned = self.experiments.assign(plan.id, touch.touch_id, users,
                                               pending_to_leader=pending_to_leader)
        groups: dict[str, list[tuple[int, int]]] = {}
        held: list[dict[str, Any]] = []
        now = self.clock()
        for send_id, uid in claimed:
            a = assigned[uid]
            if a.arm == ARM_CONTROL:
                held.append({"id": send_id, "status": "suppressed", "reason": "control_group"})
                funnel.remove("control_group")
            elif a.variant is None:
                deadline = ((exp.started_ms or now)
                            + (exp.spec.deadline_s or exp.spec.window_s) * 1000)
                due = min(now + RACE_RECHECK_MS, max(now, deadline))
                held.append({"id": send_id, "status": "deferred", "reason": RACE_PENDING,
                             "not_before_ms": max(due, now + 1000)})
                funnel.defer(RACE_PENDING)
            else:
                groups.setdefault(a.variant, []).append((send_id, uid))
        self.store.mark(held, self.worker_id)
        for variant, rows in groups.items():
            if not variant:
                funnel.add(self._process(plan, touch, occ,
                                         compiled or self.compiled(plan, touch), rows))
                continue
            vtouch = self.experiments.variant_touch(plan.id, touch, variant)
            vocc = occ
            if vtouch.channel != occ.channel:
                vocc = types.SimpleNamespace(**dict(occ._mapping))
                vocc.channel = vtouch.channel
            funnel.add(self._process(plan, vtouch, vocc, self.compiled(plan, vtouch, variant), rows,
                                     variant=variant))
        return funnel

    def evaluate_race(self, plan_id: int, touch_id: str):
        """Applies the race rule to the counts so far; once a winner is decided, the rows
        that waited for it become due at once."""
        exp = self.experiments.evaluate_race(plan_id, touch_id)
        if exp.state == "decided":
            self.store.release_waiting(plan_id, touch_id, RACE_PENDING)
        return exp

    def _process(self, plan: model.Plan, touch: model.Touch, occ, compiled: CompiledContent,
                 claimed: Sequence[tuple[int, int]], variant: str = "") -> Funnel:
        """Decides and sends one claimed batch; every row ends marked (or released)."""
        funnel = Funnel()
        now = self.clock()
        user_ids = [uid for _, uid in claimed]
        try:
            contacts = self.directory.contactability(user_ids, occ.channel)
        except Exception:
            self.store.release([i for i, _ in claimed], self.worker_id)
            raise
        updates: list[dict[str, Any]] = []
        passing: list[tuple[int, int, Contact]] = []
        for send_id, uid in claimed:
            contact = contacts.get(uid)
            outcome, reason, not_before = self._pre_cap_guards(plan, occ, contact, now)
            if outcome == "suppressed":
                updates.append({"id": send_id, "status": "suppressed", "reason": reason})
                funnel.remove(reason)
            elif outcome == "deferred":
                updates.append({"id": send_id, "status": "deferred", "reason": reason,
                                "not_before_ms": not_before})
                funnel.defer(reason)
            else:
                passing.append((send_id, uid, contact))
        rendered: dict[int, dict[str, str]] = {}
        if passing:
            attrs = self.directory.template_attributes(
                [uid for _, uid, _ in passing],
                compiled.variables - {"external_id", "plan", "touch"})
            context = {"plan": {"name": plan.name, "display_name": plan.spec.display_name,
                                "goal_event": plan.spec.goal_event, "scene": plan.spec.scene},
                       "touch": {"id": touch.touch_id, "channel": touch.channel}}
            still = []
            for send_id, uid, contact in passing:
                try:
                    rendered[send_id] = compiled.render(
                        {**attrs.get(uid, {}), **context, "external_id": contact.external_id})
                    still.append((send_id, uid, contact))
                except RenderError as exc:
                    updates.append({"id": send_id, "status": "suppressed",
                                    "reason": f"render_error: {exc}"[:250]})
                    funnel.remove("render_error")
            passing = still
        if passing:
            rows = self.store.send_rows([i for i, _, _ in passing])
            reserved = self._reservations(plan, occ, [u for _, u, _ in passing], contacts, now)
            requests = [CapRequest(uid, str(send_id), occ.channel, occ.category,
                                   contact.time_zone, reserved.get(uid, {}))
                        for send_id, uid, contact in passing]
            try:
                decisions = self.caps.check_and_count(requests, now)
            except Unavailable:
                # Fail closed: nothing of this batch is sent; the claims go back for later.
                self.store.mark([{**u, "variant_id": variant} for u in updates],
                                self.worker_id)
                self.store.release([i for i, _, _ in passing], self.worker_id)
                raise
            sendable = []
            for (send_id, uid, contact), decision in zip(passing, decisions):
                if decision.allowed:
                    sendable.append((send_id, uid, contact))
                else:
                    updates.append({"id": send_id, "status": "suppressed",
                                    "reason": decision.reason})
                    funnel.remove(decision.reason.split(":")[0])
            funnel.sent += self._send(plan, touch, occ, sendable, rendered, rows, updates, now,
                                      funnel)
        if variant:
            for u in updates:
                u["variant_id"] = variant
        self.store.mark(updates, self.worker_id)
        return funnel

    def _send(self, plan, touch, occ, sendable, rendered, rows, updates, now, funnel) -> int:
        if not sendable:
            return 0
        messages = []
        for send_id, uid, contact in sendable:
            parts = rendered[send_id]
            messages.append(OutboundMessage(
                idempotency_key=rows[send_id].idempotency_key, channel=occ.channel,
                recipient=contact.external_id, address=contact.address,
                title=parts.get("title", ""), body=parts.get("body", ""),
                subject=parts.get("subject", ""), data=dict(touch.content.data), plan=plan.name,
                touch_id=touch.touch_id, webhook_url=touch.content.webhook_url,
            ))
        results = []
        gateway = self.router.gateway_for(occ.channel)
        offset = 0
        while offset < len(messages):
            granted = self.rate_limiter.acquire(f"{plan.id}:{touch.touch_id}",
                                                len(messages) - offset, touch.send_rate_per_s)
            part = messages[offset:offset + granted]
            try:
                results.extend(gateway.send(part))
            except Exception as exc:
                log.exception("gateway failed for %d messages", len(part))
                from services.delivery.gateways import RETRY, SendResult

                results.extend(SendResult(m.idempotency_key, RETRY, f"gateway error: {exc}")
                               for m in part)
            offset += granted
        sent = 0
        released = []
        for (send_id, uid, contact), result in zip(sendable, results):
            attempts = rows[send_id].attempts + 1
            base = {"id": send_id, "attempts": attempts, "counted_ms": now,
                    "time_zone": contact.time_zone}
            if result.status in (ACCEPTED, DUPLICATE):
                updates.append({**base, "status": "sent", "reason": None, "sent_ms": now,
                                "gateway_message_id": result.vendor_message_id or None})
                sent += 1
            elif result.status == REJECTED or attempts >= self.config.max_attempts:
                updates.append({**base, "status": "dead", "reason": result.detail[:250],
                                "counted_ms": None})
                released.append((uid, str(send_id), occ.channel, occ.category,
                                 contact.time_zone, now))
                funnel.failed += 1
            else:
                delay = max(self.config.retry_backoff_ms * 2 ** (attempts - 1),
                            int(result.retry_after_s * 1000))
                updates.append({**base, "status": "retry", "reason": result.detail[:250],
                                "not_before_ms": now + delay})
                funnel.defer("retry")
        if released:
            self.caps.release(released)
        return sent

    # Dry run and preview -------------------------------------------------------------------

    def dry_run(self, plan_id: int, touch_id: str) -> Funnel:
        """The funnel a touch would have now: audience, removals per guard, would send.
        Counts nothing and sends nothing; works in any state (review before approval)."""
        plan = self.store.get_plan(plan_id)
        touch = plan.touch(touch_id)
        compiled = self.compiled(plan, touch)
        audience = self.snapshot(touch)
        funnel = Funnel(audience=len(audience))
        now = self.clock()
        cat = plan.spec.category
        # Per-user schedule times are not part of a dry run: it asks "who could get it now".
        fake_occ = types.SimpleNamespace(channel=touch.channel, category=cat,
                                         local_wallclock=None, id=-1)
        size = self.config.batch_size
        for start in range(0, len(audience), size):
            users = list(audience[start:start + size])
            contacts = self.directory.contactability(users, touch.channel)
            passing = []
            for uid in users:
                contact = contacts.get(uid)
                outcome, reason, _ = self._pre_cap_guards(plan, fake_occ, contact, now)
                if outcome == "suppressed":
                    funnel.remove(reason)
                elif outcome == "deferred":
                    funnel.defer(reason)
                else:
                    passing.append(contact)
            if not passing:
                continue
            attrs = self.directory.template_attributes([c.user_id for c in passing],
                                                       compiled.variables)
            ok = []
            for contact in passing:
                try:
                    compiled.render({**attrs.get(contact.user_id, {}),
                                     "external_id": contact.external_id,
                                     "plan": {"name": plan.name}, "touch": {"id": touch_id}})
                    ok.append(contact)
                except RenderError:
                    funnel.remove("render_error")
            reserved = self._reservations(plan, fake_occ, [c.user_id for c in ok],
                                          {c.user_id: c for c in ok}, now)
            decisions = self.caps.check_and_count(
                [CapRequest(c.user_id, f"dry-{c.user_id}", touch.channel, cat, c.time_zone,
                            reserved.get(c.user_id, {})) for c in ok], now, commit=False)
            for decision in decisions:
                if decision.allowed:
                    funnel.sent += 1
                else:
                    funnel.remove(decision.reason.split(":")[0])
        return funnel

    def preview(self, plan_id: int, touch_id: str, external_id: str) -> dict[str, str]:
        """Renders a touch for one user, exactly as a send would."""
        plan = self.store.get_plan(plan_id)
        touch = plan.touch(touch_id)
        compiled = self.compiled(plan, touch)
        ids = self.directory.resolve([external_id])
        if external_id not in ids:
            raise NotFound("profile", f"profiles/{external_id}")
        uid = ids[external_id]
        attrs = self.directory.template_attributes([uid], compiled.variables).get(uid, {})
        try:
            return compiled.render({**attrs, "external_id": external_id,
                                    "plan": {"name": plan.name,
                                             "display_name": plan.spec.display_name,
                                             "goal_event": plan.spec.goal_event,
                                             "scene": plan.spec.scene},
                                    "touch": {"id": touch.touch_id, "channel": touch.channel}})
        except RenderError as exc:
            raise FailedPrecondition(f"the template cannot be rendered for this user: {exc}",
                                     [("RENDER", f"profiles/{external_id}", str(exc))]) from exc
