"""Command-line effect report: a plan's funnel and hourly series drawn as PNG charts.

Usage: ``python -m services.delivery.report --plan 12 --out reports/`` (``DATABASE_URL`` or
``--database`` selects the delivery database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted

import matplotlib.pyplot as plt

from services.delivery.stats import EffectStats

FUNNEL = ("audience", "sent", "delivered", "opened", "clicked", "converted")


def draw_report(stats: EffectStats, plan_id: int, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Writes funnel.png, series.png and effects.json for a plan; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total, *rows = stats.totals(plan_id)
    series = stats.series(plan_id)
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    values = [getattr(total, k) for k in FUNNEL]
    bars = ax.barh(list(reversed(FUNNEL)), list(reversed(values)), color="#3b7dd8")
    for bar, value in zip(bars, reversed(values)):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value}",
                va="center")
    title = f"plans/{plan_id}: funnel"
    if total.uplift is not None:
        title += (f" - uplift {total.uplift:+.2%} "
                  f"(95% CI {total.uplift_low:+.2%} to {total.uplift_high:+.2%})")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("users")
    fig.tight_layout()
    paths.append(out_dir / "funnel.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    hours = sorted({p["start_ms"] for p in series})
    for measure in ("sent", "clicked", "converted"):
        by_hour = {h: 0 for h in hours}
        for p in series:
            by_hour[p["start_ms"]] += p[measure]
        ax.plot([dt.datetime.fromtimestamp(h / 1000, dt.UTC) for h in hours],
                [by_hour[h] for h in hours], marker="o", label=measure)
    ax.set_title(f"plans/{plan_id}: per hour (UTC)", fontsize=10)
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    paths.append(out_dir / "series.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    paths.append(out_dir / "effects.json")
    paths[-1].write_text(json.dumps({"totals": [r.as_dict() for r in [total, *rows]],
                                     "series": series}, indent=2))
    return paths


def main(argv: list[str] | None = None) -> int:
    from services.common.config import Settings
    from services.delivery.store import open_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=int, required=True, help="plan id")
    parser.add_argument("--out", default="reports", help="output directory")
    parser.add_argument("--database", default="", help="delivery database URL")
    ns = parser.parse_args(argv)
    url = ns.database or Settings.from_env("delivery").database_url
    engine = open_engine(url)
    for path in draw_report(EffectStats(engine), ns.plan, pathlib.Path(ns.out)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
