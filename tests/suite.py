"""Starts all four services in one test process on loopback, each on its own SQLite file."""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
from typing import Iterator

from google.protobuf import descriptor_pool

from services.common.config import SERVICE_DEFAULTS, SERVICE_NAMES
from services.common.db import migrate
from services.common.server import ServiceDefinition, create_server
from services.common.testing import service_settings

# Start order: later services call earlier ones.
ORDER = ("profile", "segment", "scoring", "delivery")


def service_descriptor(service: str):
    importlib.import_module(f"marketing.{service}.v1.{service}_service_pb2")
    return descriptor_pool.Default().FindServiceByName(SERVICE_NAMES[service])


@contextlib.contextmanager
def running_suite(data_dir: pathlib.Path, redis_url: str, services=ORDER,
                  database_url: str | None = None) -> Iterator[dict[str, dict]]:
    """Yields {service: {"address", "server", "definitions", "settings"}} for a live suite."""
    started: dict[str, dict] = {}
    saved = {k: os.environ.get(k) for k in (f"{s.upper()}_ADDR" for s in SERVICE_DEFAULTS)}
    saved["MKT_API_KEY"] = os.environ.get("MKT_API_KEY")
    os.environ["MKT_API_KEY"] = "service-key"
    try:
        for service in services:
            overrides = {"redis_url": redis_url}
            if database_url:
                overrides.update(database_url=database_url, profile_read_database_url=database_url)
            settings = service_settings(service, data_dir, **overrides)
            migrate(service, settings.database_url)
            # Delivery wires its service in app.py (a scheduler beside the servicer).
            module = importlib.import_module(f"services.{service}.servicer")
            build = getattr(module, "build", None) or importlib.import_module(
                f"services.{service}.app").build
            definitions: list[ServiceDefinition] = build(settings)
            server, port = create_server(settings, definitions, address="127.0.0.1:0")
            server.start()
            address = f"127.0.0.1:{port}"
            os.environ[f"{service.upper()}_ADDR"] = address
            started[service] = {"address": address, "server": server,
                                "definitions": definitions, "settings": settings}
        yield started
    finally:
        for service in reversed(list(started)):
            started[service]["server"].stop(0)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
