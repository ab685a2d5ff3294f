"""The profile store's read-path contract: tables that segment and scoring read and never write.

The profile service owns and writes these tables. The segment service compiles rules to SQL
over them and the scoring service builds features from them, through a read-only engine
(``PROFILE_READ_DATABASE_URL``; by default the profile service's own database). Changing a
column here is a contract change: bump ``READ_PATH_SCHEMA_VERSION`` and document it in
``docs/read-path.md``.

Conventions:
- every user has a dense integer ``id`` (the internal id used in audience bitmaps) and a
  stable string ``external_id``;
- every instant is an integer of milliseconds since the Unix epoch (UTC), which every engine
  compares and buckets cheaply (``ts_ms / 86400000`` is a UTC day number);
- typed attribute values live in one column per type, so comparisons use indexes.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from services.common.db import BigId

# Version 2 (additive): computed_traits gained ``last_purchase_ms`` and ``as_of_ms``; events
# gained an index on ``ts_ms`` (retention pruning) and profile_tags one on ``expires_ms``.
READ_PATH_SCHEMA_VERSION = 2


metadata = MetaData()

profiles = Table(
    "profiles",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True, comment="dense internal user id"),
    Column("external_id", String(256), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("quiet_start_minute", Integer, nullable=True, comment="minute of the local day"),
    Column("quiet_end_minute", Integer, nullable=True, comment="minute of the local day"),
    Column("notifications_disabled", Boolean, nullable=False, server_default="0"),
    Column("app_uninstalled", Boolean, nullable=False, server_default="0"),
    # Internal ids are never reused after a deletion: audiences may still hold a retired id.
    sqlite_autoincrement=True,
)

attribute_catalog = Table(
    "attribute_catalog",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value_type", String(16), nullable=False, comment="string|number|bool|timestamp|string_list"),
    Column("description", Text, nullable=False, server_default=""),
    Column("pii", Boolean, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
)

profile_attributes = Table(
    "profile_attributes",
    metadata,
    Column("user_id", BigInteger, primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("str_value", String(1024), nullable=True),
    Column("num_value", Float, nullable=True),
    Column("bool_value", Boolean, nullable=True),
    Column("ts_value", BigInteger, nullable=True, comment="timestamp attributes, epoch ms"),
    Column("list_value", JSON, nullable=True, comment="string_list attributes"),
    Index("ix_profile_attributes_name_num", "name", "num_value"),
    Index("ix_profile_attributes_name_str", "name", "str_value"),
    # Clustered on (user_id, name) on SQLite: one B-tree descent per attribute read.
    sqlite_with_rowid=False,
)

profile_tags = Table(
    "profile_tags",
    metadata,
    Column("user_id", BigInteger, primary_key=True),
    Column("tag", String(128), primary_key=True),
    Column("expires_ms", BigInteger, nullable=True, comment="null: never expires"),
    Index("ix_profile_tags_tag", "tag", "user_id"),
    Index("ix_profile_tags_expires", "expires_ms"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False, unique=True, comment="idempotency key"),
    Column("user_id", BigInteger, nullable=False),
    Column("event_type", String(128), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("value", Float, nullable=True, comment="the event's monetary value, if any"),
    Column("properties", JSON, nullable=True),
    Index("ix_events_user_type_ts", "user_id", "event_type", "ts_ms"),
    Index("ix_events_type_ts", "event_type", "ts_ms"),
    Index("ix_events_ts", "ts_ms"),
)

computed_traits = Table(
    "computed_traits",
    metadata,
    Column("user_id", BigInteger, primary_key=True),
    Column("recency_days", Float, nullable=True, comment="days from last purchase to as_of_ms"),
    Column("frequency", Integer, nullable=False, server_default="0"),
    Column("monetary", Float, nullable=False, server_default="0"),
    Column("r_score", Integer, nullable=True),
    Column("f_score", Integer, nullable=True),
    Column("m_score", Integer, nullable=True),
    Column("rfm_group", String(32), nullable=True),
    Column("lifecycle_stage", String(16), nullable=True),
    Column("first_seen_ms", BigInteger, nullable=True),
    Column("last_seen_ms", BigInteger, nullable=True),
    Column("last_purchase_ms", BigInteger, nullable=True, comment="null: never purchased"),
    Column("as_of_ms", BigInteger, nullable=True, comment="the instant the traits describe"),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_computed_traits_rfm_group", "rfm_group"),
    Index("ix_computed_traits_lifecycle", "lifecycle_stage"),
)

# Rolling per-event-type counts (7, 30 and 90 days), as of ``updated_ms``.
event_type_counts = Table(
    "event_type_counts",
    metadata,
    Column("user_id", BigInteger, primary_key=True),
    Column("event_type", String(128), primary_key=True),
    Column("count_7d", Integer, nullable=False, server_default="0"),
    Column("count_30d", Integer, nullable=False, server_default="0"),
    Column("count_90d", Integer, nullable=False, server_default="0"),
    Column("count_total", Integer, nullable=False, server_default="0"),
    Column("updated_ms", BigInteger, nullable=False),
)

# Model scores written back by the scoring service, one current score per user and model.
scores = Table(
    "scores",
    metadata,
    Column("user_id", BigInteger, primary_key=True),
    Column("model_name", String(128), primary_key=True),
    Column("score", Float, nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("scored_ms", BigInteger, nullable=False),
    Index("ix_scores_model_score", "model_name", "score"),
)

consents = Table(
    "consents",
    metadata,
    Column("user_id", BigInteger, primary_key=True),
    Column("channel", String(32), primary_key=True, comment="push|sms|email|wechat|in_app|webhook"),
    Column("subscribed", Boolean, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("source", String(128), nullable=False, server_default=""),
    Index("ix_consents_channel", "channel", "subscribed"),
)

READ_PATH_TABLES = (
    profiles,
    attribute_catalog,
    profile_attributes,
    profile_tags,
    events,
    computed_traits,
    event_type_counts,
    scores,
    consents,
)
