"""The demo's effect report: funnel, copy race, uplift with its interval, and PNG charts."""

from __future__ import annotations

import pathlib

from services.cli import render


def effect_report(demo, plan: str) -> None:
    pb = demo.pb("delivery")
    stats = demo.call("delivery", "GetPlanStats", pb.GetPlanStatsRequest(plan=plan))
    experiment = None
    if not demo.state.get("no_race"):
        experiment = demo.call("delivery", "GetExperiment",
                               pb.GetExperimentRequest(plan=plan, touch_id="winback"))
    totals = [row for row in stats.totals if not row.variant_id]
    total = next((r for r in totals if not r.touch_id), totals[0] if totals else None)
    if total is None:
        demo.say("   GetPlanStats returned no totals")
        return
    f = total.funnel
    demo.say("   Funnel (GetPlanStats):")
    rows = [["audience", str(f.audience)]]
    rows += [[f"removed: {r.reason}", str(r.count)] for r in f.removed]
    rows += [[f"deferred: {r.reason}", str(r.count)] for r in f.deferred]
    rows += [["sent", str(f.sent)], ["delivered", str(total.delivered)],
             ["opened", str(total.opened)], ["clicked", str(total.clicked)],
             ["converted", str(total.converted)]]
    demo.say(_indent(render.table(rows, ["stage", "users"])))
    demo.say(f"   click-through {100 * total.click_through_rate:.2f}%, conversion "
             f"{100 * total.conversion_rate:.2f}%, revenue {total.revenue:.2f}")
    variants = list(experiment.variants) if experiment is not None else []
    winner = experiment.winner_variant_id if experiment is not None else ""
    if experiment is not None:
        demo.say("   Copy race (GetExperiment):")
        demo.say(_indent(render.table(
            [[v.variant_id or "(control)", str(v.funnel.sent), str(v.delivered), str(v.clicked),
              f"{100 * v.click_through_rate:.2f}%", str(v.converted),
              f"{100 * v.conversion_rate:.2f}%"] for v in variants],
            ["copy", "sent", "delivered", "clicked", "ctr", "converted", "conv_rate"])))
        demo.say(f"   winner: {winner or '(none)'} - {experiment.decision}")
    else:
        demo.say("   Copy race: not run (the delivery service refused experiments)")
    demo.say(f"   Uplift against the {demo_control(demo)}% control group: "
             f"{100 * total.uplift:+.2f} points, 95% interval "
             f"[{100 * total.uplift_ci_low:+.2f}, {100 * total.uplift_ci_high:+.2f}]")
    if total.uplift_ci_low <= 0 <= total.uplift_ci_high:
        demo.say("   The interval covers zero: in this simulation contact changes nothing "
                 "(the log decides who buys), which is what an honest measurement shows.")
    paths = charts(demo.out, total, variants, winner,
                   demo.state.get("model_version"))
    for path in paths:
        demo.say(f"   chart: {path}")
    demo.state["charts"] = paths


def demo_control(demo) -> str:
    from services.cli.demo import CONTROL_PERCENT

    return f"{CONTROL_PERCENT:g}"


def charts(out: pathlib.Path, total, variants, winner: str, model_version) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []

    f = total.funnel
    stages = [("audience", f.audience)]
    removed = sum(r.count for r in f.removed)
    if removed:
        stages.append(("after guards", f.audience - removed))
    stages += [("sent", f.sent), ("delivered", total.delivered), ("opened", total.opened),
               ("clicked", total.clicked), ("converted", total.converted)]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels, values = zip(*stages)
    bars = ax.barh(labels[::-1], values[::-1], color="#4C72B0")
    ax.bar_label(bars, padding=3)
    ax.set_title("Win-back funnel")
    ax.set_xlabel("users")
    fig.tight_layout()
    path = out / "funnel.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    copies = [v for v in variants if v.variant_id]
    if copies:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = [v.variant_id for v in copies]
        rates = [100 * v.click_through_rate for v in copies]
        colors = ["#DD8452" if n == winner else "#8C8C8C" for n in names]
        bars = ax.bar(names, rates, color=colors)
        ax.bar_label(bars, labels=[f"{r:.1f}%" for r in rates], padding=3)
        ax.set_ylim(0, max(rates + [1.0]) * 1.2)  # room for the labels above the bars
        ax.set_title("Copy race: click-through per copy" + (f" (winner {winner})" if winner
                                                             else ""))
        ax.set_ylabel("click-through, %")
        fig.tight_layout()
        path = out / "copy_race.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 3))
    mid = 100 * total.uplift
    low, high = 100 * total.uplift_ci_low, 100 * total.uplift_ci_high
    ax.errorbar([mid], [0], xerr=[[mid - low], [high - mid]], fmt="o", capsize=8,
                color="#55A868")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks([])
    ax.set_xlabel("uplift of conversion rate, percentage points (95% interval)")
    ax.set_title("Contacted vs control")
    fig.tight_layout()
    path = out / "uplift.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    if model_version is not None and model_version.metrics.lift:
        lift = model_version.metrics.lift
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar([str(r.decile) for r in lift], [r.lift for r in lift], color="#4C72B0")
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_xlabel("score decile (1 = highest scores)")
        ax.set_ylabel("lift")
        ax.set_title("Repurchase model: lift by decile (test rows)")
        fig.tight_layout()
        path = out / "lift.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _indent(text: str, by: str = "     ") -> str:
    return "\n".join(by + line for line in text.splitlines())
