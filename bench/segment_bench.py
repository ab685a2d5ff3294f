"""Segment benchmarks: compiled rules vs hand-written SQL, snapshot intersection, live updates."""

from __future__ import annotations

import functools
import json
import pathlib
import random
import tempfile
import time
import uuid

import numpy as np
import sqlalchemy as sa
from pyroaring import BitMap
from sqlalchemy.schema import CreateTable

from services.common import profile_tables as pt
from services.segment.catalog import load_catalog
from services.segment.prepared import PreparedRules
from services.segment.store_setup import read_path_metadata
from services.segment.text import parse_rule

SIZES = {"quick": (20_000, 200_000), "full": (1_000_000, 10_000_000)}
NOW = 1_717_200_000_000  # 2024-06-01T00:00:00Z
DAY = 86_400_000
SEED = 20240601
# Spread of per-user activity (log-normal sigma); see generate().
ACTIVITY_SIGMA = 1.2
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
    """Hand-written counts for each field rule; the best of the variants is the anchor.

    Each rule is written in every shape that engines run well: driven from the selective
    rows with IN / NOT IN, with (NOT) EXISTS, and as INTERSECT / EXCEPT of id sets.
    PostgreSQL gets no NOT IN variant: beyond work_mem it runs as a nested loop, the worst
    shape there, not a contender for the best.
    """
    b = dialect_bits(kind)
    w = "ts_ms <= :now"
    x_topic = b["topic"].replace("properties", "x.properties")
    age = "SELECT user_id FROM profile_attributes WHERE name = 'age' AND num_value >= 30"
    views = (f"SELECT user_id FROM events WHERE event_type = 'view_page' AND ts_ms > :d30 "
             f"AND {w} AND {b['topic']} = 'anti-ageing'")
    views_of = (f"SELECT 1 FROM events x WHERE x.user_id = {{}} AND x.event_type = 'view_page' "
                f"AND x.ts_ms > :d30 AND x.ts_ms <= :now AND {x_topic} = 'anti-ageing'")
    silver = ("SELECT user_id FROM profile_attributes WHERE name = 'member_level' "
              "AND str_value = 'silver'")
    visits = f"SELECT user_id FROM events WHERE event_type = 'visit' AND ts_ms > :d7 AND {w}"
    visits_of = ("SELECT 1 FROM events x WHERE x.user_id = {} AND x.event_type = 'visit' "
                 "AND x.ts_ms > :d7 AND x.ts_ms <= :now")
    cart = (f"SELECT user_id FROM events WHERE event_type = 'add_to_cart' AND ts_ms > :d90 "
            f"AND {w} GROUP BY user_id HAVING sum({b['qty']}) > 3")
    points = "SELECT user_id FROM profile_attributes WHERE name = 'points' AND num_value > 100"
    notes = (f"SELECT user_id FROM events WHERE event_type = 'post_note' AND {w} "
             "GROUP BY user_id HAVING count(*) >= 5")
    active = (f"SELECT user_id FROM events WHERE ts_ms > :d30 AND {w} GROUP BY user_id "
              f"HAVING count(DISTINCT {b['day']}) BETWEEN 8 AND 10")
    recent = f"SELECT user_id FROM events WHERE ts_ms > :d7 AND {w}"
    purchases = (f"SELECT user_id FROM events WHERE event_type = 'purchase' AND ts_ms > :d7 "
                 f"AND {w}")
    purchases_of = ("SELECT 1 FROM events x WHERE x.user_id = {} AND x.event_type = 'purchase' "
                    "AND x.ts_ms > :d7 AND x.ts_ms <= :now")
    registered = f"SELECT user_id FROM events WHERE event_type = 'register' AND {w}"
    orders = f"SELECT user_id FROM events WHERE event_type = 'order' AND {w}"
    orders_of = ("SELECT 1 FROM events x WHERE x.user_id = {} AND x.event_type = 'order' "
                 "AND x.ts_ms <= :now")
    not_in = kind != "postgresql"
    out = {
        "age30_no_antiageing_views": [
            f"SELECT count(*) FROM ({age}) a WHERE NOT EXISTS ({views_of.format('a.user_id')})",
            f"SELECT count(*) FROM ({age} EXCEPT {views}) s",
        ],
        "silver_visit7d_cart90d": [
            (f"SELECT count(*) FROM ({silver}) a WHERE a.user_id IN ({visits}) "
            f"AND a.user_id IN ({cart})"),
            (f"SELECT count(*) FROM ({silver}) a WHERE EXISTS ({visits_of.format('a.user_id')}) "
            f"AND a.user_id IN ({cart})"),
            (f"SELECT count(*) FROM (SELECT DISTINCT user_id FROM ({visits}) v) v "
            f"WHERE v.user_id IN ({silver}) AND v.user_id IN ({cart})"),
            f"SELECT count(*) FROM ({silver} INTERSECT {visits} INTERSECT {cart}) s",
        ],
        "few_notes_points_active_days": [
            (f"SELECT count(*) FROM ({active}) a WHERE a.user_id IN ({points}) "
            f"AND NOT EXISTS (SELECT 1 FROM ({notes}) n WHERE n.user_id = a.user_id)"),
            f"SELECT count(*) FROM ({points} INTERSECT {active} EXCEPT {notes}) s",
        ],
        "active7d_no_purchase": [
            (f"SELECT count(*) FROM (SELECT DISTINCT user_id FROM ({recent}) r) r "
            f"WHERE NOT EXISTS ({purchases_of.format('r.user_id')})"),
            f"SELECT count(*) FROM ({recent} EXCEPT {purchases}) s",
        ],
        "registered_never_ordered": [
            (f"SELECT count(*) FROM (SELECT DISTINCT user_id FROM ({registered}) r) r "
            f"WHERE NOT EXISTS ({orders_of.format('r.user_id')})"),
            f"SELECT count(*) FROM ({registered} EXCEPT {orders}) s",
        ],
    }
    if not_in:
        out["age30_no_antiageing_views"].append(
            f"SELECT count(*) FROM ({age}) a WHERE a.user_id NOT IN ({views})")
        out["few_notes_points_active_days"] += [
            (f"SELECT count(*) FROM ({points}) a WHERE a.user_id NOT IN ({notes}) "
            f"AND a.user_id IN ({active})"),
            (f"SELECT count(*) FROM ({active}) a WHERE a.user_id NOT IN ({notes}) "
            f"AND a.user_id IN ({points})"),
        ]
        out["active7d_no_purchase"].append(
            f"SELECT count(*) FROM (SELECT DISTINCT user_id FROM ({recent}) r) r "
            f"WHERE r.user_id NOT IN ({purchases})")
        out["registered_never_ordered"].append(
            f"SELECT count(*) FROM (SELECT DISTINCT user_id FROM ({registered}) r) r "
            f"WHERE r.user_id NOT IN ({orders})")
    return out


