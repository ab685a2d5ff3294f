"""`make demo`: the whole loop on the CDNOW purchase log, through the public gRPC API only.

Steps (each prints what it shows; see docs/demo.md):

1. start the suite (`services.run` on a port offset, its own data directory);
2. load the log as users and purchase events;
3. RFM groups and lifecycle stages as of a simulated "now" just after the log ends;
4. portrait insight of the "at risk" group against everyone;
5. train a repurchase model with a cut-off inside the log and print its lift table;
6. write the scores back to the profiles, as of the cut-off: the campaign is replayed there,
   so the log after it can say who came back;
7. the win-back segment "at risk or hibernating (at the cut-off), and repurchase score in the
   top 30% of them", the threshold computed from the candidates' scores;
8. a win-back plan with a 4-copy race and a 10% control group, approved with a second key,
   run against the recording sink;
9. simulated outcomes (see `Demo.outcomes`), reported with a service credential as a channel
   vendor would;
10. the effect report (funnel, winner, uplift with interval) and its charts as PNG files.

A step whose RPC the running services do not offer prints which one and the steps that need
it are skipped; the exit status is non-zero unless every step ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import os
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc

from services.cli import ingest, render
from services.client import Suite, describe_error, messages, paginate

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_LOG = ROOT / "samples" / "cdnow" / "cdnow_master.txt"

DAY_MS = 86_400_000
# The log's last purchase is on 1998-06-30; the simulated "now" is the next midnight.
NOW = dt.datetime(1998, 7, 1, tzinfo=dt.UTC)
# The model learns from history before the cut-off who buys again in the 181 days after it
# (to the end of the log).
CUTOFF = dt.datetime(1998, 1, 1, tzinfo=dt.UTC)
LABEL_DAYS = 181
TOP_SHARE = 0.30
CONTROL_PERCENT = 10.0
GOAL_EVENT = "winback_purchase"
# The name the scores are written back under, and the one the win-back rule reads.
SCORE_NAME = "repurchase"

# The four copies raced against each other, and the click-through each is assumed to earn
# in the simulation (the log says nothing about message copy).
COPIES = [
    ("A", "We miss you", "Your favourite artists have new releases. Come and listen."),
    ("B", "20% off your next CD", "A thank-you for being with us: 20% off, this week only."),
    ("C", "Picked for you", "Based on what you bought, three albums we think you'll love."),
    ("D", "Still there?", "It has been a while. Here is what's new at CDNOW."),
]
CLICK_RATES = {"A": 0.05, "B": 0.16, "C": 0.08, "D": 0.03}
DELIVERED_RATE, OPEN_RATE = 0.97, 0.45
# The race's decision deadline after its first send: the simulated clicks arrive at once, so
# a short deadline lets the fallback (the best posterior mean) decide an unclear race. It
# leaves a few seconds for the outcomes to be reported, because the delivery service also
# evaluates open races in the background and would otherwise decide on no clicks at all.
RACE_DEADLINE_S = 4


def ms(instant: dt.datetime) -> int:
    return int(instant.timestamp() * 1000)


def unit(*parts: Any) -> float:
    """A deterministic pseudo-random number in [0, 1) from the parts (same run, same draw)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class NotAvailable(Exception):
    """The running services do not offer what a step needs (an RPC or a whole service)."""


class Skipped(Exception):
    """A step needs the result of a step that did not complete."""


@dataclasses.dataclass
class StepResult:
    title: str
    status: str  # "done", "partial", "unavailable", "skipped", "failed"
    seconds: float
    note: str = ""


