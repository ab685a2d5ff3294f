"""Multi-process gRPC load generator: N processes, each with its own channels, merged percentiles."""

from __future__ import annotations

import argparse
import array
import asyncio
import dataclasses
import importlib
import multiprocessing
import os
import queue
import random
import sys
import time
from collections.abc import Callable, Sequence

import grpc

# Every call sends raw bytes and receives raw bytes: the generator measures the transport and
# the server, never the client's own protobuf work on the response.
KINDS = ("unary", "stream_unary")


@dataclasses.dataclass(frozen=True)
class Call:
    """One RPC to drive.

    ``requests`` are serialized request messages, used in turn. ``factory`` names a function
    ``module:function`` taking ``(worker, seq)`` and returning the serialized request (for a
    ``stream_unary`` call, a list of serialized messages); it is imported inside each worker
    process, so it must be a module-level function. Either ``requests`` or ``factory`` is set.
    ``weight`` is the call's share of a mixed load.
    """

    name: str
    address: str
    method: str
    requests: tuple[bytes, ...] = ()
    factory: str | None = None
    kind: str = "unary"
    weight: float = 1.0
    api_key: str | None = None
    timeout: float = 10.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.requests and not self.factory:
            raise ValueError(f"{self.name}: give requests or a factory")


@dataclasses.dataclass
class CallStats:
    """What one call saw, merged over every process."""

    name: str
    ok: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    latencies_s: array.array = dataclasses.field(default_factory=lambda: array.array("d"))

    @property
    def total(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        return (self.total - self.ok) / self.total if self.total else 0.0

    def percentile_ms(self, p: float) -> float:
        """The latency (ms) below which ``p`` percent of the calls finished (nearest rank),
        over successful and failed calls alike."""
        return percentile(self.latencies_s, p) * 1000.0

    def merge(self, other: CallStats) -> None:
        self.ok += other.ok
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.latencies_s.extend(other.latencies_s)


@dataclasses.dataclass
class LoadReport:
    """Merged results of one load run."""

    calls: dict[str, CallStats]
    elapsed_s: float
    processes: int
    concurrency: int

    @property
    def total(self) -> CallStats:
        merged = CallStats("all")
        for stats in self.calls.values():
            merged.merge(stats)
        return merged

    def throughput(self, name: str | None = None) -> float:
        """Completed calls per second (all calls, or one call's)."""
        stats = self.total if name is None else self.calls[name]
        return stats.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self, name: str | None = None) -> dict:
        stats = self.total if name is None else self.calls[name]
        return {
            "calls": stats.total,
            "errors": dict(stats.errors),
            "error_rate": stats.error_rate,
            "rps": self.throughput(name),
            "p50_ms": stats.percentile_ms(50),
            "p90_ms": stats.percentile_ms(90),
            "p99_ms": stats.percentile_ms(99),
        }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ``values``; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def _load_factory(path: str) -> Callable[[int, int], object]:
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def _channel_options() -> list[tuple[str, object]]:
    # No retries: a failed call is counted as an error, never hidden behind a second attempt.
    return [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024)]


async def _drive(worker: int, calls: Sequence[Call], concurrency: int, start_at: float,
                 stop_at: float | None, quota: int | None, warmup: int) -> dict[str, CallStats]:
    channels = {address: grpc.aio.insecure_channel(address, options=_channel_options())
                for address in {c.address for c in calls}}
    stubs = []
    for call in calls:
        channel = channels[call.address]
        factory = _load_factory(call.factory) if call.factory else None
        if call.kind == "unary":
            stub = channel.unary_unary(call.method)
        else:
            stub = channel.stream_unary(call.method)
        metadata = (("authorization", f"Bearer {call.api_key}"),) if call.api_key else None
        stubs.append((call, stub, factory, metadata))
    stats = {call.name: CallStats(call.name) for call in calls}
    weights = [call.weight for call in calls]
    rng = random.Random(worker)
    seq = 0
    remaining = quota

    def next_request(call: Call, factory):
        nonlocal seq
        seq += 1
        if factory is not None:
            return factory(worker, seq)
        return call.requests[seq % len(call.requests)]

    async def one(index: int, record: bool) -> None:
        call, stub, factory, metadata = stubs[index]
        request = next_request(call, factory)
        if call.kind == "stream_unary":
            request = iter(request)
        began = time.perf_counter()
        code = "OK"
        try:
            await stub(request, timeout=call.timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        if not record:
            return
        took = time.perf_counter() - began
        entry = stats[call.name]
        entry.latencies_s.append(took)
        if code == "OK":
            entry.ok += 1
        else:
            entry.errors[code] = entry.errors.get(code, 0) + 1

    # Warm-up opens the connections and the server's caches before the clock starts.
    for i in range(warmup):
        await one(i % len(stubs), record=False)
    delay = start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)

    async def lane() -> None:
        nonlocal remaining
        while True:
            if stop_at is not None and time.monotonic() >= stop_at:
                return
            if remaining is not None:
                if remaining <= 0:
                    return
                remaining -= 1
            index = rng.choices(range(len(stubs)), weights)[0] if len(stubs) > 1 else 0
            await one(index, record=True)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    for channel in channels.values():
        await channel.close()
    return stats


