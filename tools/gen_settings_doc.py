"""Writes docs/services.md from the ENV_VARS tables kept next to the code that reads them."""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "services.md"

# Where each part keeps its table of settings: variable -> meaning (default in parentheses).
SETTINGS_MODULES = {
    "shared (every service)": "services.common.config",
    "profile": "services.profile.config",
    "segment": "services.segment.settings",
    "scoring": "services.scoring.core",
    "delivery": "services.delivery.settings",
}


def tables() -> dict[str, dict[str, str]]:
    sys.path.insert(0, str(ROOT))
    return {part: importlib.import_module(module).ENV_VARS
            for part, module in SETTINGS_MODULES.items()}


def render() -> str:
    lines = [
        "# Settings of each service",
        "",
        "Every setting is an environment variable with a default that works on one machine.",
        "This page is generated from the `ENV_VARS` tables next to the code that reads them",
        "(`python tools/gen_settings_doc.py`); a test fails when the two disagree.",
    ]
    for part, variables in tables().items():
        lines += ["", f"## {part}", "", "| variable | meaning (default) |", "|---|---|"]
        for name, meaning in variables.items():
            lines.append(f"| `{name}` | {meaning.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/services.md is stale")
    ns = parser.parse_args()
    text = render()
    if ns.check:
        if not DOC.exists() or DOC.read_text() != text:
            print("docs/services.md is stale; run `python tools/gen_settings_doc.py`")
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
