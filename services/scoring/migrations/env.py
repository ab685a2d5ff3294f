"""Alembic environment of the scoring service (version table ``alembic_version_scoring``)."""

from services.common.db import run_alembic_env
from services.scoring.tables import metadata

run_alembic_env("scoring", metadata)