class Demo:
    """Runs the steps against a suite reachable through `suite` (operator credential) and
    `approver` (a second credential with the approver role)."""

    def __init__(self, suite: Suite, approver: Suite, out_dir: pathlib.Path, log_path: pathlib.Path,
                 customers: int | None, printer: Callable[[str], None] = print,
                 vendor: Suite | None = None):
        self.suite = suite
        self.approver = approver
        # Outcomes come from channel vendors, which call with a service credential.
        self.vendor = vendor or suite
        self.out = out_dir
        self.log_path = log_path
        self.customers = customers
        self.say = printer
        self.results: list[StepResult] = []
        self.state: dict[str, Any] = {}
        self.missing_rpcs: list[str] = []
        # The suite the demo started, if any (to tell a stopped suite from a missing RPC).
        self.suite_process = None

    # -- plumbing ------------------------------------------------------------------------

    def call(self, service: str, rpc: str, request, *, suite: Suite | None = None,
             timeout: float | None = None):
        """One RPC through the client; a service or RPC the suite lacks raises NotAvailable."""
        suite = suite or self.suite
        try:
            stub = suite.stub(service)
        except ModuleNotFoundError:
            self._missing(f"{service} (no generated contract)")
        method = getattr(stub, rpc, None)
        if method is None:
            self._missing(f"{service}.{rpc}")
        try:
            return method(request, timeout=timeout) if timeout else method(request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                self._missing(f"{service}.{rpc}")
            raise

    def _missing(self, what: str):
        if what not in self.missing_rpcs:
            self.missing_rpcs.append(what)
        raise NotAvailable(f"not available in the running services: {what}")

    def pb(self, service: str):
        try:
            return messages(service)
        except ModuleNotFoundError:
            self._missing(f"{service} (no generated contract)")

    def partial(self, note: str) -> None:
        """Marks the running step as done in a reduced form, saying why."""
        self._partial = note

    def need(self, *keys: str) -> list[Any]:
        missing = [k for k in keys if k not in self.state]
        if missing:
            raise Skipped(f"needs {', '.join(missing)} from an earlier step")
        return [self.state[k] for k in keys]

    def step(self, title: str, fn: Callable[[], None]) -> None:
        number = len(self.results) + 1
        self.say(f"\n== {number}. {title}")
        started = time.monotonic()
        status, note = "done", ""
        self._partial = ""
        try:
            fn()
            if self._partial:
                status, note = "partial", self._partial
        except NotAvailable as exc:
            status, note = "unavailable", str(exc)
        except Skipped as exc:
            status, note = "skipped", str(exc)
        except grpc.RpcError as exc:
            status, note = "failed", describe_error(exc)
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                process = self.suite_process
                if process is not None and process.proc is not None \
                        and process.proc.poll() is not None:
                    # The launcher ended (a service died, or it was signalled from outside).
                    note += (f" (the suite stopped with exit status {process.proc.returncode};"
                             f" see {process.log_path})")
                # A service could not reach what it depends on: a gap between services.
                self.missing_rpcs.append(f"{title[:40]}: {note}")
        seconds = time.monotonic() - started
        if note:
            self.say(f"   {status}: {note}")
        self.say(f"   ({seconds:.1f}s)")
        self.results.append(StepResult(title, status, seconds, note))

    # -- 2. load ---------------------------------------------------------------------------

    def load(self) -> None:
        rows = list(ingest.cdnow_rows(str(self.log_path)))
        if self.customers:
            keep = sorted({r[1] for r in rows})[: self.customers]
            keep_set = set(keep)
            rows = [r for r in rows if r[1] in keep_set]
        self.state["rows"] = rows
        customers = sorted({r[1] for r in rows})
        self.state["customers"] = customers
        # Who buys again after the cut-off in the real log: the simulation's conversions.
        cutoff = ms(CUTOFF)
        self.state["buyers_after_cutoff"] = {r[1] for r in rows if r[2] >= cutoff}
        self.say(f"   {len(rows)} purchases of {len(customers)} customers from "
                 f"{self.log_path.name} ({_day(min(r[2] for r in rows))} .. "
                 f"{_day(max(r[2] for r in rows))})")
        stub = self.suite.stub("profile")
        self.pb("profile")
        events = (ingest.cdnow_event(*row) for row in rows)
        counts = ingest.ingest(stub, events, batch_size=5000, total=len(rows),
                               progress=sys.stderr.isatty())
        self.say(f"   IngestEvents: {counts['accepted']} stored, {counts['duplicate']} already "
                 f"there, {counts['rejected']} rejected; one profile per customer")
        if counts["rejected"]:
            raise Skipped(f"{counts['rejected']} events were rejected")
        self.state["loaded"] = True

    # -- 3. traits -------------------------------------------------------------------------

    def traits(self) -> None:
        self.need("loaded")
        pb = self.pb("profile")
        request = pb.RecomputeTraitsRequest()
        request.as_of_time.FromDatetime(NOW)
        done = self.call("profile", "RecomputeTraits", request, timeout=300)
        self.say(f"   RecomputeTraits as of {NOW:%Y-%m-%d}: {done.user_count} users, "
                 f"{done.population} ranked for RFM quintiles")
        groups = {}
        for value in pb.RfmGroup.DESCRIPTOR.values:
            if value.number == 0:
                continue
            groups[value.name[len("RFM_GROUP_"):].lower()] = self._count_profiles(
                pb, rfm_group=value.number)
        stages = {}
        for value in pb.LifecycleStage.DESCRIPTOR.values:
            if value.number == 0:
                continue
            stages[value.name[len("LIFECYCLE_STAGE_"):].lower()] = self._count_profiles(
                pb, lifecycle_stage=value.number)
        total = max(1, done.user_count)
        self.say("   RFM groups (ListProfiles --rfm-group):")
        self.say(_indent(render.table(
            [[g, str(n), f"{100 * n / total:.1f}%"] for g, n in groups.items()],
            ["rfm_group", "users", "share"])))
        self.say("   Lifecycle stages (ListProfiles --lifecycle-stage):")
        self.say(_indent(render.table(
            [[s, str(n), f"{100 * n / total:.1f}%"] for s, n in stages.items()],
            ["stage", "users", "share"])))
        self.state["rfm_groups"] = groups
        self.state["stages"] = stages

    def _count_profiles(self, pb, **filters) -> int:
        request = pb.ListProfilesRequest(page_size=1000, **filters)
        stub = self.suite.stub("profile")
        return sum(1 for _ in paginate(stub.ListProfiles, request, timeout=60))

    # -- 4. insight ------------------------------------------------------------------------

    def insight(self) -> None:
        self.need("loaded", "rfm_groups")
        from services.cli import segment_steps

        segment_steps.insight(self)

    # -- 5. training -----------------------------------------------------------------------

    def train(self) -> None:
        self.need("loaded")
        pb = self.pb("scoring")
        features = [
            pb.FeatureSpec(name="purchases", source=pb.FEATURE_SOURCE_EVENT, key="purchase",
                           type=pb.FEATURE_TYPE_NUMBER, aggregate=pb.EVENT_AGGREGATE_COUNT),
            pb.FeatureSpec(name="purchases_90d", source=pb.FEATURE_SOURCE_EVENT,
                           key="purchase", type=pb.FEATURE_TYPE_NUMBER,
                           aggregate=pb.EVENT_AGGREGATE_COUNT, window_days=90),
            pb.FeatureSpec(name="spend", source=pb.FEATURE_SOURCE_EVENT, key="purchase",
                           type=pb.FEATURE_TYPE_NUMBER, aggregate=pb.EVENT_AGGREGATE_SUM),
            pb.FeatureSpec(name="spend_90d", source=pb.FEATURE_SOURCE_EVENT, key="purchase",
                           type=pb.FEATURE_TYPE_NUMBER, aggregate=pb.EVENT_AGGREGATE_SUM,
                           window_days=90),
            pb.FeatureSpec(name="days_since_last", source=pb.FEATURE_SOURCE_EVENT,
                           key="purchase", type=pb.FEATURE_TYPE_NUMBER,
                           aggregate=pb.EVENT_AGGREGATE_DAYS_SINCE_LAST),
        ]
        request = pb.TrainModelRequest(
            model="models/repurchase", task=pb.MODEL_TASK_CONVERSION,
            label=pb.Label(event=pb.EventLabel(event_type="purchase", within_days=LABEL_DAYS)),
            features=features, algorithm="gradient_boosting", test_fraction=0.3,
            random_state=7, promote=True,
            description="buys again within 181 days of the cut-off (CDNOW demo)")
        request.cutoff_time.FromDatetime(CUTOFF)
        operation = self.call("scoring", "TrainModel", request).operation
        self.say(f"   TrainModel cut-off {CUTOFF:%Y-%m-%d}, label: purchase within "
                 f"{LABEL_DAYS} days; operation {operation.name}")
        operation = self._wait(operation)
        if operation.HasField("error") and operation.error.code:
            self.missing_rpcs.append(f"scoring.TrainModel on replayed history: "
                                     f"{operation.error.message}")
            raise Skipped(f"training failed: {operation.error.message}")
        version = pb.ModelVersion()
        operation.response.Unpack(version)
        metrics = version.metrics
        self.say(f"   {version.name}: AUC {metrics.auc:.3f}, base rate "
                 f"{100 * metrics.base_rate:.1f}%, top-decile lift {metrics.top_decile_lift:.2f}"
                 f" ({metrics.train_rows} train / {metrics.test_rows} test rows)")
        self.say("   Lift table (test rows, by score decile):")
        self.say(_indent(render.table(
            [[str(r.decile), str(r.rows), str(r.positives), f"{100 * r.response_rate:.1f}%",
              f"{r.lift:.2f}", f"{100 * r.cumulative_gain:.1f}%", f"{r.cumulative_lift:.2f}"]
             for r in metrics.lift],
            ["decile", "users", "buyers", "rate", "lift", "cum_gain", "cum_lift"])))
        self.state["model_version"] = version

    def _wait(self, operation):
        pb = self.pb("scoring")
        from tqdm import tqdm

        bar = tqdm(total=100, desc="training", unit="%", file=sys.stderr,
                   disable=not sys.stderr.isatty())
        shown = 0
        deadline = time.monotonic() + 600
        while not operation.done:
            if time.monotonic() > deadline:
                raise Skipped("training did not finish within 10 minutes")
            percent = max(shown, min(99, operation.progress_percent))
            bar.update(percent - shown)
            shown = percent
            time.sleep(0.5)
            operation = self.call("scoring", "GetOperation",
                                  pb.GetOperationRequest(name=operation.name)).operation
        bar.update(100 - shown)
        bar.close()
        return operation

    # -- 6. scores -------------------------------------------------------------------------

    def write_scores(self) -> None:
        self.need("model_version")
        pb = self.pb("scoring")
        # The campaign is replayed at the cut-off (see `winback_segment`), so the scores
        # describe every customer as of that instant, like the model's training rows.
        request = pb.WriteBackScoresRequest(model="models/repurchase", score_name=SCORE_NAME)
        request.as_of_time.FromDatetime(CUTOFF)
        done = self.call("scoring", "WriteBackScores", request, timeout=300)
        self.say(f"   WriteBackScores as of {CUTOFF:%Y-%m-%d}: {done.scored_count} scored, "
                 f"{done.written_count} written to profiles as `{SCORE_NAME}` "
                 f"({done.model_version})")
        if not done.written_count:
            raise Skipped("no scores were written")
        self.state["scores_written"] = done.written_count

    def snapshot_scores(self, snapshot: str) -> list[float]:
        """The repurchase scores of a segment snapshot's members as of the cut-off."""
        pb = self.pb("scoring")
        request = pb.ScoreSnapshotRequest(model="models/repurchase", chunk_size=5000,
                                          audience=pb.Audience(segment_snapshot=snapshot))
        request.as_of_time.FromDatetime(CUTOFF)
        stub = self.suite.stub("scoring")
        if not hasattr(stub, "ScoreSnapshot"):
            self._missing("scoring.ScoreSnapshot")
        scores: list[float] = []
        try:
            for chunk in stub.ScoreSnapshot(request, timeout=300):
                scores.extend(chunk.scores)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                self._missing("scoring.ScoreSnapshot")
            raise
        return scores

    def recompute_traits_at_cutoff(self) -> None:
        """RFM groups as they stood at the cut-off: the campaign is decided there, and the log
        after it is the future that shows who came back."""
        pb = self.pb("profile")
        request = pb.RecomputeTraitsRequest()
        request.as_of_time.FromDatetime(CUTOFF)
        done = self.call("profile", "RecomputeTraits", request, timeout=300)
        self.say(f"   RecomputeTraits as of {CUTOFF:%Y-%m-%d} (the campaign is replayed at the "
                 f"cut-off): {done.user_count} users")

    # -- 7. segment ------------------------------------------------------------------------

    def winback_segment(self) -> None:
        self.need("rfm_groups", "scores_written")
        from services.cli import segment_steps

        segment_steps.winback(self)

    # -- 8. plan ---------------------------------------------------------------------------

    def plan(self) -> None:
        segment_name, = self.need("winback_segment")
        pb = self.pb("delivery")
        from marketing.common.v1 import common_pb2

        now = dt.datetime.now(dt.UTC)
        variants = [pb.Variant(variant_id=v, content=pb.Content(title=title, body=body))
                    for v, title, body in COPIES]
        touch = pb.Touch(
            touch_id="winback", channel=common_pb2.CHANNEL_IN_APP,
            content=pb.Content(title=COPIES[0][1], body=COPIES[0][2]),
            audience=pb.Audience(segment=segment_name),
            schedule=pb.Schedule(now=pb.Now()),
            experiment=pb.Experiment(
                mode=pb.EXPERIMENT_MODE_RACE, variants=variants, exploration_percent=40,
                observation_window_seconds=RACE_DEADLINE_S, metric=pb.EXPERIMENT_METRIC_CLICK_THROUGH,
                min_samples_per_variant=self._min_samples(),
                deadline_seconds=RACE_DEADLINE_S))
        plan = pb.Plan(
            display_name="CDNOW win-back", goal_type=pb.GOAL_TYPE_WIN_BACK,
            scene="win-back of at-risk and hibernating buyers",
            business_goal=pb.BusinessGoal(event_type=GOAL_EVENT, target=100,
                                          attribution_window_seconds=7 * 86400),
            priority=500, category=pb.CATEGORY_MARKETING, owner="crm-team", touches=[touch],
            control_group_percent=CONTROL_PERCENT)
        plan.start_time.FromDatetime(now - dt.timedelta(minutes=1))
        plan.end_time.FromDatetime(now + dt.timedelta(days=7))
        try:
            created = self.call("delivery", "CreatePlan", pb.CreatePlanRequest(plan=plan)).plan
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or \
                    "not available" not in describe_error(exc):
                raise
            # The delivery service does not run experiments yet: one copy, no race.
            self.say(f"   CreatePlan with a copy race refused: {describe_error(exc)}")
            if "delivery: copy race (Touch.experiment)" not in self.missing_rpcs:
                self.missing_rpcs.append("delivery: copy race (Touch.experiment)")
            plan.touches[0].ClearField("experiment")
            created = self.call("delivery", "CreatePlan", pb.CreatePlanRequest(plan=plan)).plan
            self.partial("the plan runs one copy: delivery refused the copy race")
            self.state["no_race"] = True
        race = "one copy" if self.state.get("no_race") else \
            f"{len(COPIES)}-copy race on click-through"
        self.say(f"   CreatePlan {created.name} (operator): 1 in-app touch, {race}, "
                 f"{CONTROL_PERCENT:g}% control group, goal event `{GOAL_EVENT}`")
        submitted = self.call("delivery", "SubmitPlan",
                              pb.SubmitPlanRequest(name=created.name)).plan
        try:
            self.call("delivery", "ApprovePlan", pb.ApprovePlanRequest(
                name=created.name, content_hash=submitted.content_hash))
            self.say("   ApprovePlan with the operator's own key: accepted (unexpected)")
        except grpc.RpcError as exc:
            self.say(f"   ApprovePlan with the maker's key is refused: {describe_error(exc)}")
        approved = self.call("delivery", "ApprovePlan", pb.ApprovePlanRequest(
            name=created.name, content_hash=submitted.content_hash,
            reason="win-back copy reviewed"), suite=self.approver).plan
        self.say(f"   ApprovePlan with the second key: {render.enum_label(pb.Plan.DESCRIPTOR.fields_by_name['state'], approved.state)}"
                 f" by {approved.approved_by}")
        dry = self.call("delivery", "DryRunTouch",
                        pb.DryRunTouchRequest(plan=created.name, touch_id="winback")).funnel
        self.say("   DryRunTouch (nothing sent): " + _funnel_text(dry))
        run = self.call("delivery", "RunTouch", pb.RunTouchRequest(
            plan=created.name, touch_id="winback", occurrence_key="winback-1"),
            timeout=300).funnel
        self.say("   RunTouch against the recording sink: " + _funnel_text(run))
        self.state["plan"] = created.name
        self.state["run_funnel"] = run

    def _min_samples(self) -> int:
        return 30 if self.customers else 150

    # -- 9. outcomes -----------------------------------------------------------------------

    def outcomes(self) -> None:
        """Simulated outcomes, documented in docs/demo.md:

        - delivery, opening and clicking are drawn per message with fixed rates (clicks per
          copy from CLICK_RATES when the ledger says which copy a user got);
        - conversion is decided by the real log: a user of the win-back audience (contacted
          or held back as control) converts if they bought again after the cut-off. Those
          users get a `winback_purchase` event now, which the delivery service attributes to
          the message or the holdout like any goal event."""
        plan, = self.need("plan")
        pb = self.pb("delivery")
        buyers = self.state["buyers_after_cutoff"]
        self._report_outcomes(plan, pb)
        # The race has clicks now; sending again lets the winner reach the waiting users.
        experiment = None if self.state.get("no_race") else self._experiment(plan, pb)
        # The race is decided by its rule or, failing that, when its deadline (counted from
        # the first send) has passed; the demo waits that out.
        deadline = time.monotonic() + RACE_DEADLINE_S + 5
        while (experiment is not None and not experiment.winner_variant_id
               and time.monotonic() < deadline):
            time.sleep(0.5)
            experiment = self._experiment(plan, pb)
        if experiment is not None:
            self.say(f"   GetExperiment: winner {experiment.winner_variant_id or '(none yet)'}"
                     f" - {experiment.decision}")
            if experiment.winner_variant_id:
                more = self.call("delivery", "RunTouch", pb.RunTouchRequest(
                    plan=plan, touch_id="winback", occurrence_key="winback-1"),
                    timeout=300).funnel
                if more.sent:
                    self.say("   RunTouch again (the rest get the winner): "
                             + _funnel_text(more))
                    self._report_outcomes(plan, pb)
        audience = self.state["winback_members"]
        converting = sorted(u for u in audience if u in buyers)
        self.say(f"   {len(converting)} of {len(audience)} audience members bought again after "
                 f"{CUTOFF:%Y-%m-%d} in the real log: each gets a `{GOAL_EVENT}` event now")
        ppb = self.pb("profile")
        from marketing.common.v1 import common_pb2

        now_ms = int(time.time() * 1000)
        events = []
        for external_id in converting:
            event = ppb.Event(event_id=f"{plan}-conv-{external_id}", user_id=external_id,
                              event_type=GOAL_EVENT, value=round(10 + 40 * unit(external_id), 2))
            event.timestamp.FromMilliseconds(now_ms)
            event.properties["source"].CopyFrom(common_pb2.Value(string_value="simulation"))
            events.append(event)
        if events:
            counts = ingest.ingest(self.suite.stub("profile"), events, progress=False)
            self.say(f"   IngestEvents: {counts['accepted']} goal events stored")
        # Attribution runs as delivery reads the events stream; wait until it caught up.
        deadline = time.monotonic() + 60
        converted = control = 0
        while time.monotonic() < deadline:
            stats = self.call("delivery", "GetPlanStats", pb.GetPlanStatsRequest(plan=plan))
            totals = self._plan_totals(stats)
            converted = totals.converted if totals is not None else 0
            # The plan-wide control entry comes first (touch_id "").
            control = next((c.converted for c in stats.control_groups if not c.touch_id), 0)
            if converted + control >= len(converting) or not converting:
                break
            time.sleep(1)
        self.say(f"   attributed conversions: {converted} contacted, {control} in the control "
                 "group")
        if converted + control < len(converting):
            self.partial(f"only {converted + control} of {len(converting)} goal events were "
                         "attributed within a minute")
        self.state["outcomes"] = True

    def _report_outcomes(self, plan: str, pb) -> None:
        sends = list(paginate(self.suite.stub("delivery").ListSends,
                              pb.ListSendsRequest(plan=plan, status=pb.SEND_STATUS_SENT,
                                                  page_size=1000)))
        reported = self.state.setdefault("reported", set())
        fresh = [s for s in sends if s.idempotency_key not in reported]
        has_variant = "variant_id" in pb.Send.DESCRIPTOR.fields_by_name
        if not has_variant and not self.state.get("variant_note"):
            self.state["variant_note"] = True
            self.say("   note: the send ledger does not say which copy a user got "
                     "(no Send.variant_id), so every copy is simulated with the same click rate")
        outcomes = []
        now = time.time()
        counts = {"delivered": 0, "opened": 0, "clicked": 0}
        mean_click = sum(CLICK_RATES.values()) / len(CLICK_RATES)
        for send in fresh:
            key = send.idempotency_key
            reported.add(key)
            if unit(key, "delivered") >= DELIVERED_RATE:
                continue
            outcomes.append(_outcome(pb, key, pb.OUTCOME_TYPE_DELIVERED, now))
            counts["delivered"] += 1
            if unit(key, "opened") < OPEN_RATE:
                outcomes.append(_outcome(pb, key, pb.OUTCOME_TYPE_OPENED, now))
                counts["opened"] += 1
            rate = CLICK_RATES.get(getattr(send, "variant_id", ""), mean_click) \
                if has_variant else mean_click
            if unit(key, "clicked") < rate / OPEN_RATE * (1 if unit(key, "opened") < OPEN_RATE
                                                           else 0):
                outcomes.append(_outcome(pb, key, pb.OUTCOME_TYPE_CLICKED, now))
                counts["clicked"] += 1
        refused = 0
        for start in range(0, len(outcomes), 1000):
            response = self.call("delivery", "ReportOutcomes",
                                 pb.ReportOutcomesRequest(outcomes=outcomes[start:start + 1000]),
                                 suite=self.vendor)
            refused += sum(1 for r in response.results if r.status.code != 0)
        self.say(f"   ReportOutcomes for {len(fresh)} sends: {counts['delivered']} delivered, "
                 f"{counts['opened']} opened, {counts['clicked']} clicked"
                 + (f", {refused} refused" if refused else ""))

    def _experiment(self, plan: str, pb):
        try:
            return self.call("delivery", "GetExperiment",
                             pb.GetExperimentRequest(plan=plan, touch_id="winback"))
        except grpc.RpcError as exc:
            self.say(f"   GetExperiment: {describe_error(exc)}")
            return None

    @staticmethod
    def _plan_totals(stats):
        for row in stats.totals:
            if not row.touch_id and not row.variant_id:
                return row
        return stats.totals[0] if stats.totals else None

    # -- 10. report ------------------------------------------------------------------------

    def report(self) -> None:
        plan, _ = self.need("plan", "outcomes")
        from services.cli import report

        report.effect_report(self, plan)


def _outcome(pb, key: str, kind: int, when: float):
    outcome = pb.Outcome(idempotency_key=key, type=kind)
    outcome.time.FromMilliseconds(int(when * 1000))
    return outcome


def _funnel_text(funnel) -> str:
    removed = ", ".join(f"{r.reason} {r.count}" for r in funnel.removed) or "none"
    deferred = ", ".join(f"{r.reason} {r.count}" for r in funnel.deferred)
    return (f"audience {funnel.audience}, removed: {removed}"
            + (f", deferred: {deferred}" if deferred else "")
            + f", sent {funnel.sent}" + (f", failed {funnel.failed}" if funnel.failed else ""))


def _indent(text: str, by: str = "     ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _day(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.cli.demo",
        description="The whole loop on the CDNOW purchase log, through the public API.")
    parser.add_argument("--quick", action="store_true",
                        help="a subset of the customers (the first 3000), for CI")
    parser.add_argument("--customers", type=int, default=None,
                        help="use only the first N customers (by id)")
    parser.add_argument("--log", type=pathlib.Path, default=DEFAULT_LOG,
                        help="the CDNOW log (default samples/cdnow/cdnow_master.txt)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("var/demo"),
                        help="where charts, the suite's data and its log go (default var/demo)")
    parser.add_argument("--port-offset", type=int, default=None,
                        help="port offset of the suite the demo starts (default random)")
    parser.add_argument("--use-running", action="store_true",
                        help="talk to an already running suite ($PROFILE_ADDR... or the "
                        "local ports) instead of starting one")
    parser.add_argument("--api-key", default=None,
                        help="operator credential (default $MKT_API_KEY, else make run's "
                        "dev-operator)")
    parser.add_argument("--approver-key", default="dev-approver",
                        help="the second credential, with the approver role")
    parser.add_argument("--service-key", default="dev-service",
                        help="the credential outcomes are reported with, as a channel "
                        "vendor's callback would (service role; default dev-service)")
    args = parser.parse_args(argv)
    if args.quick and args.customers is None:
        args.customers = 3000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    out = args.out.resolve()
    if not args.log.exists():
        print(f"error: {args.log} not found", file=sys.stderr)
        return 2
    print("Marketing suite demo: CDNOW purchase log -> RFM -> insight -> repurchase model -> "
          "win-back segment -> approved plan with a copy race -> measured effect")
    suite_process = None
    addresses: dict[str, str] = {}
    if not args.use_running:
        import shutil

        from services.cli.suite_process import SuiteProcess

        data_dir = out / "var"
        if data_dir.exists():
            shutil.rmtree(data_dir)  # every demo run starts from empty stores
        out.mkdir(parents=True, exist_ok=True)
        print(f"\n== starting the suite (services.run, data in {data_dir})")
        t0 = time.monotonic()
        env = {
            "PROFILE_AS_OF": NOW.strftime("%Y-%m-%d"),
            # The demo replays a finished history: no background full recompute meanwhile.
            "PROFILE_FULL_RECOMPUTE_INTERVAL_SECONDS": "0",
            # RFM over the whole 18-month history, so "at risk" means "used to buy often".
            "PROFILE_RFM_WINDOW_DAYS": "0",
        }
        # A random port offset can collide with ports another program holds; then the suite
        # is started again on another offset (unless the offset was given).
        attempts = 1 if args.port_offset is not None else 3
        for attempt in range(attempts):
            if data_dir.exists():
                shutil.rmtree(data_dir)
            suite_process = SuiteProcess(data_dir, args.port_offset, extra_env=env)
            try:
                addresses = suite_process.start()
            except RuntimeError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            if not suite_process.not_serving or attempt == attempts - 1:
                break
            print(f"   not serving: {', '.join(suite_process.not_serving)} (port offset "
                  f"{suite_process.offset}); starting again on another offset")
            suite_process.stop()
        print("   " + ", ".join(f"{s} {a}" for s, a in addresses.items())
              + f" ({time.monotonic() - t0:.1f}s)")
        if suite_process.not_serving:
            print(f"   not serving: {', '.join(suite_process.not_serving)} "
                  f"(see {suite_process.log_path})")
    out.mkdir(parents=True, exist_ok=True)
    operator_key = args.api_key or os.environ.get("MKT_API_KEY") or "dev-operator"
    suite = Suite(operator_key, addresses, timeout=60)
    approver = suite.with_key(args.approver_key)
    vendor = suite.with_key(args.service_key)
    demo = Demo(suite, approver, out, args.log, args.customers, vendor=vendor)
    demo.suite_process = suite_process
    try:
        demo.step("Load the CDNOW log as users and purchase events", demo.load)
        demo.step("RFM groups and lifecycle stages", demo.traits)
        demo.step('Portrait insight: "at risk" against everyone', demo.insight)
        demo.step("Train a repurchase model (cut-off inside the log)", demo.train)
        demo.step("Write the scores back to the profiles", demo.write_scores)
        demo.step('Win-back segment: "at risk or hibernating, and repurchase score in the '
                  'top 30%"', demo.winback_segment)
        demo.step("Win-back plan: 4-copy race, 10% control, approval by a second key, run",
                  demo.plan)
        demo.step("Simulated outcomes", demo.outcomes)
        demo.step("Effect report and charts", demo.report)
    finally:
        suite.close()
        approver.close()
        vendor.close()
        if suite_process is not None:
            suite_process.stop()
    total = time.monotonic() - started
    print("\n== summary")
    print(render.table([[r.title[:60], r.status, f"{r.seconds:.1f}s"] for r in demo.results],
                       ["step", "status", "time"]))
    if demo.missing_rpcs:
        print("not offered by the running services: " + ", ".join(demo.missing_rpcs))
    print(f"total {total:.1f}s; charts and data in {out}")
    return 0 if all(r.status == "done" for r in demo.results) else 1


if __name__ == "__main__":
    sys.exit(main())
