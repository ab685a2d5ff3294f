"""Fixtures of the scoring tests: a migrated profile store (Universal Bank loaded) and the core."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from services.common.db import make_engine, migrate
from services.scoring.core import ScoringConfig, ScoringCore
from services.scoring.features import release_connections
from services.scoring.operations import OperationRunner
from services.scoring.registry import ModelRegistry
from services.scoring.store import ScoringStore
from tests.scoring.bank import load_bank


@pytest.fixture(scope="session")
def bank_db_template(tmp_path_factory) -> pathlib.Path:
    """A profile database holding the 5,000 Universal Bank customers (built once)."""
    path = tmp_path_factory.mktemp("bank") / "profile.db"
    url = f"sqlite:///{path}"
    migrate("profile", url)
    engine = make_engine(url)
    load_bank(engine)
    engine.dispose()
    return path


@pytest.fixture
def bank_url(bank_db_template, tmp_path) -> str:
    """A private copy of the bank profile store, so tests may add to it."""
    path = tmp_path / "profile.db"
    shutil.copy(bank_db_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def empty_profile_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'profile-empty.db'}"
    migrate("profile", url)
    return url


@pytest.fixture
def scoring_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'scoring.db'}"
    migrate("scoring", url)
    return url


@pytest.fixture
def make_core(scoring_url):
    """Builds a ScoringCore over the scoring database and the given profile store."""
    built = []

    def build(profile_url: str, writer=None, **config) -> ScoringCore:
        engine = make_engine(scoring_url)
        profile_engine = make_engine(profile_url, read_only=True)
        store = ScoringStore(engine)
        cfg = ScoringConfig(**config)
        registry = ModelRegistry(store, max_model_bytes=cfg.max_model_bytes,
                                 intra_op_threads=cfg.intra_op_threads)
        runner = OperationRunner(store)
        core = ScoringCore(registry, profile_engine, runner, writer, cfg)
        built.append((core, engine, profile_engine))
        return core

    yield build
    for core, engine, profile_engine in built:
        core.runner.shutdown()
        engine.dispose()
        release_connections(profile_engine)
        profile_engine.dispose()


@pytest.fixture
def bank_core(make_core, bank_url) -> ScoringCore:
    return make_core(bank_url)
