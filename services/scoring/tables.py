"""Tables the scoring service owns: model versions (with their ONNX bytes), aliases and operations."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
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

from services.common.profile_tables import BigId

metadata = MetaData()

# One row per registered model version. A row exists only once the ONNX bytes passed every
# validation step, so every stored version is usable; the bytes live in the row so that a
# replica needs nothing but the database to serve it.
model_versions = Table(
    "scoring_model_versions",
    metadata,
    Column("model_name", String(128), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("task", String(32), nullable=False, comment="conversion|churn|lookalike|other"),
    Column("description", Text, nullable=False, server_default=""),
    Column("onnx_bytes", LargeBinary, nullable=False),
    Column("onnx_sha256", String(64), nullable=False),
    Column("feature_schema", JSON, nullable=False, comment="list of feature specs"),
    Column("output", JSON, nullable=False, comment="output name and column to read"),
    Column("metrics", JSON, nullable=True, comment="training / evaluation metrics"),
    Column("lineage", JSON, nullable=True, comment="data window, features, algorithm, params"),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False, server_default=""),
)

# The current target of each alias ("production", "staging", ...) of a model.
model_aliases = Table(
    "scoring_model_aliases",
    metadata,
    Column("model_name", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Every change of an alias, in order. Rollback retires the latest assignment and returns the
# alias to the one before it, so repeated rollbacks walk back through history.
alias_history = Table(
    "scoring_alias_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model_name", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("set_ms", BigInteger, nullable=False),
    Column("set_by", String(128), nullable=False, server_default=""),
    Column("rolled_back", Boolean, nullable=False, server_default="0"),
    Index("ix_scoring_alias_history_alias", "model_name", "alias", "id"),
    sqlite_autoincrement=True,
)

# Long-running operations (training, evaluation). They are persisted so that a restart still
# shows them; an operation found running at start-up is marked failed (its thread is gone).
operations = Table(
    "scoring_operations",
    metadata,
    Column("name", String(64), primary_key=True, comment="operations/{id}"),
    Column("kind", String(32), nullable=False, comment="train"),
    Column("state", String(16), nullable=False, comment="pending|running|succeeded|failed|cancelled"),
    Column("progress_percent", Integer, nullable=False, server_default="0"),
    Column("stage", String(64), nullable=False, server_default=""),
    Column("request", JSON, nullable=False, comment="the request that started it"),
    Column("error_code", Integer, nullable=True, comment="google.rpc.Code of a failure"),
    Column("error_message", Text, nullable=True),
    Column("error_violations", JSON, nullable=True, comment="[[field, description], ...]"),
    Column("result", JSON, nullable=True, comment="model_name and version when succeeded"),
    Column("cancel_requested", Boolean, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False, server_default=""),
    Index("ix_scoring_operations_created", "created_ms"),
)
