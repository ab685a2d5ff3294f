"""Profile store speed: streamed ingestion and 500-id batch reads beside raw driver baselines."""

from __future__ import annotations

import contextlib
import itertools
import pathlib
import tempfile
import time

from google.protobuf import timestamp_pb2
from sqlalchemy import text

from marketing.common.v1 import common_pb2
from marketing.profile.v1 import profile_service_pb2 as pb
from marketing.profile.v1 import profile_service_pb2_grpc as pb_grpc
from services.common.db import make_engine, migrate
from services.common.profile_tables import events
from services.common.redis_client import EmbeddedRedis
from services.common.testing import (
    channel,
    postgres_schema,
    postgres_url,
    running_server,
    service_settings,
)
from services.profile.config import ProfileConfig
from services.profile.servicer import build

DATA = pathlib.Path(__file__).resolve().parent.parent / "samples" / "cdnow" / "cdnow_master.txt"
SIZES = {
    # purchases streamed, ingestion rounds, profiles read in batches of 500, read rounds
    "quick": {"events": 20_000, "ingest_rounds": 3, "profiles": 2_000, "rounds": 3},
    "full": {"events": 69_659, "ingest_rounds": 3, "profiles": 10_000, "rounds": 5},
}
BATCH = 500
TRAITS_NOTES = {
    "sync": "refreshed in each batch's transaction, the default",
    "background": "refreshed after the answer by the background refresher",
}
DAY_MS = 86_400_000


def _purchases(limit: int) -> list[tuple[str, str, int, float]]:
    """(event id, customer, epoch ms, dollars) of the first ``limit`` CDNOW purchases."""
    import datetime as dt

    out = []
    with DATA.open() as handle:
        next(handle)
        for line_no, line in enumerate(handle):
            if line_no >= limit:
                break
            customer, day, _cds, dollars = line.split()
            ts = dt.datetime.strptime(day, "%Y%m%d").replace(tzinfo=dt.UTC)
            out.append((f"cdnow-{line_no}", customer, int(ts.timestamp() * 1000), float(dollars)))
    return out


