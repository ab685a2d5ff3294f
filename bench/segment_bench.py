"""Segment benchmarks: compiled rules vs hand-written SQL, snapshot intersection, live updates."""

from __future__ import annotations

import json
import pathlib
import random
import tempfile
import time
import uuid

import numpy as np
import sqlalchemy as sa
from pyroaring import BitMap

from services.common import profile_tables as pt
from services.segment.catalog import load_catalog
from services.segment.compiler import Compiler
from services.segment.store_setup import read_path_metadata
from services.segment.text import parse_rule

SIZES = {"quick": (20_000, 200_000), "full": (1_000_000, 10_000_000)}
NOW = 1_717_200_000_000  # 2024-06-01T00:00:00Z
DAY = 86_400_000
SEED = 20240601
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

EVENT_TYPES = ["view_page", "visit", "open_app", "add_to_cart", "post_note", "purchase",
               "order", "register"]
EVENT_WEIGHTS = [0.35, 0.2, 0.15, 0.12, 0.05, 0.05, 0.04, 0.04]
TOPICS = ["anti-ageing", "skin-care", "make-up", "hair", "perfume", "nails", "spa", "diet"]

FIELD_RULES = [
    ("age30_no_antiageing_views",
     'age >= 30 and count(view_page where topic = "anti-ageing", 30d) == 0'),
    ("silver_visit7d_cart90d",
     'member_level = "silver" and count(visit, 7d) >= 1 and sum(add_to_cart.quantity, 90d) > 3'),
    ("few_notes_points_active_days",
     "count(post_note) < 5 and points > 100 and active_days(any, 30d) between 8 and 10"),
    ("active7d_no_purchase", "count(any, 7d) >= 1 and count(purchase, 7d) == 0"),
    ("registered_never_ordered", "count(register) >= 1 and count(order) == 0"),
]


def dialect_bits(kind: str) -> dict[str, str]:
    """The engine-specific spellings the hand-written queries need."""
    if kind == "sqlite":
        return {"topic": "json_extract(properties, '$.topic')",
                "qty": "CAST(json_extract(properties, '$.quantity') AS REAL)",
                "day": "ts_ms / 86400000"}
    if kind == "duckdb":
        return {"topic": "(properties ->> 'topic')",
                "qty": "CAST(properties ->> 'quantity' AS DOUBLE)", "day": "ts_ms // 86400000"}
    return {"topic": "(properties ->> 'topic')",
            "qty": "CAST(properties ->> 'quantity' AS DOUBLE PRECISION)",
            "day": "ts_ms / 86400000"}


def hand_written(kind: str) -> dict[str, list[str]]:
    """Hand-written counts for each field rule; the best of the variants is the anchor."""
    b = dialect_bits(kind)
    w = "ts_ms <= :now"
    return {
        "age30_no_antiageing_views": [
            f"""SELECT count(*) FROM profile_attributes a WHERE a.name = 'age'
                AND a.num_value >= 30 AND a.user_id NOT IN (
                  SELECT user_id FROM events WHERE event_type = 'view_page'
                  AND ts_ms > :d30 AND {w} AND {b['topic']} = 'anti-ageing')""",
            f"""SELECT count(*) FROM profile_attributes a WHERE a.name = 'age'
                AND a.num_value >= 30 AND NOT EXISTS (
                  SELECT 1 FROM events e WHERE e.user_id = a.user_id
                  AND e.event_type = 'view_page' AND e.ts_ms > :d30 AND e.ts_ms <= :now
                  AND {b['topic'].replace('properties', 'e.properties')} = 'anti-ageing')""",
        ],
        "silver_visit7d_cart90d": [
            f"""SELECT count(*) FROM profile_attributes a WHERE a.name = 'member_level'
                AND a.str_value = 'silver'
                AND a.user_id IN (SELECT user_id FROM events WHERE event_type = 'visit'
                                  AND ts_ms > :d7 AND {w})
                AND a.user_id IN (SELECT user_id FROM events WHERE event_type = 'add_to_cart'
                                  AND ts_ms > :d90 AND {w} GROUP BY user_id
                                  HAVING sum({b['qty']}) > 3)""",
        ],
        "few_notes_points_active_days": [
            f"""SELECT count(*) FROM profile_attributes a WHERE a.name = 'points'
                AND a.num_value > 100
                AND a.user_id NOT IN (SELECT user_id FROM events WHERE event_type = 'post_note'
                                      AND {w} GROUP BY user_id HAVING count(*) >= 5)
                AND a.user_id IN (SELECT user_id FROM events WHERE ts_ms > :d30 AND {w}
                                  GROUP BY user_id
                                  HAVING count(DISTINCT {b['day']}) BETWEEN 8 AND 10)""",
        ],
        "active7d_no_purchase": [
            f"""SELECT count(*) FROM (SELECT DISTINCT user_id FROM events
                WHERE ts_ms > :d7 AND {w}) a WHERE a.user_id NOT IN (
                  SELECT user_id FROM events WHERE event_type = 'purchase'
                  AND ts_ms > :d7 AND {w})""",
        ],
        "registered_never_ordered": [
            f"""SELECT count(*) FROM (SELECT DISTINCT user_id FROM events
                WHERE event_type = 'register' AND {w}) r WHERE r.user_id NOT IN (
                  SELECT user_id FROM events WHERE event_type = 'order' AND {w})""",
        ],
    }