def generate(users: int, events: int) -> dict:
    """Seeded, reproducible users and events as column arrays.

    Activity is skewed the way real audiences are: each user's share of the events follows a
    log-normal law, so a few percent of users are active on many distinct days while most
    have a handful of events. Uniformly spread events would leave almost nobody with 8 to 10
    active days in a month, and the third field rule would select a trivial audience.
    """
    rng = np.random.default_rng(SEED)
    weights = rng.lognormal(0.0, ACTIVITY_SIGMA, users)
    data = {
        "age": rng.integers(18, 71, users),
        "level": rng.choice(["bronze", "silver", "gold"], users, p=[0.5, 0.3, 0.2]),
        "points": rng.integers(0, 301, users),
        "user_id": rng.choice(users, events, p=weights / weights.sum()) + 1,
        "ts_ms": NOW - rng.integers(1, 180 * DAY, events),
        "type_index": rng.choice(len(EVENT_TYPES), events, p=EVENT_WEIGHTS),
        "topic": rng.integers(0, len(TOPICS), events),
        "qty": rng.integers(1, 6, events),
        "value": np.round(rng.uniform(5, 200, events), 2),
    }
    types = np.array(EVENT_TYPES, dtype=object)[data["type_index"]]
    topic_json = np.array([json.dumps({"topic": t}) for t in TOPICS], dtype=object)
    qty_json = np.array([json.dumps({"quantity": int(q)}) for q in range(6)], dtype=object)
    props = np.full(events, None, dtype=object)
    is_view = types == "view_page"
    is_cart = types == "add_to_cart"
    props[is_view] = topic_json[data["topic"][is_view]]
    props[is_cart] = qty_json[data["qty"][is_cart]]
    values = np.where(np.isin(types, ["purchase", "order"]), data["value"], np.nan)
    data.update(types=types, props=props, values=values)
    return data


def frames(data: dict):
    """The generated store as three data frames (profiles, attributes, events)."""
    import pandas as pd

    users, events = len(data["age"]), len(data["user_id"])
    ids = np.arange(1, users + 1)
    profiles = pd.DataFrame({"id": ids, "external_id": [f"u{i}" for i in range(1, users + 1)]})
    attributes = pd.DataFrame({
        "user_id": np.concatenate([ids, ids, ids]),
        "name": ["age"] * users + ["member_level"] * users + ["points"] * users,
        "str_value": [None] * users + data["level"].tolist() + [None] * users,
        "num_value": np.concatenate([data["age"].astype(float), np.full(users, np.nan),
                                     data["points"].astype(float)]),
    })
    values = data["values"]
    event_frame = pd.DataFrame({
        "id": np.arange(1, events + 1), "user_id": data["user_id"],
        "event_type": data["types"], "ts_ms": data["ts_ms"],
        "value": pd.array(np.where(np.isnan(values), None, values), dtype="Float64"),
        "properties": data["props"]})
    return profiles, attributes, event_frame


