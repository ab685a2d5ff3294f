"""Soak: the four services under mixed traffic; error rate, latency and memory per service."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from bench.loadgen import Call, CallStats, LoadReport, format_table, run_load
from services.cli.suite_process import free_port_offset
from services.common.clients import open_channel
from services.common.config import SERVICE_DEFAULTS, SERVICE_NAMES
from services.run import DEV_API_KEYS, wait_serving

SERVICES = ("profile", "segment", "scoring", "delivery")
OPERATOR_KEY, APPROVER_KEY = "dev-operator", "dev-approver"
SEED_USERS = 2000
EVENTS_PER_CALL = 20
# A rule that needs events, counts and a time window: a real segment query, not a constant.
RULES = ("count(any, 7d) >= 2 and count(purchase, 30d) == 0", "count(any, 7d) >= 1")


def ingest_request(worker: int, seq: int) -> bytes:
    """A batch of new events (unique ids) for seeded users: the ingestion part of the mix."""
    from google.protobuf import timestamp_pb2

    from marketing.profile.v1 import profile_service_pb2 as pb

    rng = random.Random(worker * 1_000_003 + seq)
    now = int(time.time())
    events = []
    for i in range(EVENTS_PER_CALL):
        purchase = rng.random() < 0.1
        event = pb.Event(event_id=f"soak-{os.getpid()}-{worker}-{seq}-{i}",
                         user_id=f"soak-{rng.randrange(SEED_USERS):05d}",
                         event_type="purchase" if purchase else "view",
                         timestamp=timestamp_pb2.Timestamp(seconds=now - rng.randrange(86_400)))
        if purchase:
            event.value = round(rng.uniform(5, 200), 2)
        events.append(event)
    return pb.IngestEventsRequest(events=events).SerializeToString()


def _service_processes(root_pid: int) -> dict[str, object]:
    """The psutil processes of the suite's services, found among the launcher's children."""
    import psutil

    found = {}
    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        for service in SERVICES:
            if f"services.{service}" in cmdline:
                found[service] = child
    return found


class MemoryWatch:
    """Samples each service's RSS once a second; keeps the first, last and peak."""

    def __init__(self, processes: dict):
        self.processes = processes
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, int]:
        out = {}
        for service, process in self.processes.items():
            try:
                out[service] = process.memory_info().rss
            except Exception:  # noqa: BLE001 - a dead process has no memory to report
                continue
            self.peak[service] = max(self.peak.get(service, 0), out[service])
        return out

    def start(self) -> MemoryWatch:
        self.first = self.sample()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.last = self.sample()


