"""Domain and storage tests of the profile core, on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.profile_tables import computed_traits, events, profiles
from services.profile import traits
from services.profile.config import DAY_MS
from services.profile.core import ERASURES_STREAM, EVENTS_STREAM, EventIn, Profile, ScoreIn
from services.profile.traits import RFM_GRID, rfm_group


def purchase(event_id, user, ts_ms, value, event_type="purchase", **props):
    return EventIn(event_id, user, event_type, ts_ms, value, {k: v for k, v in props.items()})


def test_catalogue_types_are_enforced(core):
    core.create_attribute("age", "number", "age in years", False)
    core.create_attribute("email", "string", "contact address", True)
    core.create_attribute("brands", "string_list", "", False)
    with pytest.raises(AlreadyExists):
        core.create_attribute("age", "number", "", False)
    with pytest.raises(InvalidArgument) as err:
        core.create_profile(Profile("u1", attributes={"age": ("string", "old")}))
    assert err.value.violations[0][0] == "profile.attributes[age]"
    with pytest.raises(InvalidArgument) as err:
        core.create_profile(Profile("u1", attributes={"height": ("number", 1.8)}))
    assert err.value.violations[0][0] == "profile.attributes[height]"
    created = core.create_profile(
        Profile("u1", attributes={"age": ("number", 31.0), "brands": ("string_list", ["a", "b"])})
    )
    assert created.attributes == {"age": ("number", 31.0), "brands": ("string_list", ["a", "b"])}
    assert core.get_attribute("email")["pii"] is True
    assert core.delete_attribute("brands") == 1
    assert "brands" not in core.get_profile("u1").attributes


def test_update_mask_touches_only_named_fields(core, clock):
    core.create_attribute("age", "number", "", False)
    core.create_attribute("city", "string", "", False)
    core.create_profile(
        Profile("u1", attributes={"age": ("number", 30.0), "city": ("string", "Paris")},
                time_zone="Europe/Paris")
    )
    patch = Profile("u1", attributes={"age": ("number", 31.0)}, time_zone="Asia/Tokyo",
                    app_uninstalled=True)
    updated = core.update_profile(patch, ["attributes.age", "app_uninstalled"])
    assert updated.attributes == {"age": ("number", 31.0), "city": ("string", "Paris")}
    assert updated.time_zone == "Europe/Paris" and updated.app_uninstalled
    # An attribute named in the mask but absent from the patch is cleared.
    cleared = core.update_profile(Profile("u1"), ["attributes.city"])
    assert cleared.attributes == {"age": ("number", 31.0)}
    with pytest.raises(InvalidArgument) as err:
        core.update_profile(Profile("u1"), ["external_id"])
    assert err.value.violations[0][0] == "update_mask"
    with pytest.raises(InvalidArgument) as err:
        core.update_profile(Profile("u1", time_zone="Mars/Olympus"), ["time_zone"])
    assert err.value.violations[0][0] == "profile.time_zone"


def test_batch_update_writes_any_number_of_users_in_one_transaction_of_set_statements(core):
    """The SQL a batch runs does not grow with its users: one transaction, and each kind of
    write (attributes replaced, set, cleared; tags; each combination of columns) one
    statement for all users."""
    from sqlalchemy import event

    core.create_attribute("city", "string", "", False)
    core.create_attribute("age", "number", "", False)
    for i in range(60):
        core.create_profile(Profile(f"u{i}", attributes={"age": ("number", 1.0)}))
    statements: list[str] = []
    transactions: list[int] = []
    # The batch's own SQL: the thread retiring announcement markers runs beside it.
    caller = threading.get_ident()

    def counted(conn, cursor, statement, parameters, context, executemany):
        if threading.get_ident() == caller:
            statements.append(statement)

    event.listen(core.engine, "before_cursor_execute", counted)
    event.listen(core.engine, "begin", lambda conn: threading.get_ident() == caller
                 and transactions.append(1))

    def batch(users) -> list:
        """Per user in turn: a city set with a flag, an age cleared with a time zone, the
        attributes and tags replaced."""
        items = []
        for n, i in enumerate(users):
            kind = n % 3
            if kind == 0:
                items.append((Profile(f"u{i}", attributes={"city": ("string", "Rome")},
                                      notifications_disabled=True),
                              ["attributes.city", "notifications_disabled"]))
            elif kind == 1:
                items.append((Profile(f"u{i}", time_zone="Asia/Tokyo"),
                              ["attributes.age", "time_zone"]))
            else:
                items.append((Profile(f"u{i}", attributes={"city": ("string", "Oslo")},
                                      tags=[("vip", None)]), ["attributes", "tags"]))
        statements.clear()
        transactions.clear()
        assert core.batch_update_profiles(items) == [None] * len(items)
        return list(statements)

    few, many = batch(range(3)), batch(range(3, 60))
    event.remove(core.engine, "before_cursor_execute", counted)
    assert len(many) == len(few) and transactions == [1]
    got = core.batch_get_profiles(["u3", "u4", "u5", "u59"])
    assert got[0].attributes == {"age": ("number", 1.0), "city": ("string", "Rome")}
    assert got[0].notifications_disabled and got[0].time_zone == "UTC"
    assert got[1].attributes == {} and got[1].time_zone == "Asia/Tokyo"
    assert got[2].attributes == {"city": ("string", "Oslo")} and got[2].tags == [("vip", None)]
    assert got[3] == core.get_profile("u59") and got[3].tags == [("vip", None)]


def test_tags_expire(core, clock):
    core.create_profile(Profile("u1"))
    now = core.now_ms()
    core.add_tags("u1", [("vip", None), ("trial", now + 60_000)])
    assert sorted(t for t, _ in core.get_profile("u1").tags) == ["trial", "vip"]
    page, _ = core.list_profiles(10, 0, {"tag": "trial"})
    assert [p.external_id for p in page] == ["u1"]
    clock.now_s += 120
    assert [t for t, _ in core.get_profile("u1").tags] == ["vip"]
    assert core.list_profiles(10, 0, {"tag": "trial"})[0] == []
    assert core.prune()["tags"] == 1
    core.remove_tags("u1", ["vip"])
    assert core.get_profile("u1").tags == []


def test_ingestion_is_idempotent_and_published(core, redis_url):
    now = core.now_ms()
    batch = [purchase(f"e{i}", f"u{i % 3}", now - i * DAY_MS, 10.0 + i, sku=("string", "x"))
             for i in range(9)]
    first = core.ingest_events(batch)
    assert (first.accepted, first.duplicates, first.rejected) == (9, 0, 0)
    again = core.ingest_events(batch + [purchase("e0", "u0", now, 1.0)])
    assert (again.accepted, again.duplicates) == (0, 10)
    with core.engine.connect() as conn:
        assert conn.execute(select(events.c.id)).all().__len__() == 9
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    entries = client.xrange(EVENTS_STREAM)
    assert len(entries) == 9
    fields = entries[0][1]
    assert fields["event_id"] == "e0" and fields["external_id"] == "u0"
    assert json.loads(fields["properties"]) == {"sku": "x"}
    assert int(fields["user_id"]) == core.get_profile("u0").user_id


def test_announcements_carry_every_field_as_text(core):
    # The exact text consumers of profile:events read: value as Python's repr (no digits
    # lost), empty without one; properties as compact JSON, '{}' without any.
    now = core.now_ms()
    core.ingest_events([
        purchase("a1", "u1", now - 1000, 0.1 + 0.2),
        EventIn("a2", "u1", "view", now - 500, None, {"sku": ("string", "x")}),
    ])
    user_id = str(core.get_profile("u1").user_id)
    assert [fields for _, fields in core.redis.xrange(EVENTS_STREAM)] == [
        {"event_id": "a1", "user_id": user_id, "external_id": "u1", "event_type": "purchase",
         "ts_ms": str(now - 1000), "value": "0.30000000000000004", "properties": "{}"},
        {"event_id": "a2", "user_id": user_id, "external_id": "u1", "event_type": "view",
         "ts_ms": str(now - 500), "value": "", "properties": '{"sku":"x"}'},
    ]


def test_stream_announces_each_stored_event_once_in_commit_order(make_core):
    # Batches of 3: announcements encoded while a batch is written are used when exactly
    # those events are stored; a batch with a re-sent event is announced without it.
    core = make_core(stream_flush_events=3)
    now = core.now_ms()
    rows = [(f"o{i}", f"u{i % 2}", "view", now - 1000 + i, None if i % 2 else 0.5 + i, None)
            for i in range(7)]
    stream = core.open_stream()
    stream.add(rows[:4])
    stream.add([rows[1]] + rows[4:])  # o1 again: already stored by the first batch
    assert stream.finish() == (7, 1)
    core.close()
    user_ids = {e: str(core.get_profile(e).user_id) for e in ("u0", "u1")}
    assert [fields for _, fields in core.redis.xrange(EVENTS_STREAM)] == [
        {"event_id": event_id, "user_id": user_ids[user], "external_id": user,
         "event_type": "view", "ts_ms": str(ts), "value": "" if value is None else repr(value),
         "properties": "{}"}
        for event_id, user, _type, ts, value, _props in rows
    ]


def test_events_stream_is_trimmed_to_about_its_cap(make_core):
    core = make_core(events_stream_maxlen=100)
    now = core.now_ms()
    result = core.ingest_events([purchase(f"c{i}", f"u{i % 7}", now - i, 1.0) for i in range(1000)])
    assert result.accepted == 1000
    # Trimmed approximately ('~'), in whole stream nodes: never below the cap.
    assert 100 <= core.redis.xlen(EVENTS_STREAM) < 1000


def test_batch_partly_stored_before_counts_and_announces_only_new_events(make_core):
    # A re-sent stream: the first INSERT stores fewer rows than it was given, so the batch is
    # redone naming exactly what was stored; duplicates within the batch count too.
    core = make_core(rfm_window_days=0)
    now = core.now_ms()
    rows = [(f"p{i}", "mixed", "purchase", now - 1000 * i, 1.0 + i, None) for i in range(4)]
    assert core.write_rows(rows[:2])[:2] == (2, 0)
    stored, duplicates, announced, touched = core.write_rows(rows + [rows[3]])
    assert (stored, duplicates) == (2, 3)
    assert list(announced.event_ids) == ["p2", "p3"]
    assert touched == {core.get_profile("mixed").user_id}
    assert set(announced.user_ids) == touched
    got = core.get_traits("mixed")
    assert got["traits"]["frequency"] == 4 and got["traits"]["monetary"] == 10.0
    assert [c["count_total"] for c in got["event_counts"]] == [4]
    with core.engine.connect() as conn:
        assert conn.execute(select(events.c.id)).all().__len__() == 4


def test_stream_checker_tells_zero_from_unset(core):
    # The stream's checker asks for presence only when a field reads zero: a value of 0.0
    # and a timestamp at the epoch are kept, an unset value is None, an unset timestamp is
    # refused by the full checks, naming the field.
    from google.protobuf import timestamp_pb2

    from marketing.profile.v1 import profile_service_pb2 as pb
    from services.profile.servicer import event_in

    def wire(event_id, seconds=None, nanos=0, value=None, **props):
        message = pb.Event(event_id=event_id, user_id="z", event_type="purchase")
        if seconds is not None:
            message.timestamp.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
        if value is not None:
            message.value = value
        for key, text in props.items():
            message.properties[key].string_value = text
        return message

    checker = core.event_checker(core.now_ms(), event_in)
    got = checker.columns(
        [wire("a", 0, value=0.0), wire("b", 5, 7_000_000), wire("c", 1, value=-2.5),
         wire("d", 2, sku="x")],
        "events",
    )
    assert list(got.event_ids) == ["a", "b", "c", "d"]
    assert list(got.ts_ms) == [0, 5007, 1000, 2000]
    assert list(got.values) == [0.0, None, -2.5, None]
    assert list(got.properties) == [None, None, None, '{"sku":"x"}']
    with pytest.raises(InvalidArgument) as refused:
        checker.columns([wire("e", 1), wire("f")], "events")
    assert refused.value.violations[0][0] == "events[1].timestamp"


def test_sqlite_batches_commit_without_checkpoint_and_the_log_is_checkpointed_after(make_core):
    core = make_core()
    if core.engine.dialect.name != "sqlite":
        pytest.skip("the write-ahead log is SQLite's")
    database = core.engine.url.database
    with core.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    before = os.path.getsize(database)
    now = core.now_ms()
    rows = [(f"w{i}", f"u{i % 50}", "purchase", now - i, 1.0, None) for i in range(3000)]
    assert core.write_rows(rows)[:2] == (3000, 0)
    with core._batches.connect() as conn:  # the batches' own connections
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    with core.engine.connect() as conn:  # every other writer keeps automatic checkpoints
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() > 0
    core._checkpointer.submit(lambda: None).result()  # the checkpoint thread is done
    # The batch's pages reached the database file without anyone else checkpointing.
    assert os.path.getsize(database) > before
    with core.engine.connect() as conn:
        busy, logged, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        assert busy == 0 and logged == copied


def test_unknown_user_create_or_refuse(make_core):
    refusing = make_core(unknown_user="refuse")
    refusing.create_profile(Profile("known"))
    now = refusing.now_ms()
    result = refusing.ingest_events([purchase("a", "known", now, 1.0), purchase("b", "ghost", now, 1.0)])
    assert (result.accepted, result.rejected) == (1, 1)
    assert isinstance(result.outcomes[1].error, NotFound)
    assert "events[1].user_id" in result.outcomes[1].error.description
    creating = make_core(unknown_user="create")
    assert creating.ingest_events([purchase("b", "ghost", now, 1.0)]).accepted == 1
    assert creating.get_profile("ghost").user_id > 0


def test_bad_events_are_refused_item_by_item(core):
    now = core.now_ms()
    batch = [
        purchase("ok", "u1", now, 5.0),
        purchase("future", "u1", now + 3600_000, 5.0),
        EventIn("", "u1", "purchase", now),
        EventIn("bad-type", "u1", "no spaces", now),
        EventIn("no-ts", "u1", "view", None),
        EventIn("bad-prop", "u1", "view", now, None, {"p": ("number", float("nan"))}),
    ]
    result = core.ingest_events(batch)
    assert result.accepted == 1 and result.rejected == 5
    fields = [o.error.violations[0][0] for o in result.outcomes[1:]]
    assert fields == ["events[1].timestamp", "events[2].event_id", "events[3].event_type",
                      "events[4].timestamp", "events[5].properties[p]"]
    with pytest.raises(InvalidArgument) as err:
        core.ingest_events([])
    assert err.value.violations[0][0] == "events"


def test_oversize_batch_refused(make_core):
    core = make_core(max_batch_events=5)
    now = core.now_ms()
    with pytest.raises(InvalidArgument) as err:
        core.ingest_events([purchase(f"e{i}", "u", now, 1.0) for i in range(6)])
    assert err.value.violations[0][0] == "events"


def test_traits_incremental_matches_full_recompute(make_core, clock):
    core = make_core(rfm_window_days=0)
    now = core.now_ms()
    # Ten users with distinct recency, frequency and spend.
    batch = []
    for u in range(10):
        for k in range(u + 1):
            batch.append(purchase(f"p{u}-{k}", f"u{u}", now - (10 - u) * DAY_MS - k, 10.0 * (u + 1)))
        batch.append(purchase(f"v{u}", f"u{u}", now - 2 * DAY_MS, None, event_type="view"))
    core.ingest_events(batch)
    summary = core.recompute_traits()
    assert summary["population"] == 10
    with core.engine.connect() as conn:
        rows = {r.user_id: r for r in conn.execute(select(computed_traits))}
    ids = {f"u{u}": core.get_profile(f"u{u}").user_id for u in range(10)}
    # 1 + floor(5c/n) with c = users strictly below: two users per quintile here.
    for u in range(10):
        row = rows[ids[f"u{u}"]]
        assert row.frequency == u + 1
        assert row.r_score == row.f_score == row.m_score == 1 + u // 2
        assert row.rfm_group == rfm_group(row.r_score, row.f_score, row.m_score)
    # Incremental refresh: u0 buys a lot now; its scores move against the stored breakpoints.
    core.ingest_events([purchase(f"big{k}", "u0", now - 1000, 500.0) for k in range(12)])
    traits = core.get_traits("u0")["traits"]
    assert traits["frequency"] == 13 and traits["r_score"] == 5 and traits["f_score"] == 5
    assert traits["m_score"] == 5 and traits["rfm_group"] == "champions"
    counts = {c["event_type"]: c for c in core.get_traits("u0")["event_counts"]}
    assert counts["purchase"]["count_7d"] == 12 and counts["purchase"]["count_total"] == 13
    assert counts["view"]["count_7d"] == 1


def test_rfm_window_and_lifecycle(make_core, clock):
    core = make_core(rfm_window_days=30, lifecycle_new_days=10, lifecycle_active_days=20,
                     lifecycle_dormant_days=60)
    now = core.now_ms()
    core.ingest_events([
        purchase("a1", "newbie", now - 2 * DAY_MS, 5.0),
        purchase("b1", "regular", now - 100 * DAY_MS, 50.0),
        purchase("b2", "regular", now - 15 * DAY_MS, 7.0),
        purchase("c1", "sleeper", now - 45 * DAY_MS, 9.0),
        purchase("d1", "gone", now - 200 * DAY_MS, 99.0),
        purchase("late", "gone", now + 1000, 1.0),
    ])
    core.recompute_traits(as_of_ms=now)
    got = {u: core.get_traits(u)["traits"] for u in ("newbie", "regular", "sleeper", "gone")}
    assert {u: t["lifecycle_stage"] for u, t in got.items()} == {
        "newbie": "new", "regular": "active", "sleeper": "dormant", "gone": "churned"}
    # The 30-day window: the 100-day-old purchase does not count; recency still sees it all.
    assert got["regular"]["frequency"] == 1 and got["regular"]["monetary"] == 7.0
    assert got["gone"]["frequency"] == 0 and got["gone"]["recency_days"] == 200.0
    assert got["gone"]["last_seen_ms"] == now - 200 * DAY_MS  # the event after as_of is ignored


def test_rfm_grid_covers_every_score_and_every_group():
    groups = {rfm_group(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert len(groups) == 11
    assert set(RFM_GRID) == {1, 2, 3, 4, 5}
    assert rfm_group(5, 5, 5) == "champions" and rfm_group(1, 1, 1) == "lost"
    assert rfm_group(1, 5, 5) == "cannot_lose_them" and rfm_group(5, 1, 1) == "new_customers"


def test_merge_identity_moves_history(core):
    core.create_attribute("age", "number", "", False)
    core.create_profile(Profile("known", attributes={"age": ("number", 40.0)}))
    now = core.now_ms()
    core.ingest_events([purchase("d1", "device-1", now - 1000, 3.0)])
    core.update_consents("device-1", [("email", True, "web", None)])
    merged, existed = core.merge_identity("device-1", "known")
    assert existed and merged.attributes["age"] == ("number", 40.0)
    assert core.get_traits("known")["traits"]["frequency"] == 1
    assert core.get_consents("known")["email"][0] is True
    # Later events for the device id land on the known user; the alias resolves everywhere.
    core.ingest_events([purchase("d2", "device-1", now - 500, 4.0)])
    assert core.get_traits("known")["traits"]["frequency"] == 2
    assert core.get_profile("device-1").external_id == "known"
    assert core.merge_identity("device-1", "known")[1] is False
    core.create_profile(Profile("other"))
    with pytest.raises(FailedPrecondition):
        core.merge_identity("device-1", "other")


def test_consent_and_contactability(core, clock):
    core.create_profile(Profile("u1", time_zone="Asia/Shanghai", quiet_start_minute=22 * 60,
                                quiet_end_minute=8 * 60))
    core.create_profile(Profile("u2", notifications_disabled=True))
    now = core.now_ms()
    core.update_consents("u1", [("push", True, "app", now), ("sms", True, "form", now)])
    # An older change arriving late does not override the newer one.
    core.update_consents("u1", [("sms", False, "import", now - 1000)])
    assert core.get_consents("u1")["sms"] == (True, now, "form")
    core.update_consents("u2", [("push", True, "app", None)])
    # 2023-11-14 15:00 UTC is 23:00 in Shanghai: inside 22:00-08:00.
    at = 1_699_974_000_000
    u1, u2, ghost = core.batch_contactability(["u1", "u2", "ghost"], channels=["push", "sms", "email"], at_ms=at)
    assert u1.contactable == {"push": True, "sms": True, "email": False}
    assert u1.quiet_hours_active
    assert u2.contactable["push"] is False  # notifications disabled
    assert not ghost.found
    by_id = core.batch_contactability(user_ids=[u2.user_id])[0]
    assert by_id.external_id == "u2" and by_id.contactable["in_app"] is True  # opt-out channel
    with pytest.raises(InvalidArgument) as err:
        core.update_consents("u1", [("fax", True, "x", None)])
    assert err.value.violations[0][0] == "consents[0].channel"


def test_scores_write_back(core):
    core.create_profile(Profile("u1"))
    uid = core.get_profile("u1").user_id
    errors = core.write_scores([
        ScoreIn("churn", 0.25, "v1", user_id=uid),
        ScoreIn("repurchase", 0.7, "v3", external_id="u1"),
        ScoreIn("churn", 0.5, "v1", user_id=uid + 999),
        ScoreIn("churn", float("nan"), "v1", user_id=uid),
    ])
    assert errors[0] is None and errors[1] is None
    assert isinstance(errors[2], NotFound) and errors[3].violations[0][0] == "scores[3].score"
    core.write_scores([ScoreIn("churn", 0.9, "v2", user_id=uid)])
    scores = {s["model_name"]: (s["score"], s["model_version"]) for s in core.get_traits("u1")["scores"]}
    assert scores == {"churn": (0.9, "v2"), "repurchase": (0.7, "v3")}


def test_erasure_removes_everything_and_keeps_pii_free_audit(core, redis_url):
    core.create_attribute("email", "string", "", True)
    core.create_profile(Profile("alice@example.com", attributes={"email": ("string", "alice@example.com")}))
    now = core.now_ms()
    core.ingest_events([purchase("x1", "alice@example.com", now - 10, 9.0)])
    core.update_consents("alice@example.com", [("email", True, "form", None)])
    core.write_scores([ScoreIn("churn", 0.1, "v1", external_id="alice@example.com")])
    uid = core.get_profile("alice@example.com").user_id
    result = core.erase_user("alice@example.com", "root", "ticket 42")
    assert result["rows"]["events"] == 1 and result["rows"]["profiles"] == 1
    with pytest.raises(NotFound):
        core.get_profile("alice@example.com")
    with core.engine.connect() as conn:
        assert conn.execute(select(events).where(events.c.user_id == uid)).first() is None
        for table in ("profile_attributes", "consents", "scores", "computed_traits"):
            assert result["rows"][table] >= 1
    audit = core.erasure_audit(uid)
    assert len(audit) == 1 and "alice" not in json.dumps(audit)
    notice = redis.Redis.from_url(redis_url, decode_responses=True).xrange(ERASURES_STREAM)[-1][1]
    assert notice["user_id"] == str(uid) and notice["kind"] == "erased"
    # The retired id is never handed out again.
    assert core.create_profile(Profile("bob")).user_id > uid


def test_retention_prunes_old_events(make_core, clock):
    core = make_core(retention_days=30)
    now = core.now_ms()
    core.ingest_events([purchase("new", "u", now - DAY_MS, 1.0), purchase("old", "u", now - 29 * DAY_MS, 1.0)])
    refused = core.ingest_events([purchase("older", "u", now - 31 * DAY_MS, 1.0)])
    assert refused.outcomes[0].error.violations[0][0] == "events[0].timestamp"
    clock.now_s += 2 * 86400
    assert core.prune()["events"] == 1
    with core.engine.connect() as conn:
        assert [r.event_id for r in conn.execute(select(events))] == ["new"]


def test_events_unpublished_while_redis_is_down_go_out_with_the_next_pass(make_core, redis_url):
    core = make_core()
    core.redis = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    now = core.now_ms()
    assert core.ingest_events([purchase("q1", "u", now, 1.0), purchase("q2", "u", now, 2.0)]).accepted == 2
    core.redis = redis.Redis.from_url(redis_url, decode_responses=True)
    assert core.redis.xlen(EVENTS_STREAM) == 0
    assert core.announce_left_behind() == 2
    assert [f["event_id"] for _, f in core.redis.xrange(EVENTS_STREAM)] == ["q1", "q2"]
    assert core.announce_left_behind() == 0


def test_events_unpublished_survive_a_pass_while_redis_is_still_down(make_core, redis_url):
    core = make_core()
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    core.redis = down
    now = core.now_ms()
    assert core.ingest_events([purchase("s1", "u", now, 1.0), purchase("s2", "u", now, 2.0)]).accepted == 2
    assert core.announce_left_behind() == 0  # still down: nothing went out, nothing dropped
    core.redis = redis.Redis.from_url(redis_url, decode_responses=True)
    assert core.announce_left_behind() == 2
    assert [f["event_id"] for _, f in core.redis.xrange(EVENTS_STREAM)] == ["s1", "s2"]


def test_list_profiles_pages_and_filters(core):
    core.create_attribute("tier", "string", "", False)
    for i in range(7):
        core.create_profile(Profile(f"p{i}", attributes={"tier": ("string", "gold" if i % 2 else "silver")}))
    seen, after = [], 0
    while True:
        page, nxt = core.list_profiles(3, after, {})
        seen += [p.external_id for p in page]
        if nxt is None:
            break
        after = nxt
    assert seen == [f"p{i}" for i in range(7)]
    gold, _ = core.list_profiles(10, 0, {"attribute": ("tier", ("string", "gold"))})
    assert [p.external_id for p in gold] == ["p1", "p3", "p5"]
    with core.engine.connect() as conn:
        assert conn.execute(select(profiles.c.id)).all().__len__() == 7


def test_concurrent_refreshes_of_the_same_users_both_succeed(make_core, clock):
    # Two transactions refresh one user's traits at once (a stream's background refresh
    # beside a unary ingestion): the second waits for the first and then replaces its rows.
    core = make_core(rfm_window_days=0)
    now = int(clock.now_s * 1000)
    core.ingest_events(
        [purchase("c1", "twice", now - 1000, 4.0), purchase("c2", "twice", now - 500, 6.0)]
    )
    user_id = core.get_profile("twice").user_id
    errors = []

    def second() -> None:
        try:
            with core.engine.begin() as conn:
                traits.refresh_users(conn, [user_id], core.config, now, now)
        except SQLAlchemyError as exc:  # reported below by the assertion
            errors.append(exc)

    with core.engine.begin() as conn:
        traits.refresh_users(conn, [user_id], core.config, now, now)
        other = threading.Thread(target=second)
        other.start()
        time.sleep(0.3)  # the second refresh is now waiting for this transaction
    other.join(timeout=30)
    assert errors == []
    got = core.get_traits("twice")
    assert got["traits"]["frequency"] == 2 and got["traits"]["monetary"] == 10.0
    assert [c["count_total"] for c in got["event_counts"]] == [2]


def test_resent_stream_redoes_a_lost_background_refresh(make_core, clock):
    # A commit whose deferred refresh died with the process: the first core commits without
    # refreshing, a new one (the restarted service) receives the re-sent stream.
    now = int(clock.now_s * 1000)
    rows = [(f"r{i}", "phoenix", "purchase", now - 1000 * i, 2.0, None) for i in range(3)]
    assert make_core().write_rows(rows, refresh=False)[:2] == (3, 0)
    restarted = make_core(stream_traits="background", rfm_window_days=0)
    assert restarted.get_traits("phoenix")["traits"] is None
    stream = restarted.open_stream()
    stream.add(rows)
    assert stream.finish() == (0, 3)
    restarted.close()  # waits for the refresher's round
    got = restarted.get_traits("phoenix")["traits"]
    assert got["frequency"] == 3 and got["monetary"] == 6.0


def test_reads_see_an_attribute_another_replica_just_declared(make_core):
    reader, writer = make_core(), make_core()  # two replicas over one database
    reader.create_attribute("age", "number", "", False)
    reader.create_profile(Profile("u1", attributes={"age": ("number", 30.0)}))
    assert reader.get_profile("u1").attributes == {"age": ("number", 30.0)}  # catalogue cached
    writer.create_attribute("tier", "string", "", False)
    writer.update_profile(Profile("u1", attributes={"tier": ("string", "gold")}),
                          ["attributes.tier"])
    # The reader's cached catalogue lacks "tier": the stored value makes it reload at once.
    assert reader.get_profile("u1").attributes == {"age": ("number", 30.0),
                                                   "tier": ("string", "gold")}


def test_get_profile_is_the_batch_read_of_one_user(core, clock):
    """The one-statement read of GetProfile returns what the set reads of BatchGetProfiles
    return: every kind of attribute, live tags in tag order, a tag lapsing at its expiry
    instant left out, an alias resolving to the user it was merged into."""
    for name, kind in (("age", "number"), ("city", "string"), ("vip", "bool"),
                       ("seen", "timestamp"), ("brands", "string_list"), ("none", "string_list")):
        core.create_attribute(name, kind, "", False)
    now = core.now_ms()
    attributes = {"age": ("number", -31.25), "city": ("string", "Zürich"), "vip": ("bool", True),
                  "seen": ("timestamp", -86_400_123), "brands": ("string_list", ["b", "a"]),
                  "none": ("string_list", [])}
    core.create_profile(Profile(
        "full", attributes=attributes, time_zone="Asia/Tokyo", quiet_start_minute=1320,
        quiet_end_minute=480, notifications_disabled=True,
        tags=[("zeta", None), ("soon", now + 60_000), ("alpha", now + 120_000)]))
    core.create_profile(Profile("bare"))
    core.ingest_events([purchase("a1", "device-7", now - 1000, 1.0)])
    core.merge_identity("device-7", "full")

    def both(external_id):
        single = core.get_profile(external_id)
        assert [single] == core.batch_get_profiles([external_id])
        return single

    full = both("full")
    assert full.attributes == attributes
    assert full.tags == [("alpha", now + 120_000), ("soon", now + 60_000), ("zeta", None)]
    assert (full.time_zone, full.quiet_start_minute, full.quiet_end_minute) == (
        "Asia/Tokyo", 1320, 480)
    assert full.notifications_disabled and not full.app_uninstalled
    assert both("device-7") == full
    bare = both("bare")
    assert (bare.attributes, bare.tags, bare.quiet_start_minute) == ({}, [], None)
    assert bare.user_id != full.user_id
    clock.now_s = (now + 60_000) / 1000  # the instant "soon" lapses
    assert [t for t, _ in both("full").tags] == ["alpha", "zeta"]
    with pytest.raises(NotFound):
        core.get_profile("nobody")
    with pytest.raises(InvalidArgument) as err:
        core.get_profile("no/slashes")
    assert err.value.violations[0][0] == "name"


def test_overlapping_batch_updates_do_not_deadlock(make_core, db_url):
    # Each batch writes its users with one statement per combination of columns changed, so
    # without a lock order two batches over the same users take their row locks in different
    # orders: A locks u1 and u3 (flags), then u2 (time zone); B locks u2, then u3. Both are
    # held at the moment both have run their first statement.
    from sqlalchemy import event

    core = make_core()
    for user in ("u1", "u2", "u3"):
        core.create_profile(Profile(user))
    both_started = threading.Barrier(2, timeout=2)
    local = threading.local()

    @event.listens_for(core.engine, "after_cursor_execute")
    def pause(conn, cursor, statement, params, context, executemany):
        if statement.startswith("UPDATE profiles") and getattr(local, "first", False):
            local.first = False
            try:
                both_started.wait()
            except threading.BrokenBarrierError:
                pass  # the other batch waits on a lock this one holds: go on

    results = {}

    def run(name, items):
        local.first = True
        try:
            results[name] = core.batch_update_profiles(items)
        except Exception as exc:  # noqa: BLE001 - the test reports what went wrong
            results[name] = exc

    def flag(user):
        return Profile(user, notifications_disabled=True), ["notifications_disabled"]

    def zone(user):
        return Profile(user, time_zone="Asia/Tokyo"), ["time_zone"]

    batches = [threading.Thread(target=run, args=("A", [flag("u1"), zone("u2"), flag("u3")])),
               threading.Thread(target=run, args=("B", [flag("u2"), zone("u3")]))]
    for thread in batches:
        thread.start()
    for thread in batches:
        thread.join()
    assert not any(isinstance(r, Exception) for r in results.values()), results
    stored = {p.external_id: p for p in (core.get_profile(u) for u in ("u1", "u2", "u3"))}
    assert stored["u2"].notifications_disabled and stored["u3"].notifications_disabled
    assert stored["u2"].time_zone == stored["u3"].time_zone == "Asia/Tokyo"