def nullable(values) -> list:
    """Floats with NaN (no value) as None, for drivers that bind None as NULL."""
    array = np.asarray(values, dtype=float)
    return np.where(np.isnan(array), None, array).tolist()


PROFILE_COLUMNS = ("id, external_id, created_ms, updated_ms, time_zone, notifications_disabled, "
                   "app_uninstalled")
PROFILE_SELECT = "id, external_id, 0, 0, 'UTC', false, false"
EVENT_COLUMNS = "id, event_id, user_id, event_type, ts_ms, value, properties"
EVENT_SELECT = ("id, 'e' || id, user_id, event_type, ts_ms, value, properties")
CHUNK = 500_000


def load(engine: sa.Engine, kind: str, data: dict, tmp: pathlib.Path) -> None:
    """Bulk-loads the generated store, then builds the read path's indexes and statistics.

    Tables are created without their secondary indexes, which are built once after the rows
    are in (as any bulk load does): DuckDB inserts from data frames, PostgreSQL copies CSV
    written by DuckDB, SQLite runs executemany over large chunks in one transaction.
    """
    import duckdb

    metadata = read_path_metadata() if kind == "duckdb" else pt.metadata
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            connection.execute(CreateTable(table))
    catalog = [{"name": n, "value_type": t, "description": "", "pii": False, "created_ms": 0}
               for n, t in (("age", "number"), ("member_level", "string"), ("points", "number"))]
    with engine.begin() as connection:
        connection.execute(pt.attribute_catalog.insert(), catalog)
    profiles, attributes, event_frame = frames(data)
    raw = engine.raw_connection()
    try:
        if kind == "duckdb":
            con = raw.driver_connection
            con.register("p_df", profiles)
            con.register("a_df", attributes)
            con.register("e_df", event_frame)
            con.execute(f"INSERT INTO profiles ({PROFILE_COLUMNS}) SELECT {PROFILE_SELECT} "
                        "FROM p_df")
            con.execute("INSERT INTO profile_attributes (user_id, name, str_value, num_value) "
                        "SELECT * FROM a_df")
            con.execute(f"INSERT INTO events ({EVENT_COLUMNS}) SELECT id, 'e' || id, user_id, "
                        "event_type, ts_ms, value, CAST(properties AS JSON) FROM e_df")
            for name in ("p_df", "a_df", "e_df"):
                con.unregister(name)
        elif kind == "postgresql":
            scratch = duckdb.connect()
            scratch.register("p_df", profiles)
            scratch.register("a_df", attributes)
            scratch.register("e_df", event_frame)
            cursor = raw.cursor()
            for table, columns, query in (
                ("profiles", PROFILE_COLUMNS, f"SELECT {PROFILE_SELECT} FROM p_df"),
                ("profile_attributes", "user_id, name, str_value, num_value",
                 "SELECT * FROM a_df"),
                ("events", EVENT_COLUMNS, f"SELECT {EVENT_SELECT} FROM e_df"),
            ):
                path = tmp / f"{table}.csv"
                scratch.execute(f"COPY ({query}) TO '{path}' (HEADER false)")
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy, \
                        open(path, "rb") as source:
                    while block := source.read(1 << 20):
                        copy.write(block)
                path.unlink()
            scratch.close()
        else:
            cursor = raw.cursor()
            cursor.execute("PRAGMA journal_mode=OFF")
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("BEGIN")
            cursor.executemany(
                f"INSERT INTO profiles ({PROFILE_COLUMNS}) VALUES (?, ?, 0, 0, 'UTC', 0, 0)",
                zip(profiles["id"].tolist(), profiles["external_id"].tolist()))
            cursor.executemany(
                "INSERT INTO profile_attributes (user_id, name, str_value, num_value) "
                "VALUES (?, ?, ?, ?)",
                zip(attributes["user_id"].tolist(), attributes["name"].tolist(),
                    attributes["str_value"].tolist(),
                    nullable(attributes["num_value"])))
            columns = [data["user_id"], data["types"], data["ts_ms"], data["values"],
                       data["props"]]
            for start in range(0, len(data["user_id"]), CHUNK):
                user_id, types, ts, values, props = (c[start:start + CHUNK].tolist()
                                                      for c in columns)
                ids = range(start + 1, start + 1 + len(user_id))
                cursor.executemany(
                    f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    zip(ids, [f"e{i}" for i in ids], user_id, types, ts,
                        nullable(np.asarray(values, dtype=float)), props))
            cursor.execute("COMMIT")
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as connection:
        if kind == "postgresql":
            connection.execute(sa.text("SET maintenance_work_mem = '1GB'"))
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(connection)
    if kind == "postgresql":
        # VACUUM sets the visibility map, as autovacuum would on a live store, so both the
        # compiled and the hand-written queries may use index-only scans.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))
    elif kind == "sqlite":
        with engine.begin() as connection:
            connection.execute(sa.text("ANALYZE"))
    else:
        with engine.begin() as connection:
            connection.execute(sa.text("CHECKPOINT"))


