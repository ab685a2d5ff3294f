"""Tables of experiments, triggers, outcomes and follow-up paths (see tables_effects.py)."""

import sqlalchemy as sa
from alembic import op

revision = "0100"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "delivery_experiments",
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("touch_id", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False, comment="ab|race|bandit"),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, comment="open|decided"),
        sa.Column("winner", sa.String(64), nullable=True),
        sa.Column("decision_rule", sa.String(32), nullable=True,
                  comment="significant|deadline_fallback"),
        sa.Column("prob_best", sa.Float(), nullable=True),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("decided_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("plan_id", "touch_id"),
    )
    op.create_table(
        "delivery_assignments",
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("touch_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False,
                  comment="empty for the control group"),
        sa.Column("arm", sa.String(16), nullable=False,
                  comment="split|explore|exploit|bandit|control"),
        sa.Column("assigned_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("plan_id", "touch_id", "user_id"),
    )
    op.create_index("ix_delivery_assignments_variant", "delivery_assignments",
                    ["plan_id", "touch_id", "variant"])
    op.create_index("ix_delivery_assignments_arm", "delivery_assignments",
                    ["plan_id", "arm", "assigned_ms"])
    op.create_table(
        "delivery_outcomes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("touch_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("variant", sa.String(64), server_default="", nullable=False),
        sa.Column("arm", sa.String(16), server_default="", nullable=False,
                  comment="control for holdouts"),
        sa.Column("send_id", sa.BigInteger(), nullable=True),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False, comment="when it happened"),
        sa.Column("value", sa.Float(), nullable=True, comment="revenue of a conversion"),
        sa.Column("event_id", sa.String(128), nullable=True,
                  comment="the goal event of a conversion"),
        sa.Column("source", sa.String(64), server_default="", nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("consent_applied_ms", sa.BigInteger(), nullable=True,
                  comment="when an opt-out reached the profile service"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_key", "kind", name="uq_delivery_outcome"),
    )
    op.create_index("ix_delivery_outcomes_plan_kind_ts", "delivery_outcomes",
                    ["plan_id", "kind", "ts_ms"])
    op.create_index("ix_delivery_outcomes_consent", "delivery_outcomes", ["consent_applied_ms"])
    for name in ("delivery_triggers", "delivery_followup_rules"):
        op.create_table(
            name,
            sa.Column("plan_id", sa.BigInteger(), nullable=False),
            sa.Column("touch_id", sa.String(64), nullable=False),
            sa.Column("spec", sa.JSON(), nullable=False),
            sa.Column("updated_ms", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("plan_id", "touch_id"),
        )
    op.create_table(
        "delivery_followups",
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("touch_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, comment="waiting|converted|dropped"),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False,
                  comment="retries sent so far"),
        sa.Column("enrolled_ms", sa.BigInteger(), nullable=False),
        sa.Column("next_due_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome_ms", sa.BigInteger(), nullable=True,
                  comment="when it converted or was dropped"),
        sa.Column("next_step", sa.String(128), nullable=True,
                  comment="what a converted user went to"),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("plan_id", "touch_id", "user_id"),
    )
    op.create_index("ix_delivery_followups_due", "delivery_followups",
                    ["status", "next_due_ms"])


def downgrade() -> None:
    op.drop_index("ix_delivery_followups_due", table_name="delivery_followups")
    op.drop_table("delivery_followups")
    op.drop_table("delivery_followup_rules")
    op.drop_table("delivery_triggers")
    op.drop_index("ix_delivery_outcomes_consent", table_name="delivery_outcomes")
    op.drop_index("ix_delivery_outcomes_plan_kind_ts", table_name="delivery_outcomes")
    op.drop_table("delivery_outcomes")
    op.drop_index("ix_delivery_assignments_arm", table_name="delivery_assignments")
    op.drop_index("ix_delivery_assignments_variant", table_name="delivery_assignments")
    op.drop_table("delivery_assignments")
    op.drop_table("delivery_experiments")
