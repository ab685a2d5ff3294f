"""Structured JSON logging and Prometheus metrics shared by every service."""

from __future__ import annotations

import json
import logging
import sys
import time

from prometheus_client import Counter, Histogram, start_http_server

RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC, by service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed, by service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the record's extra fields as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for local runs, with the record's extra fields as key=value."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items()
                          if k not in _RESERVED and v is not None)
        return f"{line} {extras}" if extras else line


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic announces each of its plugins at INFO on every start; migrations still log.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


_metrics_started: set[int] = set()


def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:
    """Serves /metrics on ``port`` (0 disables); idempotent per port within a process."""
    if port and port not in _metrics_started:
        start_http_server(port, addr=host)
        _metrics_started.add(port)


# The labelled children of the two RPC metrics, per (service, method, code): finding a child
# through ``labels()`` on every call costs more than the observation itself.
_CHILDREN: dict[tuple[str, str, str], tuple] = {}


def observe(service: str, method: str, code: str, started: float) -> float:
    elapsed = time.perf_counter() - started
    key = (service, method, code)
    children = _CHILDREN.get(key)
    if children is None:
        children = _CHILDREN.setdefault(key, (RPC_LATENCY.labels(service, method, code),
                                              RPC_HANDLED.labels(service, method, code)))
    children[0].observe(elapsed)
    children[1].inc()
    return elapsed
