"""Initial delivery tables, with triggers that keep the audit log append-only."""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('delivery_audit_log',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('plan_id', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_state', sa.String(length=24), nullable=True),
    sa.Column('to_state', sa.String(length=24), nullable=True),
    sa.Column('actor', sa.String(length=256), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), server_default='', nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_index('ix_delivery_audit_plan', 'delivery_audit_log', ['plan_id', 'seq'], unique=False)
    op.create_table('delivery_occurrences',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('plan_id', sa.BigInteger(), nullable=False),
    sa.Column('touch_id', sa.String(length=64), nullable=False),
    sa.Column('occurrence_key', sa.String(length=64), nullable=False),
    sa.Column('due_ms', sa.BigInteger(), nullable=False),
    sa.Column('local_wallclock', sa.String(length=32), nullable=True, comment='per-user local due time'),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False, comment='pending|running|done|cancelled'),
    sa.Column('audience', sa.LargeBinary(), nullable=True, comment='serialized roaring bitmap'),
    sa.Column('audience_size', sa.Integer(), server_default='0', nullable=False),
    sa.Column('snapshot_final', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plan_id', 'touch_id', 'occurrence_key', name='uq_delivery_occurrence')
    )
    op.create_index('ix_delivery_occurrences_state_due', 'delivery_occurrences', ['state', 'due_ms'], unique=False)
    op.create_table('delivery_plans',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('goal_type', sa.String(length=32), nullable=False),
    sa.Column('scene', sa.String(length=256), server_default='', nullable=False),
    sa.Column('goal_event', sa.String(length=128), server_default='', nullable=False),
    sa.Column('goal_target', sa.Float(), nullable=True, comment='target count of goal events'),
    sa.Column('start_ms', sa.BigInteger(), nullable=False),
    sa.Column('end_ms', sa.BigInteger(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False, comment='transactional|marketing'),
    sa.Column('owner', sa.String(length=256), nullable=False),
    sa.Column('creator', sa.String(length=256), nullable=False, comment='the maker; never the checker'),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('approved_hash', sa.String(length=64), nullable=True, comment='content hash the approver saw'),
    sa.Column('approved_by', sa.String(length=256), nullable=True),
    sa.Column('reject_reason', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False, comment='optimistic concurrency counter'),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.Column('deleted_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_delivery_plans_state', 'delivery_plans', ['state'], unique=False)
    op.create_table('delivery_sends',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('occurrence_id', sa.BigInteger(), nullable=False),
    sa.Column('plan_id', sa.BigInteger(), nullable=False),
    sa.Column('touch_id', sa.String(length=64), nullable=False),
    sa.Column('occurrence_key', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False, comment='claimed|deferred|retry|sent|suppressed|dead'),
    sa.Column('reason', sa.String(length=256), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('not_before_ms', sa.BigInteger(), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('lease_until_ms', sa.BigInteger(), nullable=True),
    sa.Column('counted_ms', sa.BigInteger(), nullable=True, comment='when a cap slot was taken'),
    sa.Column('time_zone', sa.String(length=64), nullable=True, comment="user's zone when counted"),
    sa.Column('idempotency_key', sa.String(length=128), nullable=False),
    sa.Column('gateway_message_id', sa.String(length=256), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plan_id', 'touch_id', 'user_id', 'occurrence_key', name='uq_delivery_send')
    )
    op.create_index('ix_delivery_sends_counted', 'delivery_sends', ['counted_ms'], unique=False)
    op.create_index('ix_delivery_sends_occ_status', 'delivery_sends', ['occurrence_id', 'status'], unique=False)
    op.create_index('ix_delivery_sends_status_nb', 'delivery_sends', ['status', 'not_before_ms'], unique=False)
    op.create_table('delivery_sink_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('recipient', sa.String(length=256), nullable=False),
    sa.Column('title', sa.Text(), server_default='', nullable=False),
    sa.Column('body', sa.Text(), server_default='', nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='1', nullable=False),
    sa.Column('first_ms', sa.BigInteger(), nullable=False),
    sa.Column('last_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    op.create_table('delivery_touches',
    sa.Column('plan_id', sa.BigInteger(), nullable=False),
    sa.Column('touch_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('audience', sa.JSON(), nullable=False),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.Column('send_rate_per_s', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('plan_id', 'touch_id')
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    """Refuse UPDATE and DELETE on the audit log inside the database itself."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER delivery_audit_no_{verb.lower()} BEFORE {verb} "
                "ON delivery_audit_log BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION delivery_audit_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit log is append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER delivery_audit_append_only BEFORE UPDATE OR DELETE "
            "ON delivery_audit_log FOR EACH ROW EXECUTE FUNCTION delivery_audit_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS delivery_audit_append_only ON delivery_audit_log")
        op.execute("DROP FUNCTION IF EXISTS delivery_audit_append_only()")
    op.drop_table('delivery_touches')
    op.drop_table('delivery_sink_messages')
    op.drop_index('ix_delivery_sends_status_nb', table_name='delivery_sends')
    op.drop_index('ix_delivery_sends_occ_status', table_name='delivery_sends')
    op.drop_index('ix_delivery_sends_counted', table_name='delivery_sends')
    op.drop_table('delivery_sends')
    op.drop_index('ix_delivery_plans_state', table_name='delivery_plans')
    op.drop_table('delivery_plans')
    op.drop_index('ix_delivery_occurrences_state_due', table_name='delivery_occurrences')
    op.drop_table('delivery_occurrences')
    op.drop_index('ix_delivery_audit_plan', table_name='delivery_audit_log')
    op.drop_table('delivery_audit_log')
