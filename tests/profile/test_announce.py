"""Announcements at least once: what was committed is announced even when the process stops
between the commit and the publication, or Redis is down, with several writers at once
(SQLite and PostgreSQL, real Redis, a writer process really killed)."""

from __future__ import annotations

import concurrent.futures
import pathlib
import signal
import subprocess
import sys

import redis
from sqlalchemy import select

from services.common.profile_tables import events
from services.profile.core import CHANGES_STREAM, EVENTS_STREAM, EventIn, Profile
from services.profile.servicer import Maintenance
from services.profile.tables import announcements

ROOT = pathlib.Path(__file__).resolve().parents[2]
GRACE_S = 60

# A writer that commits and is killed before it publishes: the process ends by SIGKILL at the
# moment it would announce, as a crash would end it, with nothing run after.
WRITER = r"""
import os, signal, sys

import redis

from services.common.db import make_engine
from services.profile.config import ProfileConfig
from services.profile.core import EventIn, Profile, ProfileCore


def killed(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


ProfileCore.publish_events = killed
ProfileCore.publish_changes = killed
url, redis_url, what, now_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
core = ProfileCore(make_engine(url), redis.Redis.from_url(redis_url), ProfileConfig(),
                   clock=lambda: now_s)
now = int(now_s * 1000)
if what == "ingest":
    core.ingest_events([EventIn(f"k{i}", f"killed-{i % 3}", "view", now - i) for i in range(5)])
elif what == "stream":
    stream = core.open_stream()
    stream.add([(f"k{i}", f"killed-{i % 3}", "view", now - i, None, None) for i in range(5)])
    stream.finish()
elif what == "changes":
    core.add_tags("victim", [("vip", None)])
raise SystemExit("the writer published")
"""


