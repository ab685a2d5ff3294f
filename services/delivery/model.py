"""Plans and touches as plain values: parsing, validation and the content hash approvals bind to."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import zoneinfo
from typing import Any

from croniter import croniter

from services.common.errors import InvalidArgument

GOAL_TYPES = ("acquire", "convert", "activate", "retain", "win_back")
CATEGORIES = ("transactional", "marketing")
CHANNELS = ("push", "sms", "email", "wechat", "in_app", "webhook", "coupon")
SCHEDULE_KINDS = ("now", "at", "at_local", "cron", "trigger")
MAX_CONTROL_PERCENT = 50.0
MAX_PRIORITY = 1000


class State:
    """Plan lifecycle states (the approval workflow)."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# States in which the approved content may be sent (always with approved_hash == content_hash).
SENDABLE_STATES = frozenset({State.APPROVED, State.SCHEDULED, State.RUNNING})
TERMINAL_STATES = frozenset({State.COMPLETED, State.CANCELLED})


@dataclasses.dataclass(frozen=True)
class Content:
    """What a touch says; title/body/subject are sandboxed Jinja2 templates."""

    title: str = ""
    body: str = ""
    subject: str = ""
    data: dict[str, str] = dataclasses.field(default_factory=dict)
    defaults: dict[str, str] = dataclasses.field(default_factory=dict)
    webhook_url: str = ""