def generate(users: int, events: int) -> dict:
    """Seeded, reproducible users and events as column arrays."""
    rng = np.random.default_rng(SEED)
    data = {
        "age": rng.integers(18, 71, users),
        "level": rng.choice(["bronze", "silver", "gold"], users, p=[0.5, 0.3, 0.2]),
        "points": rng.integers(0, 301, users),
        "user_id": rng.integers(1, users + 1, events),
        "ts_ms": NOW - rng.integers(1, 180 * DAY, events),
        "type_index": rng.choice(len(EVENT_TYPES), events, p=EVENT_WEIGHTS),
        "topic": rng.integers(0, len(TOPICS), events),
        "qty": rng.integers(1, 6, events),
        "value": np.round(rng.uniform(5, 200, events), 2),
    }
    types = np.array(EVENT_TYPES)[data["type_index"]]
    topic_json = np.array([json.dumps({"topic": t}) for t in TOPICS])
    qty_json = np.array([json.dumps({"quantity": int(q)}) for q in range(6)])
    props = np.full(events, None, dtype=object)
    is_view = types == "view_page"
    is_cart = types == "add_to_cart"
    props[is_view] = topic_json[data["topic"][is_view]]
    props[is_cart] = qty_json[data["qty"][is_cart]]
    values = np.where(np.isin(types, ["purchase", "order"]), data["value"], np.nan)
    data.update(types=types, props=props, values=values)
    return data


def rows_attributes(data: dict):
    users = len(data["age"])
    for i in range(users):
        uid = i + 1
        yield (uid, "age", None, float(data["age"][i]))
        yield (uid, "member_level", str(data["level"][i]), None)
        yield (uid, "points", None, float(data["points"][i]))


def load(engine: sa.Engine, kind: str, data: dict) -> None:
    """Bulk-loads the generated store, then builds the read path's indexes."""
    users, events = len(data["age"]), len(data["user_id"])
    metadata = read_path_metadata() if kind == "duckdb" else pt.metadata
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            table.create(connection)
    catalog = [dict(name=n, value_type=t, description="", pii=False, created_ms=0)
               for n, t in (("age", "number"), ("member_level", "string"), ("points", "number"))]
    with engine.begin() as connection:
        connection.execute(pt.attribute_catalog.insert(), catalog)
    if kind == "duckdb":
        import pandas as pd

        raw = engine.raw_connection()
        try:
            con = raw.driver_connection
            profiles = pd.DataFrame({"id": np.arange(1, users + 1),
                                     "external_id": [f"u{i}" for i in range(1, users + 1)]})
            con.register("p_df", profiles)
            con.execute("INSERT INTO profiles (id, external_id, created_ms, updated_ms, "
                        "time_zone, notifications_disabled, app_uninstalled) SELECT id, "
                        "external_id, 0, 0, 'UTC', false, false FROM p_df")
            attrs = pd.DataFrame(list(rows_attributes(data)),
                                 columns=["user_id", "name", "str_value", "num_value"])
            con.register("a_df", attrs)
            con.execute("INSERT INTO profile_attributes (user_id, name, str_value, num_value) "
                        "SELECT * FROM a_df")
            ev = pd.DataFrame({
                "id": np.arange(1, events + 1), "user_id": data["user_id"],
                "event_type": data["types"], "ts_ms": data["ts_ms"],
                "value": data["values"], "properties": data["props"]})
            con.register("e_df", ev)
            con.execute("INSERT INTO events (id, event_id, user_id, event_type, ts_ms, value, "
                        "properties) SELECT id, 'e' || id, user_id, event_type, ts_ms, "
                        "CASE WHEN isnan(value) THEN NULL ELSE value END, "
                        "CAST(properties AS JSON) FROM e_df")
        finally:
            raw.close()
        return
    profile_rows = [(i, f"u{i}", 0, 0, "UTC", False, False) for i in range(1, users + 1)]
    event_rows = (
        (i + 1, f"e{i + 1}", int(data["user_id"][i]), str(data["types"][i]),
         int(data["ts_ms"][i]), None if np.isnan(data["values"][i]) else float(data["values"][i]),
         data["props"][i])
        for i in range(events)
    )
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if kind == "sqlite":
            cursor.executemany("INSERT INTO profiles (id, external_id, created_ms, updated_ms, "
                               "time_zone, notifications_disabled, app_uninstalled) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", profile_rows)
            cursor.executemany("INSERT INTO profile_attributes (user_id, name, str_value, "
                               "num_value) VALUES (?, ?, ?, ?)", list(rows_attributes(data)))
            cursor.executemany("INSERT INTO events (id, event_id, user_id, event_type, ts_ms, "
                               "value, properties) VALUES (?, ?, ?, ?, ?, ?, ?)", event_rows)
            cursor.execute("ANALYZE")
        else:
            with cursor.copy("COPY profiles (id, external_id, created_ms, updated_ms, time_zone, "
                             "notifications_disabled, app_uninstalled) FROM STDIN") as copy:
                for row in profile_rows:
                    copy.write_row(row)
            with cursor.copy("COPY profile_attributes (user_id, name, str_value, num_value) "
                             "FROM STDIN") as copy:
                for row in rows_attributes(data):
                    copy.write_row(row)
            with cursor.copy("COPY events (id, event_id, user_id, event_type, ts_ms, value, "
                             "properties) FROM STDIN") as copy:
                for row in event_rows:
                    copy.write_row(row)
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def best_time(connection, statement, params=None, repeats: int = 3) -> tuple[float, int]:
    best, count = float("inf"), -1
    for _ in range(repeats):
        started = time.perf_counter()
        count = int(connection.execute(statement, params or {}).scalar_one())
        best = min(best, time.perf_counter() - started)
    return best, count


