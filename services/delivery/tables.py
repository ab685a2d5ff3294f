"""The delivery service's own tables (plans, touches, occurrences, send ledger, audit log, sink)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.common.db import BigId

metadata = MetaData()

plans = Table(
    "delivery_plans",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("display_name", String(256), nullable=False),
    Column("goal_type", String(32), nullable=False),
    Column("scene", String(256), nullable=False, server_default=""),
    Column("goal_event", String(128), nullable=False, server_default=""),
    Column("goal_target", Float, nullable=True, comment="target count of goal events"),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("category", String(16), nullable=False, comment="transactional|marketing"),
    Column("owner", String(256), nullable=False),
    Column("creator", String(256), nullable=False, comment="the maker; never the checker"),
    Column("state", String(24), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("approved_hash", String(64), nullable=True, comment="content hash the approver saw"),
    Column("approved_by", String(256), nullable=True),
    Column("reject_reason", Text, nullable=True),
    Column("version", Integer, nullable=False, comment="optimistic concurrency counter"),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("deleted_ms", BigInteger, nullable=True),
    Column("control_percent", Float, nullable=False, server_default="0",
           comment="share of each touch's audience withheld as control"),
    Column("follow_ups", JSON, nullable=True, comment="follow-up paths"),
    Column("attribution_window_s", Integer, nullable=False, server_default="0",
           comment="0 for the default window"),
    Index("ix_delivery_plans_state", "state"),
)

touches = Table(
    "delivery_touches",
    metadata,
    Column("plan_id", BigInteger, primary_key=True),
    Column("touch_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("content", JSON, nullable=False),
    Column("audience", JSON, nullable=False),
    Column("schedule", JSON, nullable=False),
    Column("send_rate_per_s", Integer, nullable=False, server_default="0"),
    Column("trigger", JSON, nullable=True, comment="event trigger of a triggered touch"),
    Column("experiment", JSON, nullable=True, comment="content experiment"),
)

# One row per run of a touch: "once" for now/at schedules, the cron instant for recurring
# ones. The audience snapshot is frozen here so a restarted worker resumes the same audience;
# pending occurrences of higher-priority plans double as capacity reservations.
occurrences = Table(
    "delivery_occurrences",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("plan_id", BigInteger, nullable=False),
    Column("touch_id", String(64), nullable=False),
    Column("occurrence_key", String(64), nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    Column("local_wallclock", String(32), nullable=True, comment="per-user local due time"),
    Column("priority", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("category", String(16), nullable=False),
    Column("state", String(16), nullable=False, comment="pending|running|done|cancelled"),
    Column("audience", LargeBinary, nullable=True, comment="serialized roaring bitmap"),
    Column("audience_size", Integer, nullable=False, server_default="0"),
    Column("snapshot_final", Integer, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    UniqueConstraint("plan_id", "touch_id", "occurrence_key", name="uq_delivery_occurrence"),
    Index("ix_delivery_occurrences_state_due", "state", "due_ms"),
)

# The send ledger: one row per (plan, touch, user, occurrence). A row is inserted when a
# worker claims the recipient and updated when the send is decided; the unique key makes a
# second claim impossible.
sends = Table(
    "delivery_sends",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("occurrence_id", BigInteger, nullable=False),
    Column("plan_id", BigInteger, nullable=False),
    Column("touch_id", String(64), nullable=False),
    Column("occurrence_key", String(64), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("category", String(16), nullable=False),
    Column(
        "status",
        String(16),
        nullable=False,
        comment="claimed|deferred|retry|sent|suppressed|dead",
    ),
    Column("reason", String(256), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("not_before_ms", BigInteger, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until_ms", BigInteger, nullable=True),
    Column("counted_ms", BigInteger, nullable=True, comment="when a cap slot was taken"),
    Column("time_zone", String(64), nullable=True, comment="user's zone when counted"),
    Column("idempotency_key", String(128), nullable=False),
    Column("gateway_message_id", String(256), nullable=True),
    Column("variant_id", String(64), nullable=True, comment="the experiment variant sent"),
    Column("sent_ms", BigInteger, nullable=True, comment="when the gateway accepted it"),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    UniqueConstraint(
        "plan_id", "touch_id", "user_id", "occurrence_key", name="uq_delivery_send"
    ),
    Index("ix_delivery_sends_plan_sent", "plan_id", "sent_ms"),
    Index("ix_delivery_sends_occ_status", "occurrence_id", "status"),
    Index("ix_delivery_sends_status_nb", "status", "not_before_ms"),
    Index("ix_delivery_sends_counted", "counted_ms"),
)

# Append-only audit log: every entry's hash covers the previous entry's hash, so editing or
# deleting any entry breaks the chain from there on.
audit_log = Table(
    "delivery_audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("plan_id", BigInteger, nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(24), nullable=True),
    Column("to_state", String(24), nullable=True),
    Column("actor", String(256), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("content_hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index("ix_delivery_audit_plan", "plan_id", "seq"),
)

# The recording sink gateway: what a dry run or a test "sent". Keyed by the idempotency key,
# like a vendor that honours it; `attempts` counts every delivery attempt of that key.
sink_messages = Table(
    "delivery_sink_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(256), nullable=False),
    Column("title", Text, nullable=False, server_default=""),
    Column("body", Text, nullable=False, server_default=""),
    Column("payload", JSON, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("first_ms", BigInteger, nullable=False),
    Column("last_ms", BigInteger, nullable=False),
)
