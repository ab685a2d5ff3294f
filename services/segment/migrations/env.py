"""Alembic environment of the segment service (version table ``alembic_version_segment``)."""

from services.common.db import run_alembic_env
from services.segment.tables import metadata

run_alembic_env("segment", metadata)
