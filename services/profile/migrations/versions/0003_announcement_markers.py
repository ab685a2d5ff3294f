"""Announcement markers replace the publish backlog.

The backlog held one row per event whose announcement failed, written only when Redis raised,
so a process stopping between a commit and its publication lost the announcement. A marker is
written in the transaction it announces (one per batch of events or set of profile changes),
so whatever was committed can be announced later. Backlog rows become one marker each, due at
once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 01:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'profile_announcements',
        sa.Column('marker', sa.String(length=32), nullable=False),
        sa.Column('stream', sa.String(length=16), nullable=False, comment='events or changes'),
        sa.Column('first_row_id', sa.BigInteger(), nullable=True,
                  comment='events: least row id of the batch'),
        sa.Column('last_row_id', sa.BigInteger(), nullable=True, comment='events: greatest row id'),
        sa.Column('changes', sa.Text(), nullable=True,
                  comment='changes: JSON [[user_id, kinds], ...]'),
        sa.Column('created_ms', sa.BigInteger(), nullable=False),
        sa.Column('due_ms', sa.BigInteger(), nullable=False,
                  comment='left behind if still here then'),
        sa.PrimaryKeyConstraint('marker'),
    )
    op.create_index('ix_profile_announcements_due', 'profile_announcements', ['due_ms'],
                    unique=False)
    op.execute(
        "INSERT INTO profile_announcements "
        "(marker, stream, first_row_id, last_row_id, created_ms, due_ms) "
        "SELECT 'backlog-' || event_row_id, 'events', event_row_id, event_row_id, queued_ms, 0 "
        "FROM profile_publish_backlog"
    )
    op.drop_table('profile_publish_backlog')


def downgrade() -> None:
    op.create_table(
        'profile_publish_backlog',
        sa.Column('event_row_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=False, nullable=False),
        sa.Column('queued_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('event_row_id'),
    )
    # Events markers name row ranges; the backlog names rows. Change markers have no place in
    # the older schema and are dropped.
    op.execute(
        "INSERT INTO profile_publish_backlog (event_row_id, queued_ms) "
        "SELECT e.id, MIN(a.created_ms) FROM profile_announcements a "
        "JOIN events e ON e.id BETWEEN a.first_row_id AND a.last_row_id "
        "WHERE a.stream = 'events' GROUP BY e.id"
    )
    op.drop_index('ix_profile_announcements_due', table_name='profile_announcements')
    op.drop_table('profile_announcements')
