"""Plan, touch and ledger columns of triggers, experiments, control groups and follow-ups."""

import sqlalchemy as sa
from alembic import op

revision = "0101"
down_revision = "0100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_plans") as batch:
        batch.add_column(sa.Column("control_percent", sa.Float(), server_default="0",
                                   nullable=False))
        batch.add_column(sa.Column("follow_ups", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("attribution_window_s", sa.Integer(), server_default="0",
                                   nullable=False))
    with op.batch_alter_table("delivery_touches") as batch:
        batch.add_column(sa.Column("trigger", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("experiment", sa.JSON(), nullable=True))
    with op.batch_alter_table("delivery_sends") as batch:
        batch.add_column(sa.Column("variant_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("sent_ms", sa.BigInteger(), nullable=True))
    op.create_index("ix_delivery_sends_plan_sent", "delivery_sends", ["plan_id", "sent_ms"])


def downgrade() -> None:
    op.drop_index("ix_delivery_sends_plan_sent", table_name="delivery_sends")
    with op.batch_alter_table("delivery_sends") as batch:
        batch.drop_column("sent_ms")
        batch.drop_column("variant_id")
    with op.batch_alter_table("delivery_touches") as batch:
        batch.drop_column("experiment")
        batch.drop_column("trigger")
    with op.batch_alter_table("delivery_plans") as batch:
        batch.drop_column("attribution_window_s")
        batch.drop_column("follow_ups")
        batch.drop_column("control_percent")