def _messages(rows, per_message: int = 5000):
    for start in range(0, len(rows), per_message):
        message = pb.StreamEventsRequest()
        for event_id, customer, ts_ms, dollars in rows[start : start + per_message]:
            message.events.add(
                event_id=event_id, user_id=customer, event_type="purchase",
                timestamp=timestamp_pb2.Timestamp(seconds=ts_ms // 1000), value=dollars,
            )
        yield message


@contextlib.contextmanager
def _server(tmp: pathlib.Path, database_url: str, redis_url: str, stream_traits: str = "sync"):
    settings = service_settings("profile", tmp, redis_url=redis_url, database_url=database_url)
    config = ProfileConfig(rfm_window_days=0, maintenance_interval_s=0, full_recompute_interval_s=0,
                           stream_traits=stream_traits,
                           events_stream_maxlen=10_000)
    with contextlib.ExitStack() as stack:
        _server, address = stack.enter_context(running_server(settings, build(settings, config)))
        yield pb_grpc.ProfileServiceStub(stack.enter_context(channel(address, "admin")))


def _bulk_insert_rate(database_url: str, rows) -> float:
    """Rows per second of a plain executemany INSERT of the same events into the same schema."""
    migrate("profile", database_url)
    engine = make_engine(database_url)
    payload = [
        {"event_id": e, "user_id": int(c), "event_type": "purchase", "ts_ms": ts, "value": v,
         "properties": None}
        for e, c, ts, v in rows
    ]
    try:
        with engine.begin() as conn:
            conn.execute(events.delete())
        started = time.perf_counter()
        with engine.begin() as conn:
            for start in range(0, len(payload), 5000):
                conn.execute(events.insert(), payload[start : start + 5000])
        return len(payload) / (time.perf_counter() - started)
    finally:
        engine.dispose()


def _ingest_once(
    tmp: pathlib.Path, url: str, anchor_url: str, redis_url: str, rows, stream_traits: str
) -> tuple[float, float]:
    """(streamed events/s, bulk INSERT rows/s) of one round on fresh databases."""
    anchor = _bulk_insert_rate(anchor_url, rows)
    with _server(tmp, url, redis_url, stream_traits) as stub:
        # Warm up as a running server is: statements compiled and cached, the publishing
        # script loaded. Other users and ids, so the measured rows still create profiles.
        warm = [(f"warm-{i}", f"{9_000_000 + i}", ts, v) for i, (_e, _c, ts, v) in enumerate(rows[:200])]
        stub.StreamEvents(_messages(warm))
        messages = list(_messages(rows))  # built before the clock starts, as the anchor's rows
        started = time.perf_counter()
        result = stub.StreamEvents(iter(messages))
        elapsed = time.perf_counter() - started
    assert result.accepted_count == len(rows), result
    return len(rows) / elapsed, anchor


def _ingest(
    label: str, tmp: pathlib.Path, databases, redis_url: str, rows, rounds: int,
    stream_traits: str = "sync",
) -> dict:
    """The round with the median ratio among ``rounds``, each on fresh databases.

    Other processes share the machine, so one round can land in a busy moment. Each round
    measures the INSERT and then the stream back to back, and the reported pair comes from
    one round, so figure and anchor always met the same conditions.
    """
    pairs = []
    for round_no in range(rounds):
        with databases(round_no) as (url, anchor_url):
            pairs.append(
                _ingest_once(tmp / f"round-{round_no}", url, anchor_url, redis_url, rows,
                             stream_traits)
            )
    figure, anchor = sorted(pairs, key=lambda pair: pair[0] / pair[1])[len(pairs) // 2]
    return {
        "name": f"profile: StreamEvents ingestion into {label}"
        + ("" if stream_traits == "sync" else f" (PROFILE_STREAM_TRAITS={stream_traits})"),
        "figure": round(figure, 1),
        "anchor": round(anchor, 1),
        "unit": "events/s",
        "ratio": round(figure / anchor, 3),
        "goal": 0.5,
        "higher_is_better": True,
        "notes": f"{len(rows)} CDNOW purchases over gRPC (dedupe, profile creation, Redis "
        f"stream, traits: {TRAITS_NOTES[stream_traits]}) vs plain executemany "
        f"INSERT of the same rows, same driver; the round with the median ratio of {rounds} "
        f"(streamed/INSERT per round: {', '.join(f'{f:.0f}/{a:.0f}' for f, a in pairs)})",
    }


def _raw_reads(database_url: str, names: list[str], rounds: int) -> float:
    """Profiles per second read by the bare DBAPI driver with IN (...) on profiles+attributes."""
    engine = make_engine(database_url)
    ids = [n.split("/", 1)[1] for n in names]
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            mark = "?" if engine.dialect.name == "sqlite" else "%s"
            started = time.perf_counter()
            for _ in range(rounds):
                for start in range(0, len(ids), BATCH):
                    part = ids[start : start + BATCH]
                    holes = ",".join([mark] * len(part))
                    cursor.execute(f"SELECT * FROM profiles WHERE external_id IN ({holes})", part)
                    found = [r[0] for r in cursor.fetchall()]
                    holes = ",".join([mark] * len(found))
                    cursor.execute(f"SELECT * FROM profile_attributes WHERE user_id IN ({holes})", found)
                    cursor.fetchall()
            return rounds * len(ids) / (time.perf_counter() - started)
        finally:
            raw.close()
    finally:
        engine.dispose()


def _reads(label: str, tmp: pathlib.Path, url: str, redis_url: str, count: int, rounds: int) -> dict:
    with _server(tmp, url, redis_url) as stub:
        stub.CreateAttribute(pb.CreateAttributeRequest(attribute=pb.Attribute(
            name="attributes/age", value_type=common_pb2.VALUE_TYPE_NUMBER)))
        stub.CreateAttribute(pb.CreateAttributeRequest(attribute=pb.Attribute(
            name="attributes/city", value_type=common_pb2.VALUE_TYPE_STRING)))
        engine = make_engine(url)
        with engine.begin() as conn:
            # Seeded in bulk: the figure measured is reading, not creating.
            conn.execute(text("DELETE FROM profile_attributes"))
            conn.execute(text("DELETE FROM profiles"))
            conn.execute(
                text("INSERT INTO profiles (external_id, created_ms, updated_ms) VALUES (:e, 1, 1)"),
                [{"e": f"reader-{i:07d}"} for i in range(count)],
            )
            ids = conn.execute(text("SELECT id FROM profiles")).scalars().all()
            conn.execute(
                text("INSERT INTO profile_attributes (user_id, name, num_value, str_value) "
                     "VALUES (:u, :n, :v, :s)"),
                [{"u": i, "n": "age", "v": 20 + i % 50, "s": None} for i in ids]
                + [{"u": i, "n": "city", "v": None, "s": f"city-{i % 97}"} for i in ids],
            )
        engine.dispose()
        names = [f"profiles/reader-{i:07d}" for i in range(count)]
        stub.BatchGetProfiles(pb.BatchGetProfilesRequest(names=names[:BATCH]))  # warm up
        started = time.perf_counter()
        for _ in range(rounds):
            for start in range(0, count, BATCH):
                got = stub.BatchGetProfiles(pb.BatchGetProfilesRequest(names=names[start : start + BATCH]))
                assert len(got.profiles[0].attributes) == 2
        figure = rounds * count / (time.perf_counter() - started)
    anchor = _raw_reads(url, names, rounds)
    return {
        "name": f"profile: BatchGetProfiles (500 ids) from {label}",
        "figure": round(figure, 1),
        "anchor": round(anchor, 1),
        "unit": "profiles/s",
        "ratio": round(figure / anchor, 3),
        "goal": 0.1,
        "higher_is_better": True,
        "notes": f"{count} profiles with 2 attributes, {rounds} rounds, over gRPC vs raw DBAPI "
        "IN (...) on profiles and profile_attributes",
    }


def run(size: str = "quick") -> list[dict]:
    params = SIZES[size]
    rows = _purchases(params["events"])
    results = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = pathlib.Path(tmp_dir)
        embedded = EmbeddedRedis(tmp / "redis", persistent=False)
        redis_url = embedded.start()
        try:
            serial = itertools.count()

            @contextlib.contextmanager
            def sqlite_files(_round_no: int):
                n = next(serial)  # fresh files for every round of every mode
                yield (f"sqlite:///{tmp / f'ingest-{n}.db'}", f"sqlite:///{tmp / f'anchor-{n}.db'}")

            for traits_mode in ("sync", "background"):
                results.append(_ingest("SQLite", tmp / f"a-{traits_mode}", sqlite_files,
                                       redis_url, rows, params["ingest_rounds"], traits_mode))
            results.append(_reads("SQLite", tmp / "b", f"sqlite:///{tmp / 'reads.db'}", redis_url,
                                  params["profiles"], params["rounds"]))
            if postgres_url() is not None:
                @contextlib.contextmanager
                def pg_schemas(_round_no: int):
                    with postgres_schema("bench") as url, postgres_schema("bench") as anchor_url:
                        yield url, anchor_url

                for traits_mode in ("sync", "background"):
                    results.append(_ingest("PostgreSQL", tmp / f"c-{traits_mode}", pg_schemas,
                                           redis_url, rows, params["ingest_rounds"], traits_mode))
                with postgres_schema("bench") as url:
                    results.append(_reads("PostgreSQL", tmp / "d", url, redis_url,
                                          params["profiles"], params["rounds"]))
        finally:
            embedded.stop()
    return results


if __name__ == "__main__":
    import json
    import sys

    for row in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(json.dumps(row))
