"""The shared consumer-group reader against a real Redis."""

from __future__ import annotations

import redis

from services.common.streams import GroupReader


def test_reads_acks_and_takes_over_a_dead_consumers_entries(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.xadd("s", {"n": "1"})  # published before the group exists: still read ("0")
    dead = GroupReader(client, "s", "g", consumer="dead", claim_idle_ms=0)
    dead.ensure_group()
    dead.ensure_group()  # idempotent
    assert [f["n"] for _, f in dead.read(block_ms=10)] == ["1"]  # read, then the process dies
    client.xadd("s", {"n": "2"})
    alive = GroupReader(client, "s", "g", consumer="alive", claim_idle_ms=0)
    batch = alive.read(block_ms=10)
    assert [f["n"] for _, f in batch] == ["1"]  # the unacknowledged entry comes back first
    alive.ack(batch)
    batch = alive.read(block_ms=10)
    assert [f["n"] for _, f in batch] == ["2"]
    alive.ack(batch)
    assert alive.read(block_ms=10) == []
    assert client.xpending("s", "g")["pending"] == 0
