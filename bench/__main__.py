"""Runs every benchmark module (bench/*_bench.py) and writes JSON and Markdown results."""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import pathlib
import platform
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
PACKAGES = ("grpcio", "protobuf", "sqlalchemy", "redis", "onnxruntime", "scikit-learn",
            "skl2onnx", "duckdb", "psycopg", "pyroaring", "numpy")


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        f"Benchmarks ({meta['size']}), {meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}",
        "",
        "| benchmark | figure | anchor | unit | ratio | goal | met |",
        "|---|---:|---:|---|---:|---:|:-:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error']} | | | | | no |")
            continue
        if r.get("goal") is None:
            # A figure shown for context beside a goal row, with no goal of its own.
            met, goal = "—", "—"
        else:
            hit = (r["ratio"] >= r["goal"] if r.get("higher_is_better", True)
                   else r["ratio"] <= r["goal"])
            met = "yes" if hit else "no"
            goal = ("≥ " if r.get("higher_is_better", True) else "≤ ") + f"{r['goal']:g}"
        lines.append(
            f"| {r['name']} | {r['figure']:.4g} | {r['anchor']:.4g} | {r['unit']} | "
            f"{r['ratio']:.2f} | {goal} | {met} |"
        )
    notes = [f"- {r['name']}: {r['notes']}" for r in results if r.get("notes")]
    if notes:
        lines += ["", *notes]
    lines += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    parser.add_argument("--only", action="append", default=[], help="module prefix to run")
    parser.add_argument("--out", default="bench-results", help="output directory")
    ns = parser.parse_args(argv)
    size = "quick" if ns.quick else "full"
    modules = sorted(p.stem for p in HERE.glob("*_bench.py"))
    if ns.only:
        modules = [m for m in modules if any(m.startswith(o) for o in ns.only)]
    results: list[dict] = []
    failed = False
    for name in modules:
        started = time.perf_counter()
        print(f"== {name} ({size})", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            rows = module.run(size)
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the rest
            traceback.print_exc()
            rows = [{"name": name, "error": f"{type(exc).__name__}: {exc}"}]
            failed = True
        for row in rows:
            if "error" not in row:
                print(f"   {row['name']}: {row['figure']:.4g} vs {row['anchor']:.4g} {row['unit']}"
                      f" -> ratio {row['ratio']:.2f}"
                      + (f" (goal {row['goal']:g})" if row.get("goal") is not None else ""),
                      flush=True)
        results += rows
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    meta = {
        "size": size,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
    }
    out = pathlib.Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{size}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    table = markdown(results, meta)
    (out / f"results-{size}.md").write_text(table)
    print()
    print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