@dataclasses.dataclass(frozen=True)
class Audience:
    """A segment snapshot taken at send time, or an explicit list of external ids."""

    segment: str = ""
    external_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a touch runs.

    ``now``: as soon as the plan is scheduled; ``at``: at ``at_ms``; ``at_local``: at the
    wall-clock ``local_time`` (``YYYY-MM-DDTHH:MM``) in each user's own time zone; ``cron``: at
    every instant of ``cron`` in ``time_zone``, or in each user's zone when ``user_time_zone``;
    ``trigger``: never by the batch scheduler, only when the touch's event trigger fires.
    """

    kind: str = "now"
    at_ms: int = 0
    local_time: str = ""
    cron: str = ""
    time_zone: str = "UTC"
    user_time_zone: bool = False


@dataclasses.dataclass(frozen=True)
class Touch:
    touch_id: str
    channel: str
    content: Content
    audience: Audience
    schedule: Schedule
    send_rate_per_s: int = 0
    # The event trigger (``triggers.TriggerSpec`` as a dict) when the schedule kind is
    # "trigger"; the content experiment (``experiments.ExperimentSpec`` as a dict), if any.
    trigger: dict[str, Any] | None = None
    experiment: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class PlanSpec:
    """The content of a plan: everything an approver approves."""

    display_name: str
    goal_type: str
    scene: str
    goal_event: str
    goal_target: float | None
    start_ms: int
    end_ms: int
    priority: int
    category: str
    owner: str
    touches: tuple[Touch, ...]
    # Percent of each touch's audience withheld as the control group (0..50).
    control_percent: float = 0.0
    # Follow-up paths (``followups.FollowUpSpec`` as a dict plus ``touch_id``, the touch
    # each follows).
    follow_ups: tuple[dict[str, Any], ...] = ()
    # How long after a send a goal event counts as its conversion; 0 for the default.
    attribution_window_s: int = 0


@dataclasses.dataclass(frozen=True)
class Plan:
    """A stored plan: its spec plus workflow state."""

    id: int
    spec: PlanSpec
    creator: str
    state: str
    content_hash: str
    approved_hash: str | None
    approved_by: str | None
    reject_reason: str | None
    version: int
    created_ms: int
    updated_ms: int

    @property
    def name(self) -> str:
        return f"plans/{self.id}"

    @property
    def approved(self) -> bool:
        """True only when the approval covers exactly the current content."""
        return self.approved_hash is not None and self.approved_hash == self.content_hash

    def touch(self, touch_id: str) -> Touch:
        for touch in self.spec.touches:
            if touch.touch_id == touch_id:
                return touch
        from services.common.errors import NotFound

        raise NotFound("touch", f"{self.name}/touches/{touch_id}")


def spec_to_dict(spec: PlanSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_dict(data: dict[str, Any]) -> PlanSpec:
    touches = tuple(
        Touch(
            touch_id=t["touch_id"],
            channel=t["channel"],
            content=Content(**t["content"]),
            audience=Audience(
                segment=t["audience"].get("segment", ""),
                external_ids=tuple(t["audience"].get("external_ids", ())),
            ),
            schedule=Schedule(**t["schedule"]),
            send_rate_per_s=t.get("send_rate_per_s", 0),
            trigger=t.get("trigger"), experiment=t.get("experiment"),
        )
        for t in data["touches"]
    )
    fields = {k: v for k, v in data.items() if k not in ("touches", "follow_ups")}
    return PlanSpec(**fields, touches=touches,
                    follow_ups=tuple(data.get("follow_ups") or ()))


# Fields added with triggers, experiments and follow-ups: left out of the hash while unset,
# so the hash of a plan without them is what it was before they existed.
_OPTIONAL_PLAN_FIELDS = ("control_percent", "follow_ups", "attribution_window_s")
_OPTIONAL_TOUCH_FIELDS = ("trigger", "experiment")


def content_hash(spec: PlanSpec) -> str:
    """SHA-256 of the canonical JSON of the spec (triggers, experiments, control group and
    follow-ups included); an approval is bound to this value."""
    data = spec_to_dict(spec)
    for name in _OPTIONAL_PLAN_FIELDS:
        if not data[name]:
            del data[name]
    for touch in data["touches"]:
        for name in _OPTIONAL_TOUCH_FIELDS:
            if not touch[name]:
                del touch[name]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def valid_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse_local_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M")


def validate_spec(spec: PlanSpec) -> list[tuple[str, str]]:
    """Structural checks; returns field violations (templates are checked separately)."""
    errors: list[tuple[str, str]] = []
    if not spec.display_name.strip():
        errors.append(("display_name", "is required"))
    if spec.goal_type not in GOAL_TYPES:
        errors.append(("goal_type", f"must be one of {', '.join(GOAL_TYPES)}"))
    if spec.category not in CATEGORIES:
        errors.append(("category", "must be transactional or marketing"))
    if not 0 <= spec.priority <= MAX_PRIORITY:
        errors.append(("priority", f"must be between 0 and {MAX_PRIORITY}"))
    if spec.start_ms <= 0:
        errors.append(("start_time", "is required"))
    if spec.end_ms <= 0:
        errors.append(("end_time", "is required"))
    elif spec.end_ms <= spec.start_ms:
        errors.append(("end_time", "must be after start_time"))
    if spec.goal_target is not None and spec.goal_target < 0:
        errors.append(("business_goal.target", "must not be negative"))
    if not spec.touches:
        errors.append(("touches", "a plan needs at least one touch"))
    if not 0 <= spec.control_percent <= MAX_CONTROL_PERCENT:
        errors.append(("control_group_percent",
                       f"must be between 0 and {MAX_CONTROL_PERCENT:g} percent"))
    if spec.attribution_window_s < 0:
        errors.append(("business_goal.attribution_window_seconds", "must not be negative"))
    seen: set[str] = set()
    for i, touch in enumerate(spec.touches):
        prefix = f"touches[{i}]"
        if not touch.touch_id or not touch.touch_id.replace("-", "").replace("_", "").isalnum():
            errors.append((f"{prefix}.touch_id", "must be letters, digits, '-' or '_'"))
        elif touch.touch_id in seen:
            errors.append((f"{prefix}.touch_id", f"duplicate touch id {touch.touch_id!r}"))
        seen.add(touch.touch_id)
        if touch.channel not in CHANNELS:
            errors.append((f"{prefix}.channel", f"must be one of {', '.join(CHANNELS)}"))
        audience = touch.audience
        if bool(audience.segment) == bool(audience.external_ids):
            errors.append((f"{prefix}.audience", "set exactly one of segment or user list"))
        if touch.send_rate_per_s < 0:
            errors.append((f"{prefix}.send_rate_per_s", "must not be negative"))
        if not touch.content.body and touch.channel != "coupon":
            errors.append((f"{prefix}.content.body", "is required"))
        if touch.channel == "webhook" and not touch.content.webhook_url:
            errors.append((f"{prefix}.content.webhook_url", "is required for the webhook channel"))
        errors.extend(_validate_schedule(spec, touch.schedule, f"{prefix}.schedule"))
        if (touch.schedule.kind == "trigger") != bool(touch.trigger):
            errors.append((f"{prefix}.trigger",
                           "a touch has a trigger exactly when its schedule kind is 'trigger'"))
    return errors


def _validate_schedule(spec: PlanSpec, schedule: Schedule, prefix: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if schedule.kind not in SCHEDULE_KINDS:
        return [(f"{prefix}.kind", f"must be one of {', '.join(SCHEDULE_KINDS)}")]
    if not valid_time_zone(schedule.time_zone):
        errors.append((f"{prefix}.time_zone", f"unknown time zone {schedule.time_zone!r}"))
    if schedule.kind == "at":
        if schedule.at_ms <= 0:
            errors.append((f"{prefix}.at_time", "is required for an 'at' schedule"))
        elif not spec.start_ms <= schedule.at_ms <= spec.end_ms:
            errors.append((f"{prefix}.at_time", "must fall between start_time and end_time"))
    elif schedule.kind == "at_local":
        try:
            parse_local_time(schedule.local_time)
        except ValueError:
            errors.append((f"{prefix}.local_time", "must be YYYY-MM-DDTHH:MM"))
    elif schedule.kind == "cron":
        if not schedule.cron or not croniter.is_valid(schedule.cron):
            errors.append((f"{prefix}.cron", f"invalid cron expression {schedule.cron!r}"))
    return errors


def check_spec(spec: PlanSpec) -> None:
    errors = validate_spec(spec)
    if errors:
        raise InvalidArgument(violations=errors)
