"""Alembic environment of the delivery service (version table ``alembic_version_delivery``)."""

from services.common.db import run_alembic_env
from services.delivery import tables_effects  # noqa: F401 - registers the effect tables
from services.delivery.tables import metadata

run_alembic_env("delivery", metadata)
