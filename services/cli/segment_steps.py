"""The demo's segment steps: portrait insight of "at risk", and the win-back segment."""

from __future__ import annotations


from services.cli import render

# Bucket bounds that make the CDNOW portrait readable (numbers of purchases, dollars, days).
BOUNDS = {
    "frequency": [2, 3, 5, 10],
    "monetary": [25, 50, 100, 250],
    "recency_days": [90, 180, 270, 365],
}


def _create(demo, pb, display_name: str, rule_text: str, description: str):
    checked = demo.call("segment", "ValidateRule", pb.ValidateRuleRequest(rule_text=rule_text))
    if not checked.valid:
        problems = "; ".join(f"{v.field}: {v.description} (line {v.line}, column {v.column})"
                             for v in checked.violations)
        raise ValueError(f"rule {rule_text!r} is invalid: {problems}")
    segment = pb.Segment(display_name=display_name, description=description,
                         rule_text=rule_text)
    created = demo.call("segment", "CreateSegment", pb.CreateSegmentRequest(segment=segment))
    return created.segment


def _as_of(demo, request, instant=None):
    from services.cli.demo import NOW

    request.as_of_time.FromDatetime(instant or NOW)
    return request


def insight(demo) -> None:
    pb = demo.pb("segment")
    at_risk = _create(demo, pb, "At risk", 'rfm("at_risk")',
                      "used to buy often and much, not lately")
    demo.say(f"   CreateSegment {at_risk.name}: {at_risk.rule_text}")
    request = pb.GetInsightRequest(segment=at_risk.name, top_values=5, fields=list(BOUNDS))
    for field, bounds in BOUNDS.items():
        request.bucket_bounds.add(field=field, bounds=bounds)
    result = demo.call("segment", "GetInsight", _as_of(demo, request), timeout=120)
    share = result.segment_size / result.population_size if result.population_size else 0
    demo.say(f"   GetInsight: {result.segment_size} of {result.population_size} users "
             f"({100 * share:.1f}%) are at risk. TGI = share in the group / share in "
             "everyone x 100:")
    for dist in result.distributions:
        if dist.dimension in ("tags",) or not dist.buckets:
            continue
        if dist.dimension == "rfm_group":
            continue  # the group is the segment itself
        buckets = list(dist.buckets)
        if not any(b.value.startswith("[") or b.value.startswith("(") for b in buckets):
            buckets.sort(key=lambda b: -b.segment_count)
        demo.say(f"     {dist.dimension}")
        demo.say(_indent(render.table(
            [[b.value, f"{100 * b.segment_share:.1f}%", f"{100 * b.population_share:.1f}%",
              f"{b.tgi:.0f}"] for b in buckets[:8]],
            ["value", "at_risk", "everyone", "tgi"]), "       "))
    demo.state["insight"] = result
    demo.state["at_risk_segment"] = at_risk.name


def winback(demo) -> None:
    import math

    from services.cli.demo import CUTOFF, SCORE_NAME, TOP_SHARE, Skipped

    pb = demo.pb("segment")
    demo.recompute_traits_at_cutoff()
    candidates = _create(demo, pb, "Win-back candidates", 'rfm("at_risk", "hibernating")',
                         "at risk or hibernating at the cut-off")
    first = demo.call("segment", "CreateSnapshot", _as_of(
        demo, pb.CreateSnapshotRequest(parent=candidates.name), CUTOFF)).snapshot
    demo.say(f"   CreateSegment {candidates.name}: {candidates.rule_text} -> "
             f"{first.size} users at {CUTOFF:%Y-%m-%d}")
    if not first.size:
        raise Skipped("nobody was at risk or hibernating at the cut-off")
    # The top 30% of the candidates by repurchase score: the 70th percentile of their scores.
    scores = sorted(demo.snapshot_scores(first.name))
    if not scores:
        raise Skipped("no scores came back for the candidates")
    threshold = scores[min(len(scores) - 1, math.floor((1 - TOP_SHARE) * len(scores)))]
    demo.say(f"   ScoreSnapshot {first.name}: {len(scores)} scores, median "
             f"{scores[len(scores) // 2]:.4f}; the top {int(TOP_SHARE * 100)}% start at "
             f"{threshold:.6f}")
    demo.state["threshold"] = threshold
    # Rounding down keeps the user at the threshold itself in the segment.
    bound = math.floor(threshold * 1e6) / 1e6
    rule_text = f'rfm("at_risk", "hibernating") and score.{SCORE_NAME} >= {bound:.6f}'
    segment = _create(demo, pb, "Win-back", rule_text,
                      "at risk or hibernating, and repurchase score in the top 30%")
    demo.say(f"   CreateSegment {segment.name}:")
    demo.say(f"     {segment.rule_text}")
    estimate = demo.call("segment", "EstimateSegment",
                         _as_of(demo, pb.EstimateSegmentRequest(segment=segment.name), CUTOFF))
    demo.say(f"   EstimateSegment: {estimate.count} of {estimate.population} users")
    snapshot = demo.call("segment", "CreateSnapshot", _as_of(
        demo, pb.CreateSnapshotRequest(parent=segment.name), CUTOFF)).snapshot
    members: set[str] = set()
    for chunk in demo.suite.stub("segment").StreamSnapshotMembers(
            pb.StreamSnapshotMembersRequest(name=snapshot.name, batch_size=5000), timeout=120):
        members.update(m.external_id for m in chunk.members)
    demo.say(f"   CreateSnapshot {snapshot.name}: {snapshot.size} members "
             f"({snapshot.duration_ms} ms); StreamSnapshotMembers read {len(members)}")
    if not members:
        raise Skipped("the win-back segment is empty")
    demo.state["winback_segment"] = segment.name
    demo.state["winback_members"] = members


def _indent(text: str, by: str) -> str:
    return "\n".join(by + line for line in text.splitlines())
