"""Erasure notices against a real Redis and a SQLite profile store."""

from __future__ import annotations

import json

import pytest
import redis
from sqlalchemy import create_engine, delete

from services.common import profile_tables as pt
from services.common.db import migrate
from services.segment.catalog import CatalogCache
from services.segment.core import SegmentCore
from services.segment.erasure import ERASURES_STREAM, GROUP, ErasureConsumer
from services.segment.realtime import MEMBERSHIP_STREAM, RealtimeMembership, members_key
from services.segment.text import parse_rule
from tests.segment.conftest import NOW, Population


class Clock:
    def __init__(self, ms):
        self.ms = ms

    def __call__(self):
        return self.ms / 1000


@pytest.fixture
def world(tmp_path, sqlite_engine, redis_url):
    pop = Population()
    for i in range(1, 7):
        pop.user(f"u{i}", age=20 + i)
    pop.write(sqlite_engine)
    url = f"sqlite:///{tmp_path}/segment.db"
    migrate("segment", url)
    core = SegmentCore(create_engine(url), sqlite_engine, CatalogCache(sqlite_engine, 0),
                       Clock(NOW))
    client = redis.Redis.from_url(redis_url)
    rt = RealtimeMembership(core, client, segments_ttl_s=0)
    consumer = ErasureConsumer(core, client, consumer="c1")
    consumer.ensure_group()
    yield core, rt, consumer, client, pop, sqlite_engine
    client.close()


def erase_in_store(engine, user_id):
    """What the profile store's erasure does to the read path: the user's rows are gone."""
    with engine.begin() as connection:
        connection.execute(delete(pt.profile_attributes)
                           .where(pt.profile_attributes.c.user_id == user_id))
        connection.execute(delete(pt.profiles).where(pt.profiles.c.id == user_id))


def publish(client, user_id, external_id, kind, aliases=()):
    """An entry with the fields the profile service publishes."""
    return client.xadd(ERASURES_STREAM, {
        "user_id": user_id, "external_id": external_id, "aliases": json.dumps(list(aliases)),
        "kind": kind, "erasure_id": "e-1" if kind != "merged" else "", "ts_ms": NOW})


def members(client, segment_id):
    return {int(m) for m in client.smembers(members_key(segment_id))}


def test_erased_user_leaves_live_sets_silently_and_snapshots(world):
    core, rt, consumer, client, pop, engine = world
    older = core.create("Older", parse_rule("age >= 23"), realtime=True)
    young = core.create("Young", parse_rule("age <= 24"), realtime=True)
    rt.initialize(older.id)
    rt.initialize(young.id)
    core.create_snapshot(older.id)
    target = pop.ids["u4"]  # age 24: in both segments
    assert target in members(client, older.id) and target in members(client, young.id)

    erase_in_store(engine, target)
    publish(client, target, "u4", "erased", aliases=["anon-9"])
    assert consumer.poll_once(block_ms=10) == 1

    assert target not in members(client, older.id)
    assert target not in members(client, young.id)
    assert members(client, older.id) == {pop.ids[f"u{i}"] for i in (3, 5, 6)}
    assert client.xlen(MEMBERSHIP_STREAM) == 0  # no "left" event for an erasure
    assert client.xpending(ERASURES_STREAM, GROUP)["pending"] == 0
    assert rt.check(older.id, "u4") == (None, False)
    # The snapshot taken before the erasure still holds the id, yet never streams it.
    streamed = [e for _, batch in core.stream_members(older.id) for _, e in batch]
    assert streamed == ["u3", "u5", "u6"]


def test_redelivered_and_pending_entries_are_harmless(world):
    core, rt, consumer, client, pop, engine = world
    seg = core.create("Older", parse_rule("age >= 23"), realtime=True)
    rt.initialize(seg.id)
    target = pop.ids["u5"]
    erase_in_store(engine, target)
    entry = publish(client, target, "u5", "erased")
    # A consumer reads the entry and dies before acknowledging it.
    client.xreadgroup(GROUP, "dead", {ERASURES_STREAM: ">"}, count=10)
    survivor = ErasureConsumer(core, client, consumer="c2", claim_idle_ms=0)
    assert survivor.poll_once(block_ms=10) == 1
    assert target not in members(client, seg.id)
    assert client.xpending(ERASURES_STREAM, GROUP)["pending"] == 0
    # The same notice again (published twice, or redelivered) changes nothing.
    before = members(client, seg.id)
    client.xadd(ERASURES_STREAM, {k.decode(): v for k, v in
                                  client.xrange(ERASURES_STREAM, entry, entry)[0][1].items()})
    assert consumer.poll_once(block_ms=10) == 1
    assert members(client, seg.id) == before
    assert client.xlen(MEMBERSHIP_STREAM) == 0


def test_merge_does_not_erase_the_surviving_user(world):
    core, rt, consumer, client, pop, engine = world
    seg = core.create("Older", parse_rule("age >= 23"), realtime=True)
    rt.initialize(seg.id)
    alias, survivor = pop.ids["u3"], pop.ids["u6"]
    erase_in_store(engine, alias)  # the merge folds the alias's rows into the survivor
    publish(client, alias, "u3", "merged")
    assert consumer.poll_once(block_ms=10) == 1
    assert survivor in members(client, seg.id)
    assert alias not in members(client, seg.id)
    assert rt.check(seg.id, "u6") == (survivor, True)
    assert client.xpending(ERASURES_STREAM, GROUP)["pending"] == 0


def test_erasing_the_last_member_keeps_the_live_set_loaded(world):
    # Redis deletes a set whose last member goes, and a missing set means "not loaded": checks
    # would fall back to a snapshot that may still hold the erased user.
    core, rt, consumer, client, pop, engine = world
    only = core.create("Only u6", parse_rule("age >= 26"), realtime=True)
    unloaded = core.create("Never loaded", parse_rule("age >= 21"), realtime=True)
    assert rt.initialize(only.id) == 1
    erase_in_store(engine, pop.ids["u6"])
    publish(client, pop.ids["u6"], "u6", "erased")
    assert consumer.poll_once(block_ms=10) == 1
    assert client.exists(members_key(only.id)) and members(client, only.id) == {-1}
    assert rt.check(only.id, "u5") == (pop.ids["u5"], False)  # answered live, not None
    assert not client.exists(members_key(unloaded.id))  # still not loaded