def bench_engine(kind: str, engine: sa.Engine, repeats: int) -> list[dict]:
    catalog = load_catalog(engine)
    compiler = Compiler(catalog, NOW)
    params = {"now": NOW, "d7": NOW - 7 * DAY, "d30": NOW - 30 * DAY, "d90": NOW - 90 * DAY}
    hand = hand_written(kind)
    out = []
    with engine.connect() as connection:
        for name, text in FIELD_RULES:
            statement = compiler.count_statement(parse_rule(text))
            best_time(connection, statement, repeats=1)  # warm the cache
            compiled, compiled_count = best_time(connection, statement, repeats=repeats)
            anchors = [best_time(connection, sa.text(sql), params, repeats)
                       for sql in hand[name]]
            anchor, anchor_count = min(anchors)
            counts = {c for _, c in anchors} | {compiled_count}
            out.append({
                "name": f"segment.rule.{name}.{kind}", "figure": compiled, "anchor": anchor,
                "unit": "s", "ratio": compiled / anchor if anchor else float("inf"),
                "goal": 1.2, "higher_is_better": False,
                "notes": (f"compiled count {compiled_count}, hand-written count {anchor_count}"
                          + ("" if len(counts) == 1 else " (COUNTS DIFFER)")
                          + f"; rule: {text}"),
            })
    return out


def bench_intersection(tmp: pathlib.Path) -> dict:
    """Two 500,000-member snapshots intersected through the service vs pyroaring alone."""
    from services.common.db import migrate
    from services.segment.catalog import CatalogCache
    from services.segment.core import SegmentCore

    rng = random.Random(SEED)
    universe = 2_000_000
    a = BitMap(rng.sample(range(1, universe), 500_000))
    b = BitMap(rng.sample(range(1, universe), 500_000))
    url = f"sqlite:///{tmp}/segment_bench.db"
    migrate("segment", url)
    engine = sa.create_engine(url)
    core = SegmentCore(engine, engine, CatalogCache(engine, 3600, ()))
    with engine.begin() as connection:
        from services.segment.tables import snapshots

        for version, members in ((1, a), (2, b)):
            connection.execute(snapshots.insert().values(
                segment_id=1, version=version, created_ms=NOW, as_of_ms=NOW,
                size=len(members), rule_text="x", trigger="manual", duration_ms=0,
                members=members.serialize()))

    def service() -> int:
        _, left = core.bitmap(1, 1)
        _, right = core.bitmap(1, 2)
        return len(left & right)

    def alone() -> int:
        return len(a & b)

    service()  # the first call decodes the stored bitmaps; steady state is measured
    timings = {}
    for label, fn in (("service", service), ("pyroaring", alone)):
        best = float("inf")
        for _ in range(20):
            started = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - started)
        timings[label] = best
    engine.dispose()
    speed = timings["pyroaring"] / timings["service"]
    return {"name": "segment.snapshot.intersect_500k", "figure": timings["service"],
            "anchor": timings["pyroaring"], "unit": "s", "ratio": speed, "goal": 0.5,
            "higher_is_better": True,
            "notes": f"ratio = pyroaring time / service time (speed relative to pyroaring); "
                     f"|A & B| = {service()}"}


