"""Effect monitoring: funnel totals and hourly series per plan, touch, variant and channel.

Every figure is computed by the database (GROUP BY over the send ledger, the assignments and
the outcomes); Python only arranges the rows. ``publish`` exposes the totals as Prometheus
gauges ``delivery_effect{plan,touch,variant,channel,measure}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import String, and_, func, literal, select, union_all
from sqlalchemy.engine import Engine

from services.delivery.experiments import ARM_CONTROL, Experiments
from services.delivery.tables import sends
from services.delivery.tables_effects import assignments, outcomes

HOUR_MS = 3_600_000
OUTCOME_MEASURES = {
    "delivered": "delivered", "opened": "opened", "clicked": "clicked",
    "converted": "converted", "unsubscribed": "unsubscribes",
    "notification_disabled": "notification_disabled", "uninstalled": "uninstalls",
}

EFFECT = Gauge(
    "delivery_effect",
    "Funnel figures of running plans by plan, touch, variant, channel and measure.",
    ["plan", "touch", "variant", "channel", "measure"],
)


@dataclasses.dataclass
class EffectRow:
    """The funnel of one (touch, variant, channel) of a plan; ``touch_id`` "" is the plan."""

    touch_id: str
    variant: str
    channel: str
    audience: int = 0
    suppressed: dict[str, int] = dataclasses.field(default_factory=dict)
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    revenue: float = 0.0
    unsubscribes: int = 0
    notification_disabled: int = 0
    uninstalls: int = 0
    uplift: float | None = None
    uplift_low: float | None = None
    uplift_high: float | None = None

    @property
    def click_through_rate(self) -> float:
        return self.clicked / self.sent if self.sent else 0.0

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["click_through_rate"] = self.click_through_rate
        out["conversion_rate"] = self.conversion_rate
        return out


class EffectStats:
    """Reads effect figures of plans from the delivery database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.experiments = Experiments(engine)

    def _variant_join(self):
        a = assignments
        return sends.outerjoin(a, and_(a.c.plan_id == sends.c.plan_id,
                                       a.c.touch_id == sends.c.touch_id,
                                       a.c.user_id == sends.c.user_id))

    def totals(self, plan_id: int) -> list[EffectRow]:
        """One row per (touch, variant, channel) plus the plan's total row first."""
        variant = func.coalesce(assignments.c.variant, "")
        ledger_q = (
            select(sends.c.touch_id, variant, sends.c.channel, sends.c.status, sends.c.reason,
                   func.count())
            .select_from(self._variant_join())
            .where(sends.c.plan_id == plan_id)
            .group_by(sends.c.touch_id, variant, sends.c.channel, sends.c.status,
                      sends.c.reason)
        )
        outcome_q = (
            select(outcomes.c.touch_id, outcomes.c.variant, outcomes.c.channel, outcomes.c.kind,
                   func.count(), func.coalesce(func.sum(outcomes.c.value), 0.0))
            .where(outcomes.c.plan_id == plan_id, outcomes.c.arm != "control")
            .group_by(outcomes.c.touch_id, outcomes.c.variant, outcomes.c.channel,
                      outcomes.c.kind)
        )
        with self.engine.connect() as conn:
            ledger = conn.execute(ledger_q).all()
            outs = conn.execute(outcome_q).all()
        rows: dict[tuple[str, str, str], EffectRow] = {}
        total = EffectRow("", "", "")

        def row(touch_id, variant_id, channel) -> EffectRow:
            key = (touch_id, variant_id or "", channel)
            if key not in rows:
                rows[key] = EffectRow(*key)
            return rows[key]

        for touch_id, variant_id, channel, status, reason, n in ledger:
            for r in (row(touch_id, variant_id, channel), total):
                r.audience += n
                if status == "sent":
                    r.sent += n
                elif status in ("suppressed", "dead"):
                    why = (reason or status).split(":")[0] if status == "suppressed" else "dead"
                    r.suppressed[why] = r.suppressed.get(why, 0) + n
        for touch_id, variant_id, channel, kind, n, value in outs:
            for r in (row(touch_id, variant_id, channel), total):
                measure = OUTCOME_MEASURES[kind]
                setattr(r, measure, getattr(r, measure) + n)
                if kind == "converted":
                    r.revenue += float(value or 0.0)
        lifts = self.experiments.uplift(plan_id)
        for r in [total, *rows.values()]:
            lift = lifts.get(r.variant) if r.touch_id else lifts.get("")
            if lift is not None and lift.control:
                r.uplift, r.uplift_low, r.uplift_high = lift.uplift, lift.low, lift.high
        return [total, *sorted(rows.values(), key=lambda r: (r.touch_id, r.variant, r.channel))]

    def control_groups(self, plan_id: int) -> list[dict[str, Any]]:
        """Held-back users and their conversions, for the plan (``touch_id`` "") and per touch.

        Two GROUP BY statements, each stacking the per-touch counts on the plan's total; a
        user held back from two touches counts once in the plan's figure, as in the uplift.
        """
        a, o = assignments, outcomes

        def per_touch_and_plan(table, user_id, where):
            by_touch = (select(table.c.touch_id, func.count(func.distinct(user_id)))
                        .where(*where).group_by(table.c.touch_id))
            plan = select(literal("", String), func.count(func.distinct(user_id))).where(*where)
            return union_all(plan, by_touch)

        held_q = per_touch_and_plan(a, a.c.user_id, [a.c.plan_id == plan_id,
                                                      a.c.arm == ARM_CONTROL])
        converted_q = per_touch_and_plan(o, o.c.user_id, [o.c.plan_id == plan_id,
                                                          o.c.arm == ARM_CONTROL,
                                                          o.c.kind == "converted"])
        with self.engine.connect() as conn:
            held = {t: int(n) for t, n in conn.execute(held_q)}
            converted = {t: int(n) for t, n in conn.execute(converted_q)}
        if not held.get(""):
            return []
        return [{"touch_id": t, "held_back": n, "converted": converted.get(t, 0),
                 "conversion_rate": converted.get(t, 0) / n if n else 0.0}
                for t, n in sorted(held.items()) if n]

    def series(self, plan_id: int, bucket_ms: int = HOUR_MS) -> list[dict[str, Any]]:
        """Sends and outcomes per time bucket (hourly by default), per touch and variant."""
        variant = func.coalesce(assignments.c.variant, "")
        sent_bucket = (sends.c.sent_ms // bucket_ms).label("bucket")
        sent_q = (
            select(sent_bucket, sends.c.touch_id, variant, func.count())
            .select_from(self._variant_join())
            .where(sends.c.plan_id == plan_id, sends.c.status == "sent")
            .group_by(sent_bucket, sends.c.touch_id, variant)
        )
        out_bucket = (outcomes.c.ts_ms // bucket_ms).label("bucket")
        out_q = (
            select(out_bucket, outcomes.c.touch_id, outcomes.c.variant, outcomes.c.kind,
                   func.count())
            .where(outcomes.c.plan_id == plan_id, outcomes.c.arm != "control")
            .group_by(out_bucket, outcomes.c.touch_id, outcomes.c.variant, outcomes.c.kind)
        )
        points: dict[tuple[int, str, str], dict[str, Any]] = {}

        def point(bucket, touch_id, variant_id):
            key = (int(bucket), touch_id, variant_id or "")
            if key not in points:
                points[key] = {"start_ms": int(bucket) * bucket_ms, "touch_id": touch_id,
                               "variant": variant_id or "", "sent": 0,
                               **{m: 0 for m in OUTCOME_MEASURES.values()}}
            return points[key]

        with self.engine.connect() as conn:
            for bucket, touch_id, variant_id, n in conn.execute(sent_q):
                point(bucket, touch_id, variant_id)["sent"] += n
            for bucket, touch_id, variant_id, kind, n in conn.execute(out_q):
                point(bucket, touch_id, variant_id)[OUTCOME_MEASURES[kind]] += n
        return [points[k] for k in sorted(points)]

    def publish(self, plan_ids: list[int]) -> None:
        """Sets the Prometheus gauges of the given plans from their totals."""
        for plan_id in plan_ids:
            for r in self.totals(plan_id):
                labels = (str(plan_id), r.touch_id or "*", r.variant or "*", r.channel or "*")
                figures = {"audience": r.audience, "sent": r.sent, "delivered": r.delivered,
                           "opened": r.opened, "clicked": r.clicked, "converted": r.converted,
                           "revenue": r.revenue, "unsubscribes": r.unsubscribes,
                           "notification_disabled": r.notification_disabled,
                           "uninstalls": r.uninstalls,
                           "click_through_rate": r.click_through_rate,
                           "conversion_rate": r.conversion_rate,
                           **{f"suppressed_{k}": v for k, v in r.suppressed.items()}}
                if r.uplift is not None:
                    figures["uplift"] = r.uplift
                for measure, value in figures.items():
                    EFFECT.labels(*labels, measure).set(value)
