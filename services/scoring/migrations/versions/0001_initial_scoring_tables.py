"""Initial scoring tables: model versions, aliases with their history, operations."""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scoring_alias_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('set_ms', sa.BigInteger(), nullable=False),
    sa.Column('set_by', sa.String(length=128), server_default='', nullable=False),
    sa.Column('rolled_back', sa.Boolean(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('scoring_alias_history', schema=None) as batch_op:
        batch_op.create_index('ix_scoring_alias_history_alias', ['model_name', 'alias', 'id'], unique=False)

    op.create_table('scoring_model_aliases',
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('model_name', 'alias')
    )
    op.create_table('scoring_model_versions',
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('task', sa.String(length=32), nullable=False, comment='conversion|churn|lookalike|other'),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('onnx_bytes', sa.LargeBinary(), nullable=False),
    sa.Column('onnx_sha256', sa.String(length=64), nullable=False),
    sa.Column('feature_schema', sa.JSON(), nullable=False, comment='list of feature specs'),
    sa.Column('output', sa.JSON(), nullable=False, comment='output name and column to read'),
    sa.Column('metrics', sa.JSON(), nullable=True, comment='training / evaluation metrics'),
    sa.Column('lineage', sa.JSON(), nullable=True, comment='data window, features, algorithm, params'),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=128), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('model_name', 'version')
    )
    op.create_table('scoring_operations',
    sa.Column('name', sa.String(length=64), nullable=False, comment='operations/{id}'),
    sa.Column('kind', sa.String(length=32), nullable=False, comment='train'),
    sa.Column('state', sa.String(length=16), nullable=False, comment='pending|running|succeeded|failed|cancelled'),
    sa.Column('progress_percent', sa.Integer(), server_default='0', nullable=False),
    sa.Column('stage', sa.String(length=64), server_default='', nullable=False),
    sa.Column('request', sa.JSON(), nullable=False, comment='the request that started it'),
    sa.Column('error_code', sa.Integer(), nullable=True, comment='google.rpc.Code of a failure'),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('error_violations', sa.JSON(), nullable=True, comment='[[field, description], ...]'),
    sa.Column('result', sa.JSON(), nullable=True, comment='model_name and version when succeeded'),
    sa.Column('cancel_requested', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=128), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('scoring_operations', schema=None) as batch_op:
        batch_op.create_index('ix_scoring_operations_created', ['created_ms'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('scoring_operations', schema=None) as batch_op:
        batch_op.drop_index('ix_scoring_operations_created')

    op.drop_table('scoring_operations')
    op.drop_table('scoring_model_versions')
    op.drop_table('scoring_model_aliases')
    with op.batch_alter_table('scoring_alias_history', schema=None) as batch_op:
        batch_op.drop_index('ix_scoring_alias_history_alias')

    op.drop_table('scoring_alias_history')