def bench_realtime(tmp: pathlib.Path, engine: sa.Engine, users: int) -> dict:
    """Membership updates per second: batched re-checks vs one statement per user."""
    import redis as redis_lib

    from services.common.db import migrate
    from services.common.redis_client import EmbeddedRedis
    from services.segment.catalog import CatalogCache
    from services.segment.core import SegmentCore
    from services.segment.realtime import EVENTS_STREAM, RealtimeMembership

    server = EmbeddedRedis(tmp / "redis", persistent=False)
    client = redis_lib.Redis.from_url(server.start())
    try:
        url = f"sqlite:///{tmp}/segment_rt.db"
        migrate("segment", url)
        core = SegmentCore(sa.create_engine(url), engine, CatalogCache(engine, 3600),
                           clock=lambda: NOW / 1000)
        segment = core.create("Active, no purchase", parse_rule(FIELD_RULES[3][1]),
                              realtime=True)
        rt = RealtimeMembership(core, client, batch_size=500, segments_ttl_s=3600)
        rt.ensure_group()
        rt.initialize(segment.id, NOW)
        rng = random.Random(SEED)
        n = 5_000
        pipe = client.pipeline()
        for i in range(n):
            pipe.xadd(EVENTS_STREAM, {"event_id": f"b{i}", "user_id": rng.randint(1, users),
                                      "event_type": "view_page", "ts_ms": NOW,
                                      "properties": "{}"})
        pipe.execute()
        started = time.perf_counter()
        done = 0
        while done < n:
            done += rt.poll_once(block_ms=10)
        batched = n / (time.perf_counter() - started)
        # The anchor: the same re-checks, one statement per user.
        rule = core.get(segment.id).rule
        sample = [rng.randint(1, users) for _ in range(300)]
        started = time.perf_counter()
        with engine.connect() as connection:
            for uid in sample:
                connection.execute(core.compiler(NOW, [uid]).statement(rule)).all()
        single = len(sample) / (time.perf_counter() - started)
    finally:
        client.close()
        server.stop()
    return {"name": "segment.realtime.updates_per_s", "figure": batched, "anchor": single,
            "unit": "events/s", "ratio": batched / single, "goal": 2.0,
            "higher_is_better": True,
            "notes": "batches of 500 events: one SQL per segment per batch, pipelined Redis; "
                     "anchor re-checks one user per statement (SQLite)"}


def run(size: str) -> list[dict]:
    users, events = SIZES[size]
    repeats = 3 if size == "quick" else 2
    data = generate(users, events)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        sqlite = sa.create_engine(f"sqlite:///{tmp}/profile.db")
        load(sqlite, "sqlite", data)
        results += bench_engine("sqlite", sqlite, repeats)
        duck = sa.create_engine(f"duckdb:///{tmp}/profile.duckdb")
        load(duck, "duckdb", data)
        results += bench_engine("duckdb", duck, repeats)
        duck.dispose()
        try:
            probe = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2})
            probe.connect().close()
        except Exception:  # noqa: BLE001 - PostgreSQL is optional
            probe = None
        if probe is not None:
            schema = f"segbench_{uuid.uuid4().hex[:8]}"
            with probe.begin() as connection:
                connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            pg = sa.create_engine(PG_URL, connect_args={"options": f"-c search_path={schema}"})
            try:
                load(pg, "postgresql", data)
                results += bench_engine("postgresql", pg, repeats)
            finally:
                pg.dispose()
                with probe.begin() as connection:
                    connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                probe.dispose()
        results.append(bench_intersection(tmp))
        results.append(bench_realtime(tmp, sqlite, users))
        sqlite.dispose()
    return results


if __name__ == "__main__":
    import sys

    for item in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
        print(f"{item['name']:55s} {item['figure']:.4f} {item['unit']:8s} anchor "
              f"{item['anchor']:.4f} ratio {item['ratio']:.2f} (goal {item['goal']}) "
              f"{item['notes']}")