def prepare(addresses: dict[str, str]) -> tuple[list[Call], list[str]]:
    """Seeds data through the public API and returns the calls of the mix, plus notes on any
    part of the mix that could not be set up (the soak then runs without it)."""
    from marketing.delivery.v1 import delivery_service_pb2 as dpb
    from marketing.delivery.v1 import delivery_service_pb2_grpc as dgrpc
    from marketing.profile.v1 import profile_service_pb2 as ppb
    from marketing.profile.v1 import profile_service_pb2_grpc as pgrpc
    from marketing.scoring.v1 import scoring_service_pb2 as cpb
    from marketing.segment.v1 import segment_service_pb2 as spb
    from marketing.segment.v1 import segment_service_pb2_grpc as sgrpc

    calls: list[Call] = []
    notes: list[str] = []

    def method(service: str, rpc: str) -> str:
        return f"/{SERVICE_NAMES[service]}/{rpc}"

    def add(service, rpc, requests=(), weight=1.0, factory=None):
        calls.append(Call(f"{service}.{rpc}", addresses[service], method(service, rpc),
                          tuple(requests), factory=factory, weight=weight, api_key=OPERATOR_KEY,
                          timeout=30.0))

    op = open_channel(addresses["profile"], OPERATOR_KEY, retries=False)
    profile = pgrpc.ProfileServiceStub(op)
    # Every seeded user gets a few events, so reads, estimates and dry runs find real data.
    seed = [ingest_request(1000 + i, 0) for i in range(SEED_USERS // EVENTS_PER_CALL * 3)]
    for payload in seed:
        profile.IngestEvents(ppb.IngestEventsRequest.FromString(payload), timeout=60)
    names = [f"profiles/soak-{i:05d}" for i in range(SEED_USERS)]
    existing = [n for n in names[:200] if _exists(profile, n)]
    add("profile", "IngestEvents", factory="bench.soak:ingest_request", weight=3)
    add("profile", "GetProfile", [ppb.GetProfileRequest(name=n).SerializeToString()
                                  for n in existing or names[:1]], weight=4)
    add("profile", "GetTraits", [ppb.GetTraitsRequest(name=n).SerializeToString()
                                 for n in (existing or names[:1])[:50]], weight=1)

    segment = sgrpc.SegmentServiceStub(open_channel(addresses["segment"], OPERATOR_KEY,
                                                    retries=False))
    rule = None
    for candidate in RULES:
        try:
            segment.EstimateSegment(spb.EstimateSegmentRequest(rule_text=candidate), timeout=60)
            rule = candidate
            break
        except grpc.RpcError as exc:
            notes.append(f"segment rule {candidate!r} refused: {exc.code().name} {exc.details()}")
    if rule:
        add("segment", "EstimateSegment",
            [spb.EstimateSegmentRequest(rule_text=rule).SerializeToString()], weight=1)
    add("segment", "ValidateRule",
        [spb.ValidateRuleRequest(rule_text=r).SerializeToString() for r in RULES], weight=1)

    add("scoring", "ListModels", [cpb.ListModelsRequest().SerializeToString()], weight=1)
    notes.append("scoring: no model is trained in the soak, so its mix is registry reads "
                 "(ListModels); scoring throughput is in bench/scoring_bench.py")

    delivery = dgrpc.DeliveryServiceStub(open_channel(addresses["delivery"], OPERATOR_KEY,
                                                      retries=False))
    try:
        plan = _dry_run_plan(dpb, delivery, names[:100])
        add("delivery", "DryRunTouch",
            [dpb.DryRunTouchRequest(plan=plan, touch_id="t1").SerializeToString()], weight=1)
        add("delivery", "GetPlan", [dpb.GetPlanRequest(name=plan).SerializeToString()], weight=1)
    except grpc.RpcError as exc:
        notes.append(f"delivery plan set-up failed: {exc.code().name} {exc.details()}")
        add("delivery", "ListPlans", [dpb.ListPlansRequest().SerializeToString()], weight=1)
    return calls, notes


def _exists(stub, name: str) -> bool:
    from marketing.profile.v1 import profile_service_pb2 as pb

    try:
        stub.GetProfile(pb.GetProfileRequest(name=name), timeout=10)
        return True
    except grpc.RpcError:
        return False


def _dry_run_plan(dpb, stub, names: list[str]) -> str:
    """A draft plan whose touch targets 100 seeded users: DryRunTouch runs the whole funnel
    (audience, contactability from the profile service, caps checked but not counted)."""
    now = int(time.time())
    plan = dpb.Plan(display_name="soak dry run", goal_type=dpb.GOAL_TYPE_WIN_BACK,
                    scene="soak", category=dpb.CATEGORY_MARKETING, priority=5, owner="soak",
                    business_goal=dpb.BusinessGoal(event_type="purchase", target=10))
    plan.start_time.FromSeconds(now - 3600)
    plan.end_time.FromSeconds(now + 7 * 86_400)
    touch = plan.touches.add(touch_id="t1", channel=1)
    touch.content.title = "Hello"
    touch.content.body = "Hello from the soak"
    touch.audience.users.external_ids.extend(n.split("/", 1)[1] for n in names)
    touch.schedule.now.SetInParent()
    created = stub.CreatePlan(dpb.CreatePlanRequest(plan=plan), timeout=30).plan
    stub.DryRunTouch(dpb.DryRunTouchRequest(plan=created.name, touch_id="t1"), timeout=60)
    return created.name


def per_service(report: LoadReport) -> dict[str, CallStats]:
    merged = {}
    for name, stats in report.calls.items():
        service = name.split(".", 1)[0]
        merged.setdefault(service, CallStats(service)).merge(stats)
    return merged


def service_table(report: LoadReport, watch: MemoryWatch, alive: dict[str, bool]) -> str:
    mb = 1024 * 1024
    head = (f"{'service':9} {'calls':>8} {'err%':>6} {'rps':>8} {'p50 ms':>8} {'p90 ms':>8} "
            f"{'p99 ms':>8} {'RSS start':>10} {'RSS end':>9} {'peak':>8} {'growth':>14} alive")
    lines = [head, "-" * len(head)]
    merged = per_service(report)
    for service in SERVICES:
        s = merged.get(service, CallStats(service))
        first, last = watch.first.get(service, 0), watch.last.get(service, 0)
        growth = last - first
        pct = (growth / first * 100) if first else 0.0
        lines.append(
            f"{service:9} {s.total:>8} {s.error_rate * 100:>6.2f} "
            f"{s.total / report.elapsed_s:>8.1f} {s.percentile_ms(50):>8.2f} "
            f"{s.percentile_ms(90):>8.2f} {s.percentile_ms(99):>8.2f} {first / mb:>8.1f}MB "
            f"{last / mb:>7.1f}MB {watch.peak.get(service, 0) / mb:>6.1f}MB "
            f"{growth / mb:>+7.1f}MB {pct:>+5.1f}% {'yes' if alive.get(service) else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic time (default 60)")
    parser.add_argument("--quick", action="store_true", help="15 seconds")
    parser.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="load-generating processes")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight per process")
    parser.add_argument("--max-error-rate", type=float, default=0.01,
                        help="fail above this error rate, over all calls (default 0.01)")
    parser.add_argument("--port-offset", type=int, default=None,
                        help="MKT_RUN_PORT_OFFSET for the suite (default: a free one)")
    parser.add_argument("--out", default="bench-results", help="where soak.json is written")
    ns = parser.parse_args(argv)
    seconds = 15.0 if ns.quick else ns.seconds
    offset = ns.port_offset if ns.port_offset is not None else free_port_offset()
    addresses = {s: f"127.0.0.1:{d['grpc_port'] + offset}" for s, d in SERVICE_DEFAULTS.items()}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        env = {**os.environ, "DATA_DIR": tmp, "MKT_RUN_PORT_OFFSET": str(offset),
               "MKT_API_KEYS": DEV_API_KEYS, "MKT_API_KEY": "dev-service",
               "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text", "SHUTDOWN_GRACE_SECONDS": "5"}
        for key in ("DATABASE_URL", "PROFILE_READ_DATABASE_URL", "REDIS_URL"):
            env.pop(key, None)  # the soak runs the default set-up: SQLite and embedded Redis
        log_path = pathlib.Path(tmp) / "suite.log"
        print(f"starting the suite (port offset {offset}, data in a temporary directory)",
              flush=True)
        with open(log_path, "wb") as log:
            suite = subprocess.Popen([sys.executable, "-m", "services.run"], env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        try:
            for service, address in addresses.items():
                if not wait_serving(address, timeout=120):
                    print(log_path.read_text()[-5000:])
                    raise SystemExit(f"{service} at {address} did not start")
            processes = _service_processes(suite.pid)
            started = time.monotonic()
            calls, notes = prepare(addresses)
            print(f"seeded in {time.monotonic() - started:.1f} s; mix: "
                  + ", ".join(f"{c.name} x{c.weight:g}" for c in calls), flush=True)
            watch = MemoryWatch(processes).start()
            print(f"driving {ns.processes} processes x {ns.concurrency} calls in flight "
                  f"for {seconds:g} s", flush=True)
            report = run_load(calls, processes=ns.processes, concurrency=ns.concurrency,
                              duration=seconds)
            watch.stop()
            alive = {s: p.is_running() and p.status() != "zombie" for s, p in processes.items()}
        finally:
            suite.send_signal(signal.SIGTERM)
            try:
                suite.wait(timeout=60)
            except subprocess.TimeoutExpired:
                suite.kill()
                suite.wait()
    total = report.total
    print()
    print(f"Soak: {seconds:g} s, {ns.processes} client processes x {ns.concurrency} in flight, "
          f"{os.cpu_count()} CPUs, SQLite and embedded Redis")
    print(service_table(report, watch, alive))
    print()
    print(format_table(report))
    for note in notes:
        print(f"note: {note}")
    errors = {name: s.errors for name, s in report.calls.items() if s.errors}
    if errors:
        print(f"errors by call: {errors}")
    out = pathlib.Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps({
        "seconds": seconds, "processes": ns.processes, "concurrency": ns.concurrency,
        "cpus": os.cpu_count(),
        "services": {s: {**_summary(st, report.elapsed_s), "rss_start": watch.first.get(s),
                         "rss_end": watch.last.get(s), "rss_peak": watch.peak.get(s),
                         "alive": alive.get(s)}
                     for s, st in per_service(report).items()},
        "calls": {name: report.summary(name) for name in report.calls},
        "notes": notes,
    }, indent=2))
    failed = total.error_rate > ns.max_error_rate or not all(alive.get(s) for s in SERVICES)
    verdict = "FAIL" if failed else "ok"
    print(f"{verdict}: error rate {total.error_rate * 100:.3f}% "
          f"(limit {ns.max_error_rate * 100:g}%), {total.total} calls")
    return 1 if failed else 0


def _summary(stats: CallStats, elapsed: float) -> dict:
    return {"calls": stats.total, "error_rate": stats.error_rate,
            "rps": stats.total / elapsed if elapsed else 0.0,
            "p50_ms": stats.percentile_ms(50), "p90_ms": stats.percentile_ms(90),
            "p99_ms": stats.percentile_ms(99)}


if __name__ == "__main__":
    sys.exit(main())
