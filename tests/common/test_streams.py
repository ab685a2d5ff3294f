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


def test_a_failed_pass_is_logged_and_the_loop_starts_again(redis_url, caplog):
    # A consumer whose group vanished (the stream was deleted during an outage) fails its
    # poll; the loop logs it, waits, checks the group again and goes on reading.
    import logging
    import threading

    from services.common.streams import consume_until

    client = redis.Redis.from_url(redis_url)
    client.xadd("loop", {"n": "1"})
    reader = GroupReader(client, "loop", "g", consumer="c", claim_idle_ms=60_000)
    stop = threading.Event()
    seen: list[str] = []

    def poll_once() -> None:
        batch = reader.read(block_ms=10)
        seen.extend(f["n"] for _, f in batch)
        reader.ack(batch)
        if seen == ["1"]:
            client.delete("loop")  # the group goes with it: the next read fails
            client.xadd("loop", {"n": "2"})
        elif seen == ["1", "2"]:
            stop.set()

    log = logging.getLogger("test.streams")
    with caplog.at_level(logging.ERROR, logger="test.streams"):
        worker = threading.Thread(target=consume_until,
                                  args=(stop, reader.ensure_group, poll_once, log, "test"),
                                  daemon=True)
        worker.start()
        worker.join(10)
    assert not worker.is_alive()
    assert seen == ["1", "2"]
    assert any(r.getMessage() == "test pass failed" for r in caplog.records)