def best_time(count, repeats: int = 3) -> tuple[float, int]:
    """The best of ``repeats`` calls of ``count()`` and the count it returned."""
    best, result = float("inf"), -1
    for _ in range(repeats):
        started = time.perf_counter()
        result = int(count())
        best = min(best, time.perf_counter() - started)
    return best, result


def hand_count(connection, query, params) -> int:
    return connection.execute(query, params).scalar_one()


def bench_engine(kind: str, engine: sa.Engine, repeats: int) -> list[dict]:
    """Each field rule counted by the service (``PreparedRules.count``, what an estimate
    runs on its connection: the rule's kept statement with the instant bound) against the
    hand-written SQL run through SQLAlchemy on the same connection."""
    catalog = load_catalog(engine)
    prepared = PreparedRules(engine.dialect)
    params = {"now": NOW, "d7": NOW - 7 * DAY, "d30": NOW - 30 * DAY, "d90": NOW - 90 * DAY}
    hand = hand_written(kind)
    out = []
    with engine.connect() as connection:
        for name, text in FIELD_RULES:
            rule = parse_rule(text)
            service = functools.partial(prepared.count, connection, rule, catalog, NOW)
            shapes = [functools.partial(hand_count, connection, sa.text(sql), params)
                      for sql in hand[name]]
            # The first evaluation builds and compiles the rule; later ones are measured.
            best_time(service, repeats=1)
            # Rounds interleave the service with the hand-written shapes, the service timed
            # right before each shape, so a burst of load on the machine hits them alike and
            # the service's best is taken over as many runs as the best of all the shapes
            # (a minimum over more noisy runs is lower by itself).
            compiled, compiled_count = float("inf"), -1
            anchors = [(float("inf"), -1)] * len(shapes)
            for _ in range(repeats):
                for index, shape in enumerate(shapes):
                    compiled, compiled_count = min((compiled, compiled_count),
                                                   best_time(service, 1))
                    anchors[index] = min(anchors[index], best_time(shape, 1))
            anchor, anchor_count = min(anchors)
            counts = {c for _, c in anchors} | {compiled_count}
            out.append({
                "name": f"segment.rule.{name}.{kind}", "figure": compiled, "anchor": anchor,
                "unit": "s", "ratio": compiled / anchor if anchor else float("inf"),
                "goal": 1.2, "higher_is_better": False,
                "notes": (f"compiled count {compiled_count}, hand-written count {anchor_count}"
                          + ("" if len(counts) == 1 else " (COUNTS DIFFER)")
                          + f"; best of {len(anchors)} hand-written shapes; rule: {text}"),
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
    """Membership updates per second through the service's consumer (``poll_once``: Redis
    reads, the batch's re-check on the segment's kept statement, pipelined changes) vs the
    same re-checks one user per statement."""
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
        # The segment is re-checked in every batch (not skipped as not real-time).
        assert [sid for sid, _ in rt.segments()] == [segment.id]
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
        # The anchor: the same re-checks, one user per statement (the same kept statement).
        rule = core.get(segment.id).rule
        sample = [rng.randint(1, users) for _ in range(300)]
        started = time.perf_counter()
        for uid in sample:
            core.among(rule, [uid], NOW)
        single = len(sample) / (time.perf_counter() - started)
    finally:
        client.close()
        server.stop()
    return {"name": "segment.realtime.updates_per_s", "figure": batched, "anchor": single,
            "unit": "events/s", "ratio": batched / single, "goal": 2.0,
            "higher_is_better": True,
            "notes": "batches of 500 events through the consumer: one kept statement per "
                     "segment per batch (ids bound as one parameter), pipelined Redis; anchor "
                     "re-checks one user per run of the same kept statement (SQLite)"}


def run(size: str) -> list[dict]:
    users, events = SIZES[size]
    repeats = 5 if size == "quick" else 2
    data = generate(users, events)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        sqlite = sa.create_engine(f"sqlite:///{tmp}/profile.db")
        load(sqlite, "sqlite", data, tmp)
        results += bench_engine("sqlite", sqlite, repeats)
        duck = sa.create_engine(f"duckdb:///{tmp}/profile.duckdb")
        load(duck, "duckdb", data, tmp)
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
                load(pg, "postgresql", data, tmp)
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
