"""Delivery tables for experiments, triggers, outcomes and follow-up paths, on the service's MetaData."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from services.delivery.tables import BigId, metadata

# One experiment per touch: A/B/n splits, a copy race or a bandit, with an optional control
# group. The race decision is stored once so every replica serves the same winner.
experiments = Table(
    "delivery_experiments",
    metadata,
    Column("plan_id", BigInteger, primary_key=True),
    Column("touch_id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False, comment="ab|race|bandit"),
    Column("spec", JSON, nullable=False),
    Column("state", String(16), nullable=False, comment="open|decided"),
    Column("winner", String(64), nullable=True),
    Column("decision_rule", String(32), nullable=True, comment="significant|deadline_fallback"),
    Column("prob_best", Float, nullable=True),
    Column("started_ms", BigInteger, nullable=True),
    Column("decided_ms", BigInteger, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
)

# Which variant (or the control group) each user of a touch got. Hash assignments could be
# recomputed, but race winners and bandit draws depend on when the user came, so the first
# assignment is kept and reused: a user always sees the same variant.
assignments = Table(
    "delivery_assignments",
    metadata,
    Column("plan_id", BigInteger, primary_key=True),
    Column("touch_id", String(64), primary_key=True),
    Column("user_id", BigInteger, primary_key=True),
    Column("variant", String(64), nullable=False, comment="empty for the control group"),
    Column("arm", String(16), nullable=False, comment="split|explore|exploit|bandit|control"),
    Column("assigned_ms", BigInteger, nullable=False),
    Index("ix_delivery_assignments_variant", "plan_id", "touch_id", "variant"),
    Index("ix_delivery_assignments_arm", "plan_id", "arm", "assigned_ms"),
)

# Outcomes of messages, one row per (message, kind): a repeated report finds the unique key
# taken and counts once. Control-group users have no message; their conversions use a
# holdout key ("ctl-...") so uplift is computed from the same table.
outcomes = Table(
    "delivery_outcomes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_key", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("plan_id", BigInteger, nullable=False),
    Column("touch_id", String(64), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("variant", String(64), nullable=False, server_default=""),
    Column("arm", String(16), nullable=False, server_default="", comment="control for holdouts"),
    Column("send_id", BigInteger, nullable=True),
    Column("ts_ms", BigInteger, nullable=False, comment="when it happened"),
    Column("value", Float, nullable=True, comment="revenue of a conversion"),
    Column("event_id", String(128), nullable=True, comment="the goal event of a conversion"),
    Column("source", String(64), nullable=False, server_default=""),
    Column("received_ms", BigInteger, nullable=False),
    Column("consent_applied_ms", BigInteger, nullable=True,
           comment="when an opt-out reached the profile service"),
    UniqueConstraint("message_key", "kind", name="uq_delivery_outcome"),
    Index("ix_delivery_outcomes_plan_kind_ts", "plan_id", "kind", "ts_ms"),
    Index("ix_delivery_outcomes_consent", "consent_applied_ms"),
)

# Event-trigger definitions of touches (the touch fires on events instead of a schedule).
triggers = Table(
    "delivery_triggers",
    metadata,
    Column("plan_id", BigInteger, primary_key=True),
    Column("touch_id", String(64), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Follow-up rules of touches: what happens after a wait to converted and unconverted users.
followup_rules = Table(
    "delivery_followup_rules",
    metadata,
    Column("plan_id", BigInteger, primary_key=True),
    Column("touch_id", String(64), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Where each user stands on a follow-up path.
followups = Table(
    "delivery_followups",
    metadata,
    Column("plan_id", BigInteger, primary_key=True),
    Column("touch_id", String(64), primary_key=True),
    Column("user_id", BigInteger, primary_key=True),
    Column("status", String(16), nullable=False,
           comment="waiting|converted|dropped"),
    Column("attempts", Integer, nullable=False, server_default="0",
           comment="retries sent so far"),
    Column("enrolled_ms", BigInteger, nullable=False),
    Column("next_due_ms", BigInteger, nullable=True),
    Column("outcome_ms", BigInteger, nullable=True, comment="when it converted or was dropped"),
    Column("next_step", String(128), nullable=True, comment="what a converted user went to"),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_delivery_followups_due", "status", "next_due_ms"),
)

EFFECT_TABLES = (experiments, assignments, outcomes, triggers, followup_rules, followups)
