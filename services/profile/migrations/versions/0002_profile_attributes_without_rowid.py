"""On SQLite, profile_attributes becomes a WITHOUT ROWID table clustered on (user_id, name).

A rowid table keeps its primary key in a separate index, so reading one attribute of one user
is two B-tree descents (the key index, then the row by rowid). Clustered on the key, it is one,
and a user's attributes lie together: reading a user's twenty features takes about a third less
time. PostgreSQL is left as it is.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

COLUMNS = "user_id, name, str_value, num_value, bool_value, ts_value, list_value"
INDEXES = (("ix_profile_attributes_name_num", ["name", "num_value"]),
           ("ix_profile_attributes_name_str", ["name", "str_value"]))


def _rebuild(with_rowid: bool) -> None:
    """Copies the table into a new one with or without a rowid, then swaps the names."""
    op.create_table(
        'profile_attributes_rebuilt',
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('str_value', sa.String(length=1024), nullable=True),
        sa.Column('num_value', sa.Float(), nullable=True),
        sa.Column('bool_value', sa.Boolean(), nullable=True),
        sa.Column('ts_value', sa.BigInteger(), nullable=True),
        sa.Column('list_value', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('user_id', 'name'),
        sqlite_with_rowid=with_rowid,
    )
    op.execute(f"INSERT INTO profile_attributes_rebuilt ({COLUMNS}) "
               f"SELECT {COLUMNS} FROM profile_attributes")
    for name, _columns in INDEXES:
        op.drop_index(name, table_name='profile_attributes')
    op.drop_table('profile_attributes')
    op.rename_table('profile_attributes_rebuilt', 'profile_attributes')
    for name, columns in INDEXES:
        op.create_index(name, 'profile_attributes', columns, unique=False)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=True)
