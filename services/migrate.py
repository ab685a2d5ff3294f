"""Applies every service's database migrations (or one service's): `python -m services.migrate [svc]`."""

from __future__ import annotations

import argparse
import sys

from services.common.config import SERVICE_DEFAULTS, Settings
from services.common.db import migrate, migrations_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("services", nargs="*", metavar="SERVICE",
                        help=f"services to migrate, of {', '.join(SERVICE_DEFAULTS)} (default: all)")
    parser.add_argument("--revision", default="head", help="target revision (default head)")
    ns = parser.parse_args(argv)
    unknown = set(ns.services) - set(SERVICE_DEFAULTS)
    if unknown:
        parser.error(f"unknown services: {', '.join(sorted(unknown))}")
    for service in ns.services or list(SERVICE_DEFAULTS):
        if not (migrations_dir(service) / "env.py").exists():
            print(f"{service}: no migrations")
            continue
        settings = Settings.from_env(service)
        migrate(service, settings.database_url, ns.revision)
        print(f"{service}: migrated to {ns.revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
