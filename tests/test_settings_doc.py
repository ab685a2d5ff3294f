"""Every environment variable the services read is documented, and docs/services.md is fresh."""

from __future__ import annotations

import pathlib
import re

from tools.gen_settings_doc import DOC, render, tables

ROOT = pathlib.Path(__file__).resolve().parent.parent
READS = re.compile(
    r"""(?:env_(?:str|int|float|bool)\(\s*|os\.environ\.get\(\s*|os\.environ\[\s*|getenv\(\s*)"""
    r"""["']([A-Z][A-Z0-9_]+)["']"""
)
# Read by tests only (they pick the PostgreSQL and Redis of integration runs).
TEST_ONLY = {"TEST_POSTGRES_URL", "TEST_REDIS_URL"}


def variables_read() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in (ROOT / "services").rglob("*.py"):
        for name in READS.findall(path.read_text()):
            found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def test_every_variable_read_is_documented():
    documented = set().union(*(set(t) for t in tables().values()))
    missing = {name: where for name, where in variables_read().items()
               if name not in documented | TEST_ONLY}
    assert not missing, f"read but not in any ENV_VARS table: {missing}"


def test_services_page_is_generated_from_the_tables():
    assert DOC.read_text() == render(), "run `python tools/gen_settings_doc.py`"
