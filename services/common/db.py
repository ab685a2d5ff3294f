"""Database engines and migrations: SQLite by default, PostgreSQL (or DuckDB reads) by URL."""

from __future__ import annotations

import pathlib
import time
import zlib

from sqlalchemy import BigInteger, Integer, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError

from services.common.config import env_int

# An auto-incrementing 64-bit key: SQLite only auto-increments an INTEGER PRIMARY KEY, so it
# gets that; every other engine a BIGINT.
BigId = BigInteger().with_variant(Integer, "sqlite")

SERVICES_DIR = pathlib.Path(__file__).resolve().parent.parent


def make_engine(url: str, read_only: bool = False, **kwargs) -> Engine:
    """An engine tuned per dialect; ``read_only`` makes every session refuse writes."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            pathlib.Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).update(check_same_thread=False, timeout=30)
        engine = create_engine(url, **kwargs)
        # SQLite's default page cache (2 MiB) holds a few thousand users' attributes; beyond
        # that every lookup of another user goes back to the operating system for its pages.
        # Pages are allocated as they are read, so a small database costs no more.
        cache_kib = max(1, env_int("SQLITE_CACHE_MIB", 64)) * 1024

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # WAL lets readers (segment, scoring) run beside the profile service's writer.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute(f"PRAGMA cache_size=-{cache_kib}")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            cursor.close()

        return engine
    if backend == "postgresql":
        ping_idle_s = kwargs.pop("ping_idle_s", PING_IDLE_SECONDS)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("connect_timeout", 5)
        if read_only:
            # Keep options given in the URL (a search_path, say) beside the read-only switch.
            given = parsed.query.get("options", "")
            given = " ".join(given) if isinstance(given, tuple) else given
            connect_args["options"] = f"{given} -c default_transaction_read_only=on".strip()
        engine = create_engine(url, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            _ping_after_idle(engine, ping_idle_s)
        return engine
    if backend == "duckdb":
        # DuckDB is read here, in autocommit: the pool's rollback on return has no
        # transaction to end and fails inside the driver (caught, but 0.2 ms a checkout).
        kwargs.setdefault("pool_reset_on_return", None)
    return create_engine(url, **kwargs)


# A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
PING_IDLE_SECONDS = 5.0


def _ping_after_idle(engine: Engine, idle_s: float) -> None:
    """Checks a connection that sat idle in the pool for more than ``idle_s`` seconds before
    handing it out, and replaces it when the server has dropped it (a restart, a failover, an
    idle timeout). Pinging on every checkout, as ``pool_pre_ping`` does, adds a round trip to
    every call of a busy service; a connection returned a moment ago is almost always alive,
    and if not, the call fails once as UNAVAILABLE and the caller retries."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _handed_out(dbapi_connection, record, _proxy):
        if getattr(dbapi_connection, "broken", False) or getattr(dbapi_connection, "closed",
                                                                 False):
            # The driver already saw the server go (a lookup on its own cursor failed).
            raise DisconnectionError("connection lost")
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out another (or a new one).
            raise DisconnectionError("connection dropped while idle") from exc


def migrations_dir(service: str) -> pathlib.Path:
    return SERVICES_DIR / service / "migrations"


def alembic_config(service: str, url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir(service)))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["service"] = service
    return config


def migrate(service: str, url: str, revision: str = "head") -> None:
    """Upgrades the service's tables to ``revision`` (idempotent)."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together each run their migrations; a transaction-scoped
                # advisory lock makes them take turns, and the later ones find nothing to do.
                key = zlib.crc32(f"marketing-migrate-{service}".encode())
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            config = alembic_config(service, url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def run_alembic_env(service: str, target_metadata) -> None:
    """The body of every service's ``migrations/env.py`` (online mode only)."""
    from alembic import context

    def run(connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=f"alembic_version_{service}",
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            run(connection)
    finally:
        engine.dispose()
