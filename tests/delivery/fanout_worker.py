"""A delivery worker process for the proof tests: runs one plan's due work to the end."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import create_engine

from services.delivery import caps as caps_mod
from tests.delivery.conftest import build_core, drive


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--profiles", required=True)
    parser.add_argument("--plan", type=int, required=True)
    parser.add_argument("--audiences", default="{}")
    parser.add_argument("--rules", default="")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--lease-ms", type=int, default=30_000)
    args = parser.parse_args()
    rules = caps_mod.parse_rules(args.rules) if args.rules else None
    core = build_core(args.db, args.redis, create_engine(args.profiles),
                      json.loads(args.audiences), rules=rules, batch_size=args.batch,
                      lease_ms=args.lease_ms)
    funnel = drive(core, args.plan)
    print(json.dumps({"sent": funnel.sent, "removed": funnel.removed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
