"""Tables the profile service keeps for itself (identity links, erasure audit, ingestion bookkeeping)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Float, Index, Integer, MetaData, String, Table

from services.common.profile_tables import BigId

metadata = MetaData()

# An anonymous identifier (device id, cookie) merged into a known user. Events sent later for
# the alias are attributed to the known user, so one person keeps one profile.
identity_links = Table(
    "profile_identity_links",
    metadata,
    Column("alias_external_id", String(256), primary_key=True),
    Column("user_id", BigInteger, nullable=False, comment="internal id of the known user"),
    Column("merged_ms", BigInteger, nullable=False),
    Index("ix_profile_identity_links_user", "user_id"),
)

# One row per right-to-be-forgotten erasure. It proves the erasure happened without keeping
# anything that identifies the person: only the retired internal id, counts and the requester.
erasure_audit = Table(
    "profile_erasure_audit",
    metadata,
    Column("erasure_id", String(64), primary_key=True),
    Column("user_id", BigInteger, nullable=False, comment="retired internal id, never reused"),
    Column("erased_ms", BigInteger, nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("reason", String(256), nullable=False, server_default=""),
    Column("rows_deleted", JSON, nullable=False, comment="table name -> rows removed"),
)

# Quintile breakpoints of the last full RFM recompute. Incremental refreshes score touched
# users against them, so a user's scores move without re-ranking the whole population.
rfm_breakpoints = Table(
    "profile_rfm_breakpoints",
    metadata,
    Column("dimension", String(1), primary_key=True, comment="r, f or m"),
    Column("score", Integer, primary_key=True, comment="2..5: the least value scoring this"),
    Column("min_value", Float, nullable=True, comment="null: no user reaches this score"),
    Column("population", Integer, nullable=False),
    Column("as_of_ms", BigInteger, nullable=False),
)

# Events stored but not yet published to the ``profile:events`` stream because Redis was
# unreachable after the commit; the maintenance loop publishes them later.
publish_backlog = Table(
    "profile_publish_backlog",
    metadata,
    Column("event_row_id", BigId, primary_key=True, autoincrement=False),
    Column("queued_ms", BigInteger, nullable=False),
)
