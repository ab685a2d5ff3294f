"""Creates the read-path tables (profiles, events, traits, consents...) and profile bookkeeping.

Revision ID: 0001
Revises: none
Create Date: 2026-11-23 16:45:46.933306
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attribute_catalog',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('value_type', sa.String(length=16), nullable=False, comment='string|number|bool|timestamp|string_list'),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('pii', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('computed_traits',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('recency_days', sa.Float(), nullable=True, comment='days from last purchase to as_of_ms'),
    sa.Column('frequency', sa.Integer(), server_default='0', nullable=False),
    sa.Column('monetary', sa.Float(), server_default='0', nullable=False),
    sa.Column('r_score', sa.Integer(), nullable=True),
    sa.Column('f_score', sa.Integer(), nullable=True),
    sa.Column('m_score', sa.Integer(), nullable=True),
    sa.Column('rfm_group', sa.String(length=32), nullable=True),
    sa.Column('lifecycle_stage', sa.String(length=16), nullable=True),
    sa.Column('first_seen_ms', sa.BigInteger(), nullable=True),
    sa.Column('last_seen_ms', sa.BigInteger(), nullable=True),
    sa.Column('last_purchase_ms', sa.BigInteger(), nullable=True, comment='null: never purchased'),
    sa.Column('as_of_ms', sa.BigInteger(), nullable=True, comment='the instant the traits describe'),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )
    with op.batch_alter_table('computed_traits', schema=None) as batch_op:
        batch_op.create_index('ix_computed_traits_lifecycle', ['lifecycle_stage'], unique=False)
        batch_op.create_index('ix_computed_traits_rfm_group', ['rfm_group'], unique=False)

    op.create_table('consents',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False, comment='push|sms|email|wechat|in_app|webhook'),
    sa.Column('subscribed', sa.Boolean(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=128), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('user_id', 'channel')
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index('ix_consents_channel', ['channel', 'subscribed'], unique=False)

    op.create_table('event_type_counts',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('event_type', sa.String(length=128), nullable=False),
    sa.Column('count_7d', sa.Integer(), server_default='0', nullable=False),
    sa.Column('count_30d', sa.Integer(), server_default='0', nullable=False),
    sa.Column('count_90d', sa.Integer(), server_default='0', nullable=False),
    sa.Column('count_total', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('user_id', 'event_type')
    )
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False, comment='idempotency key'),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('event_type', sa.String(length=128), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.Float(), nullable=True, comment="the event's monetary value, if any"),
    sa.Column('properties', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_ts', ['ts_ms'], unique=False)
        batch_op.create_index('ix_events_type_ts', ['event_type', 'ts_ms'], unique=False)
        batch_op.create_index('ix_events_user_type_ts', ['user_id', 'event_type', 'ts_ms'], unique=False)

    op.create_table('profile_attributes',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('str_value', sa.String(length=1024), nullable=True),
    sa.Column('num_value', sa.Float(), nullable=True),
    sa.Column('bool_value', sa.Boolean(), nullable=True),
    sa.Column('ts_value', sa.BigInteger(), nullable=True, comment='timestamp attributes, epoch ms'),
    sa.Column('list_value', sa.JSON(), nullable=True, comment='string_list attributes'),
    sa.PrimaryKeyConstraint('user_id', 'name')
    )
    with op.batch_alter_table('profile_attributes', schema=None) as batch_op:
        batch_op.create_index('ix_profile_attributes_name_num', ['name', 'num_value'], unique=False)
        batch_op.create_index('ix_profile_attributes_name_str', ['name', 'str_value'], unique=False)

    op.create_table('profile_tags',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('expires_ms', sa.BigInteger(), nullable=True, comment='null: never expires'),
    sa.PrimaryKeyConstraint('user_id', 'tag')
    )
    with op.batch_alter_table('profile_tags', schema=None) as batch_op:
        batch_op.create_index('ix_profile_tags_expires', ['expires_ms'], unique=False)
        batch_op.create_index('ix_profile_tags_tag', ['tag', 'user_id'], unique=False)

    op.create_table('profiles',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False, comment='dense internal user id'),
    sa.Column('external_id', sa.String(length=256), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.Column('time_zone', sa.String(length=64), server_default='UTC', nullable=False),
    sa.Column('quiet_start_minute', sa.Integer(), nullable=True, comment='minute of the local day'),
    sa.Column('quiet_end_minute', sa.Integer(), nullable=True, comment='minute of the local day'),
    sa.Column('notifications_disabled', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('app_uninstalled', sa.Boolean(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('external_id'),
    sqlite_autoincrement=True,
    )
    op.create_table('scores',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('scored_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('user_id', 'model_name')
    )
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.create_index('ix_scores_model_score', ['model_name', 'score'], unique=False)

    op.create_table('profile_erasure_audit',
    sa.Column('erasure_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False, comment='retired internal id, never reused'),
    sa.Column('erased_ms', sa.BigInteger(), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.String(length=256), server_default='', nullable=False),
    sa.Column('rows_deleted', sa.JSON(), nullable=False, comment='table name -> rows removed'),
    sa.PrimaryKeyConstraint('erasure_id')
    )
    op.create_table('profile_identity_links',
    sa.Column('alias_external_id', sa.String(length=256), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False, comment='internal id of the known user'),
    sa.Column('merged_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('alias_external_id')
    )
    with op.batch_alter_table('profile_identity_links', schema=None) as batch_op:
        batch_op.create_index('ix_profile_identity_links_user', ['user_id'], unique=False)

    op.create_table('profile_publish_backlog',
    sa.Column('event_row_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('queued_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('event_row_id')
    )
    op.create_table('profile_rfm_breakpoints',
    sa.Column('dimension', sa.String(length=1), nullable=False, comment='r, f or m'),
    sa.Column('score', sa.Integer(), nullable=False, comment='2..5: the least value scoring this'),
    sa.Column('min_value', sa.Float(), nullable=True, comment='null: no user reaches this score'),
    sa.Column('population', sa.Integer(), nullable=False),
    sa.Column('as_of_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('dimension', 'score')
    )


def downgrade() -> None:
    op.drop_table('profile_rfm_breakpoints')
    op.drop_table('profile_publish_backlog')
    with op.batch_alter_table('profile_identity_links', schema=None) as batch_op:
        batch_op.drop_index('ix_profile_identity_links_user')

    op.drop_table('profile_identity_links')
    op.drop_table('profile_erasure_audit')
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_index('ix_scores_model_score')

    op.drop_table('scores')
    op.drop_table('profiles')
    with op.batch_alter_table('profile_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_profile_tags_tag')
        batch_op.drop_index('ix_profile_tags_expires')

    op.drop_table('profile_tags')
    with op.batch_alter_table('profile_attributes', schema=None) as batch_op:
        batch_op.drop_index('ix_profile_attributes_name_str')
        batch_op.drop_index('ix_profile_attributes_name_num')

    op.drop_table('profile_attributes')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_user_type_ts')
        batch_op.drop_index('ix_events_type_ts')
        batch_op.drop_index('ix_events_ts')

    op.drop_table('events')
    op.drop_table('event_type_counts')
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index('ix_consents_channel')

    op.drop_table('consents')
    with op.batch_alter_table('computed_traits', schema=None) as batch_op:
        batch_op.drop_index('ix_computed_traits_rfm_group')
        batch_op.drop_index('ix_computed_traits_lifecycle')

    op.drop_table('computed_traits')
    op.drop_table('attribute_catalog')
