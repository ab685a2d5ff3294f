"""Fixtures of the profile tests: a migrated store on SQLite (and PostgreSQL) and the domain core."""

from __future__ import annotations

import pytest
import redis

from services.common.db import make_engine, migrate
from services.profile.config import ProfileConfig
from services.profile.core import ProfileCore


class Clock:
    """A settable wall clock, so expiry and retention are tested without sleeping."""

    def __init__(self, now_s: float = 1_700_000_000.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated profile database: SQLite always, PostgreSQL (own schema) when reachable."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'profile.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    migrate("profile", url)
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_core(db_url, redis_url, clock):
    """Builds a ProfileCore over the test database with config overrides."""
    engines = []
    clients = []

    def build(**overrides) -> ProfileCore:
        engine = make_engine(db_url)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        engines.append(engine)
        clients.append(client)
        return ProfileCore(engine, client, ProfileConfig(**overrides), clock=clock)

    yield build
    for engine in engines:
        engine.dispose()
    for client in clients:
        client.close()


@pytest.fixture
def core(make_core) -> ProfileCore:
    return make_core()
