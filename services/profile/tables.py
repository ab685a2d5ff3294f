"""Tables the profile service keeps for itself (identity links, erasure audit, announcement bookkeeping)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

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

# One row per committed write whose announcement is not known to be published yet: a batch of
# events (its row ids) or the profile changes of one transaction (users and kinds). Inserted in
# the transaction it announces, deleted once published; the maintenance pass announces the rows
# a stopped process or a Redis outage left behind (see services/profile/announce.py).
announcements = Table(
    "profile_announcements",
    metadata,
    Column("marker", String(32), primary_key=True),
    Column("stream", String(16), nullable=False, comment="events or changes"),
    Column("first_row_id", BigInteger, nullable=True, comment="events: least row id of the batch"),
    Column("last_row_id", BigInteger, nullable=True, comment="events: greatest row id"),
    Column("changes", Text, nullable=True, comment="changes: JSON [[user_id, kinds], ...]"),
    Column("created_ms", BigInteger, nullable=False),
    Column("due_ms", BigInteger, nullable=False, comment="left behind if still here then"),
    Index("ix_profile_announcements_due", "due_ms"),
)
