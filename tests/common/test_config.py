"""Settings from the environment and credential parsing."""

from __future__ import annotations

import pytest

from services.common.config import Settings, parse_api_keys, service_address


def test_defaults_give_each_service_its_own_sqlite_file(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "PROFILE_READ_DATABASE_URL", "REDIS_URL", "GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    segment = Settings.from_env("segment")
    assert segment.port == 50052 and segment.metrics_port == 9102
    assert segment.database_url.endswith("segment.db")
    assert segment.profile_read_database_url.endswith("profile.db")
    assert segment.redis_url is None


def test_database_url_is_shared_and_read_path_follows_it(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://db/marketing")
    monkeypatch.delenv("PROFILE_READ_DATABASE_URL", raising=False)
    scoring = Settings.from_env("scoring")
    assert scoring.database_url == scoring.profile_read_database_url
    monkeypatch.setenv("PROFILE_READ_DATABASE_URL", "postgresql+psycopg://replica/marketing")
    assert Settings.from_env("scoring").profile_read_database_url.startswith("postgresql+psycopg://replica")


def test_bad_numbers_name_the_variable(monkeypatch):
    monkeypatch.setenv("GRPC_PORT", "fifty")
    with pytest.raises(ValueError, match="GRPC_PORT"):
        Settings.from_env("profile")


def test_api_keys_parse_roles_and_subjects():
    keys = parse_api_keys("k1:operator:olivia; k2:approver+admin ;")
    assert keys["k1"].roles == {"operator"} and keys["k1"].subject == "olivia"
    assert keys["k2"].roles == {"approver", "admin"} and keys["k2"].subject == "admin"
    with pytest.raises(ValueError, match="MKT_API_KEYS"):
        parse_api_keys("just-a-key")


def test_service_address_from_environment(monkeypatch):
    monkeypatch.delenv("SEGMENT_ADDR", raising=False)
    assert service_address("segment") == "localhost:50052"
    monkeypatch.setenv("SEGMENT_ADDR", "dns:///segment:50051")
    assert service_address("segment") == "dns:///segment:50051"


def test_log_lines_carry_the_structured_fields():
    import json
    import logging

    from services.common.observability import JsonFormatter, TextFormatter

    record = logging.LogRecord("marketing.rpc", logging.INFO, __file__, 1, "rpc", (), None)
    record.method, record.code, record.duration_ms = "x.v1.S/Get", "OK", 1.5
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "rpc" and entry["method"] == "x.v1.S/Get" and entry["code"] == "OK"
    text = TextFormatter().format(record)
    assert text.endswith("rpc method=x.v1.S/Get code=OK duration_ms=1.5")
