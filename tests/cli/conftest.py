"""Fixtures of the client and command-line tests: real services on loopback port 0."""

from __future__ import annotations

import pytest

from services.common.testing import running_server, service_settings


@pytest.fixture
def profile_address(tmp_path, redis_url):
    """A real profile service on loopback; yields its address."""
    from services.profile.servicer import build

    settings = service_settings("profile", tmp_path, redis_url=redis_url)
    with running_server(settings, build(settings)) as (_, address):
        yield address


@pytest.fixture
def cli_env(monkeypatch, profile_address):
    """The environment a shell user of `mkt` would have: address and operator credential."""
    monkeypatch.setenv("PROFILE_ADDR", profile_address)
    monkeypatch.setenv("MKT_API_KEY", "operator-key")
    monkeypatch.setenv("MKT_NO_PROGRESS", "1")
    return profile_address
