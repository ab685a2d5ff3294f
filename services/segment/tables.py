"""The segment service's own tables: segment definitions, their references and snapshots."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from services.common.db import BigId

metadata = MetaData()

segments = Table(
    "segment_segments",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("display_name", String(256), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("rule_text", Text, nullable=False, comment="canonical text form of the rule"),
    Column("realtime", Boolean, nullable=False, server_default="0"),
    Column("refresh_every_minutes", Integer, nullable=True, comment="null: no periodic refresh"),
    Column("refresh_daily_minute", Integer, nullable=True, comment="minute of the UTC day"),
    Column("next_refresh_ms", BigInteger, nullable=True),
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("created_by", String(256), nullable=False, server_default=""),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_segment_segments_next_refresh", "next_refresh_ms"),
)

# Which segments a segment's rule names, so a referenced segment cannot be deleted.
segment_references = Table(
    "segment_references",
    metadata,
    Column("segment_id", BigInteger, primary_key=True),
    Column("referenced_id", BigInteger, primary_key=True),
    Index("ix_segment_references_referenced", "referenced_id"),
)

snapshots = Table(
    "segment_snapshots",
    metadata,
    Column("segment_id", BigInteger, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("as_of_ms", BigInteger, nullable=False, comment="the 'now' the rule was evaluated at"),
    Column("size", BigInteger, nullable=False),
    Column("rule_text", Text, nullable=False),
    Column("trigger", String(16), nullable=False, comment="manual|scheduled"),
    Column("duration_ms", BigInteger, nullable=False),
    Column("members", LargeBinary, nullable=False, comment="portable roaring bitmap of user ids"),
)