def _worker(worker: int, calls, concurrency, duration, quota, warmup, ready, go, results) -> None:
    try:
        # The parent sets the common start instant once every worker is connected and warm.
        ready.put(worker)
        start_at = go.get()
        stop_at = start_at + duration if duration is not None else None
        stats = asyncio.run(_drive(worker, calls, concurrency, start_at, stop_at, quota, warmup))
        finished = time.monotonic()
        results.put((worker, finished - start_at,
                     {name: (s.ok, s.errors, s.latencies_s.tobytes()) for name, s in stats.items()}))
    except BaseException as exc:
        results.put((worker, None, f"{type(exc).__name__}: {exc}"))
        raise


def run_load(calls: Sequence[Call], *, processes: int = 2, concurrency: int = 8,
             duration: float | None = None, count: int | None = None,
             warmup: int = 20, timeout: float | None = None) -> LoadReport:
    """Drives ``calls`` from ``processes`` separate processes, each keeping ``concurrency``
    calls in flight, for ``duration`` seconds or ``count`` calls in all; merges the results.

    Processes are spawned (never forked), so a parent that runs a gRPC server itself is safe.
    """
    if (duration is None) == (count is None):
        raise ValueError("give exactly one of duration or count")
    calls = list(calls)
    if not calls:
        raise ValueError("no calls to drive")
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    quotas = [None] * processes
    if count is not None:
        quotas = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    workers = [ctx.Process(target=_worker, daemon=True,
                           args=(i, calls, concurrency, duration, quotas[i], warmup, ready, go,
                                 results))
               for i in range(processes)]
    for process in workers:
        process.start()
    limit = timeout or (60.0 + (duration or 0) * 2 + (count or 0) / 50)
    try:
        for _ in workers:
            ready.get(timeout=60)
        # Leave time for every worker's warm-up before the common start.
        start_at = time.monotonic() + 1.0 + warmup * 0.01
        for _ in workers:
            go.put(start_at)
        merged = {call.name: CallStats(call.name) for call in calls}
        elapsed = 0.0
        for _ in workers:
            try:
                worker, took, payload = results.get(timeout=limit)
            except queue.Empty:
                raise TimeoutError(f"load workers did not finish within {limit:.0f} s") from None
            if took is None:
                raise RuntimeError(f"load worker {worker} failed: {payload}")
            elapsed = max(elapsed, took)
            for name, (ok, errors, raw) in payload.items():
                part = CallStats(name, ok, dict(errors), array.array("d"))
                part.latencies_s.frombytes(raw)
                merged[name].merge(part)
    finally:
        for process in workers:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    if duration is not None:
        elapsed = max(min(elapsed, duration + max(c.timeout for c in calls)), 1e-9)
    return LoadReport(merged, elapsed, processes, concurrency)


def format_table(report: LoadReport) -> str:
    """A plain-text table: one row per call and a total."""
    head = f"{'call':34} {'calls':>8} {'err%':>6} {'rps':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
    lines = [head, "-" * len(head)]
    names = list(report.calls) + ([None] if len(report.calls) > 1 else [])
    for name in names:
        s = report.summary(name)
        lines.append(f"{name or 'total':34} {s['calls']:>8} {s['error_rate'] * 100:>6.2f} "
                     f"{s['rps']:>9.1f} {s['p50_ms']:>8.2f} {s['p90_ms']:>8.2f} {s['p99_ms']:>8.2f}")
    return "\n".join(lines)


def _request_from_json(method_path: str, body: str) -> bytes:
    """Serializes a JSON request for ``/package.Service/Method`` using the generated code."""
    from google.protobuf import descriptor_pool, json_format, message_factory
    from grpc_health.v1 import health_pb2  # noqa: F401 - registers the health service

    import marketing

    root = os.path.dirname(marketing.__file__)
    for dirpath, _dirs, files in os.walk(root):
        for file in files:
            if file.endswith("_pb2.py"):
                rel = os.path.relpath(os.path.join(dirpath, file[:-3]), os.path.dirname(root))
                importlib.import_module(rel.replace(os.sep, "."))
    service, _, method = method_path.strip("/").rpartition("/")
    descriptor = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(method)
    message = message_factory.GetMessageClass(descriptor.input_type)()
    json_format.Parse(body, message)
    return message.SerializeToString()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("address", help="host:port of the server")
    parser.add_argument("method", help="full method, e.g. /marketing.profile.v1.ProfileService/GetProfile")
    parser.add_argument("--json", default="{}", help="the request as protobuf JSON")
    parser.add_argument("--api-key", default=os.environ.get("MKT_API_KEY"))
    parser.add_argument("--processes", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight per process")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seconds", type=float, help="run for this long (default 10)")
    group.add_argument("--count", type=int, help="run this many calls in all")
    ns = parser.parse_args(argv)
    request = _request_from_json(ns.method, ns.json)
    call = Call(ns.method.rsplit("/", 1)[-1], ns.address, ns.method, (request,), api_key=ns.api_key)
    duration = ns.seconds if ns.seconds is not None or ns.count is not None else 10.0
    report = run_load([call], processes=ns.processes, concurrency=ns.concurrency,
                      duration=duration, count=ns.count)
    print(f"{ns.processes} processes x {ns.concurrency} in flight, {report.elapsed_s:.1f} s")
    print(format_table(report))
    return 1 if report.total.error_rate > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