def _kill_a_writer(db_url: str, redis_url: str, what: str, now_s: float) -> None:
    """Runs WRITER and checks it died by SIGKILL after its commit."""
    done = subprocess.run([sys.executable, "-c", WRITER, db_url, redis_url, what, str(now_s)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr


def _event_ids(client: redis.Redis) -> list[str]:
    return [fields["event_id"] for _, fields in client.xrange(EVENTS_STREAM)]


def _changes(client: redis.Redis) -> list[tuple[str, str]]:
    return [(f["external_id"], f["kinds"]) for _, f in client.xrange(CHANGES_STREAM)]


def _markers(core) -> int:
    with core.engine.connect() as conn:
        return len(conn.execute(select(announcements.c.marker)).all())


def test_published_announcements_leave_nothing_to_announce_again(make_core, clock):
    core = make_core()
    now = core.now_ms()
    core.ingest_events([EventIn(f"p{i}", f"u{i % 2}", "view", now - i) for i in range(4)])
    stream = core.open_stream()
    stream.add([(f"s{i}", "u0", "view", now - i, None, None) for i in range(3)])
    stream.finish()
    core.add_tags("u0", [("vip", None)])
    core.close()  # the markers of what was published are retired
    assert _markers(core) == 0
    clock.now_s += GRACE_S
    assert core.announce_left_behind() == 0
    assert sorted(_event_ids(core.redis)) == sorted(
        [f"p{i}" for i in range(4)] + [f"s{i}" for i in range(3)])
    assert _changes(core.redis) == [("u0", "tags")]


def test_changes_unpublished_while_redis_is_down_go_out_with_the_next_pass(make_core, redis_url):
    core = make_core()
    core.create_profile(Profile("u1"))
    core.create_profile(Profile("u2"))
    up = core.redis
    core.redis = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    core.add_tags("u1", [("vip", None)])
    core.update_consents("u2", [("email", True, "form", None)])
    assert core.announce_left_behind() == 0  # still down: nothing went out, nothing dropped
    core.redis = up
    assert _changes(up) == [("u1", "created"), ("u2", "created")]
    # Published by this process's next pass without waiting out the grace.
    assert core.announce_left_behind() == 2
    assert sorted(_changes(up)[2:]) == [("u1", "tags"), ("u2", "consent")]
    assert core.announce_left_behind() == 0
    assert _markers(core) == 0


def _restarted(make_core, clock):
    """A new process on the same database and Redis, once the grace has passed."""
    core = make_core()
    assert core.announce_left_behind() == 0  # its writer might still be publishing
    clock.now_s += GRACE_S
    return core


def test_events_committed_by_a_killed_writer_are_announced_by_the_maintenance_pass_at_start(
        make_core, db_url, redis_url, clock):
    _kill_a_writer(db_url, redis_url, "ingest", clock.now_s)
    core = make_core(maintenance_interval_s=3600, full_recompute_interval_s=0)
    with core.engine.connect() as conn:
        assert len(conn.execute(select(events.c.id)).all()) == 5
    assert _event_ids(core.redis) == []
    assert core.announce_left_behind() == 0  # its writer might still be publishing
    clock.now_s += GRACE_S
    maintenance = Maintenance(core)
    maintenance.start()  # its first pass runs at once
    maintenance.stop()  # and is waited for
    assert sorted(_event_ids(core.redis)) == [f"k{i}" for i in range(5)]
    entry = dict(core.redis.xrange(EVENTS_STREAM)[0][1])
    assert entry["external_id"].startswith("killed-") and int(entry["user_id"]) > 0
    assert core.announce_left_behind() == 0 and _markers(core) == 0


def test_a_stream_batch_of_a_killed_writer_is_announced_after_restart(
        make_core, db_url, redis_url, clock):
    _kill_a_writer(db_url, redis_url, "stream", clock.now_s)
    core = _restarted(make_core, clock)
    assert core.announce_left_behind() == 5
    assert sorted(_event_ids(core.redis)) == [f"k{i}" for i in range(5)]


def test_changes_committed_by_a_killed_writer_are_announced_after_restart(
        make_core, db_url, redis_url, clock):
    make_core().create_profile(Profile("victim"))
    _kill_a_writer(db_url, redis_url, "changes", clock.now_s)
    core = make_core()
    assert core.get_profile("victim").tags == [("vip", None)]
    assert _changes(core.redis) == [("victim", "created")]
    core = _restarted(make_core, clock)
    assert core.announce_left_behind() == 1
    assert _changes(core.redis) == [("victim", "created"), ("victim", "tags")]
    assert _markers(core) == 0


def test_a_killed_writers_batch_is_found_below_a_later_writers_published_batch(
        make_core, db_url, redis_url, clock):
    # Writer A commits (lower row ids) and dies; writer B commits later rows and publishes
    # them. Whatever B announced, A's rows are announced by the next pass, whoever runs it.
    _kill_a_writer(db_url, redis_url, "ingest", clock.now_s)
    b = make_core()
    now = b.now_ms()
    b.ingest_events([EventIn(f"b{i}", "b-user", "view", now - i) for i in range(3)])
    b.create_profile(Profile("b-profile"))
    with b.engine.connect() as conn:
        rows = dict(conn.execute(select(events.c.event_id, events.c.id)).all())
    assert max(rows[f"k{i}"] for i in range(5)) < min(rows[f"b{i}"] for i in range(3))
    assert sorted(_event_ids(b.redis)) == ["b0", "b1", "b2"]
    clock.now_s += GRACE_S
    assert b.announce_left_behind() == 5
    announced = _event_ids(b.redis)
    assert sorted(announced) == ["b0", "b1", "b2"] + [f"k{i}" for i in range(5)]
    assert _changes(b.redis) == [("b-profile", "created")]


def test_concurrent_writers_announce_every_event_once(make_core, clock):
    writers = [make_core(stream_flush_events=50) for _ in range(2)]
    now = writers[0].now_ms()

    def write(n: int) -> None:
        core = writers[n]
        for round_ in range(4):
            stream = core.open_stream()
            stream.add([(f"w{n}-{round_}-{i}", f"u{i % 7}", "view", now - i, None, None)
                        for i in range(120)])
            stream.finish()
            core.ingest_events([EventIn(f"w{n}-{round_}-x", "u1", "view", now)])
            core.add_tags(f"u{n}", [(f"t{round_}", None)])

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(write, n) for n in range(2)]:
            done.result()  # raises what the writer raised
    for core in writers:
        core.close()
    announced = _event_ids(writers[0].redis)
    assert len(announced) == len(set(announced)) == 2 * 4 * 121
    assert sorted(_changes(writers[0].redis)) == sorted(
        [(f"u{n}", "tags") for n in range(2) for _ in range(4)])
    assert _markers(writers[0]) == 0
    clock.now_s += GRACE_S
    assert writers[1].announce_left_behind() == 0


def test_changes_left_behind_skip_users_erased_since(make_core, db_url, redis_url, clock):
    make_core().create_profile(Profile("victim"))
    _kill_a_writer(db_url, redis_url, "changes", clock.now_s)
    core = make_core()
    core.erase_user("victim", "dpo", "asked")
    clock.now_s += GRACE_S
    assert core.announce_left_behind() == 0
    assert _changes(core.redis) == [("victim", "created")]
    assert _markers(core) == 0


def test_traits_refreshed_after_their_events_were_announced_are_announced_too(make_core):
    # In the background mode a user's events are announced before their traits are fresh:
    # the refresh announces the users again, as changed traits.
    core = make_core(stream_traits="background")
    now = core.now_ms()
    stream = core.open_stream()
    stream.add([(f"g{i}", f"u{i % 3}", "purchase", now - i, 5.0, None) for i in range(9)])
    stream.finish()
    core.close()  # the refresh asked for at the stream's end has run
    assert len(_event_ids(core.redis)) == 9
    assert sorted(_changes(core.redis)) == [("u0", "traits"), ("u1", "traits"), ("u2", "traits")]
    assert core.get_traits("u0")["traits"]["frequency"] == 3


def test_stopping_does_not_wait_on_a_database_that_does_not_answer(make_core, monkeypatch):
    # Retiring markers is bookkeeping: if the database hangs, stopping goes on and the
    # markers stay (announced again later, never lost).
    import threading

    from services.profile import announce
    from services.profile import core as core_module

    core = make_core()
    answer = threading.Event()
    real_retire = announce.retire

    def hanging_retire(conn, markers):
        answer.wait()
        return real_retire(conn, markers)

    monkeypatch.setattr(announce, "retire", hanging_retire)
    monkeypatch.setattr(core_module, "RETIRE_ON_CLOSE_S", 0.2)
    core.ingest_events([EventIn("h1", "u1", "view", core.now_ms())])
    closing = threading.Thread(target=core.close)
    closing.start()
    closing.join(timeout=10)  # a hang guard only: close() waits 0.2 s here
    stopped = not closing.is_alive()
    assert _markers(core) == 1  # not retired yet: a maintenance pass would announce it again
    answer.set()
    closing.join()
    assert stopped, "close() waited on the hanging database"
    core._retirer.shutdown(wait=True)  # the late retirement still completes
    assert _markers(core) == 0
