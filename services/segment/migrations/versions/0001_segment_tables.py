"""Segment definitions, their references and snapshots."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "segment_segments",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("rule_text", sa.Text(), nullable=False,
                  comment="canonical text form of the rule"),
        sa.Column("realtime", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("refresh_every_minutes", sa.Integer(), nullable=True,
                  comment="null: no periodic refresh"),
        sa.Column("refresh_daily_minute", sa.Integer(), nullable=True,
                  comment="minute of the UTC day"),
        sa.Column("next_refresh_ms", sa.BigInteger(), nullable=True),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_by", sa.String(length=256), server_default="", nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_segment_segments_next_refresh", "segment_segments", ["next_refresh_ms"])
    op.create_table(
        "segment_references",
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.Column("referenced_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", "referenced_id"),
    )
    op.create_index("ix_segment_references_referenced", "segment_references", ["referenced_id"])
    op.create_table(
        "segment_snapshots",
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("as_of_ms", sa.BigInteger(), nullable=False,
                  comment="the 'now' the rule was evaluated at"),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("rule_text", sa.Text(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False, comment="manual|scheduled"),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("members", sa.LargeBinary(), nullable=False,
                  comment="portable roaring bitmap of user ids"),
        sa.PrimaryKeyConstraint("segment_id", "version"),
    )


def downgrade() -> None:
    op.drop_table("segment_snapshots")
    op.drop_index("ix_segment_references_referenced", table_name="segment_references")
    op.drop_table("segment_references")
    op.drop_index("ix_segment_segments_next_refresh", table_name="segment_segments")
    op.drop_table("segment_segments")
