"""Alembic environment of the profile service: the read-path tables and its own tables."""

from services.common.db import run_alembic_env
from services.common.profile_tables import metadata as read_path_metadata
from services.profile.tables import metadata as profile_metadata

run_alembic_env("profile", [read_path_metadata, profile_metadata])
