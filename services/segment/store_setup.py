"""Creates the read-path tables on an analytical engine (DuckDB) that has no auto-increment."""

from __future__ import annotations

from sqlalchemy import Double, Float, MetaData
from sqlalchemy.engine import Engine

from services.common import profile_tables as pt


def read_path_metadata() -> MetaData:
    """A copy of the read-path tables whose keys are plain columns, not sequences.

    An analytical replica is loaded with the ids the profile store assigned, so it needs no
    sequence; DuckDB in particular cannot create the BIGSERIAL keys of the PostgreSQL form.
    """
    metadata = MetaData()
    for table in pt.READ_PATH_TABLES:
        copy = table.to_metadata(metadata)
        for column in copy.primary_key.columns:
            column.autoincrement = False
        # FLOAT is single precision in DuckDB; the store's floats are doubles everywhere else.
        for column in copy.columns:
            if isinstance(column.type, Float):
                column.type = Double()
    return metadata


def create_read_path_tables(engine: Engine) -> None:
    read_path_metadata().create_all(engine)
