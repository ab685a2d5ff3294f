"""The issue's proofs: concurrent workers never break a cap, and a SIGKILLed fan-out resumes
with exactly one message per eligible recipient."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from services.delivery.tables import sends, sink_messages
from tests.delivery.conftest import approved_plan, build_core, drive, make_profiles, spec

RULES = json.dumps([{"name": "push_per_day", "limit": 2, "window": "day", "channels": ["push"]},
                    {"name": "marketing_per_week", "limit": 5, "window": "rolling",
                     "seconds": 604800}])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker(db_url, redis_url, profile_url, plan_id, audiences, lease_ms=30_000, batch=100):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.delivery.fanout_worker", "--db", db_url,
         "--redis", redis_url, "--profiles", profile_url, "--plan", str(plan_id),
         "--audiences", json.dumps(audiences), "--rules", RULES, "--batch", str(batch),
         "--lease-ms", str(lease_ms)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_worker(db_url, redis_url, profile_url, plan_id, audiences, results):
    """One delivery worker in its own (forked) process, with its own engine and Redis client."""
    from sqlalchemy import create_engine

    from services.delivery import caps as caps_mod

    core = build_core(db_url, redis_url, create_engine(profile_url), audiences,
                      rules=caps_mod.parse_rules(RULES), batch_size=25)
    results.put(drive(core, plan_id).sent)


def test_eight_concurrent_workers_never_exceed_a_cap(db_url, redis_url, profile_url):
    import multiprocessing

    users = 200
    make_profiles(profile_url, [{"consents": {"push": True}} for _ in range(users)])
    from sqlalchemy import create_engine

    from services.delivery import caps as caps_mod

    audiences = {"everyone": list(range(1, users + 1))}
    core = build_core(db_url, redis_url, create_engine(profile_url), audiences,
                      rules=caps_mod.parse_rules(RULES))
    # Four plans compete for the same users, each fanned out by two workers at once.
    plans = [approved_plan(core, spec(display_name=f"plan {i}")) for i in range(4)]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_run_worker,
                         args=(db_url, redis_url, profile_url, plan.id, audiences, results))
             for plan in plans for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    with core.store.engine.connect() as conn:
        per_user = collections.Counter(conn.execute(
            select(sends.c.user_id).where(sends.c.status == "sent")).scalars())
        per_plan_user = collections.Counter(conn.execute(
            select(sends.c.plan_id, sends.c.user_id)).all())
        open_rows = conn.execute(select(func.count()).select_from(sends).where(
            sends.c.status.in_(["claimed", "retry", "deferred"]))).scalar_one()
        messages = collections.Counter(conn.execute(
            select(sink_messages.c.recipient)).scalars())
    assert max(per_user.values()) == 2 and len(per_user) == users  # the cap, and it is used
    assert set(per_plan_user.values()) == {1}  # one ledger row per plan and user
    assert open_rows == 0
    assert set(messages.values()) == {2} and len(messages) == users


@pytest.mark.slow
def test_kill_and_restart_sends_exactly_once_to_each_eligible_recipient(
        sqlite_url, embedded_redis_url, redis_client, profile_url):
    n = 20_000
    profiles = [{"consents": {"push": i % 10 != 0}} for i in range(1, n + 1)]
    make_profiles(profile_url, profiles)
    eligible = {f"u{i}" for i in range(1, n + 1) if i % 10 != 0}
    from sqlalchemy import create_engine

    from services.delivery import caps as caps_mod

    audiences = {"everyone": list(range(1, n + 1))}
    core = build_core(sqlite_url, embedded_redis_url, create_engine(profile_url), audiences,
                      rules=caps_mod.parse_rules(RULES))
    plan = approved_plan(core, spec())
    proc = worker(sqlite_url, embedded_redis_url, profile_url, plan.id, audiences,
                  lease_ms=1500, batch=500)
    deadline = time.monotonic() + 120
    while core.store.sink_count() < 4000:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = core.store.sink_count()
    assert 4000 <= killed_at < len(eligible)
    proc = worker(sqlite_url, embedded_redis_url, profile_url, plan.id, audiences,
                  lease_ms=1500, batch=500)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    with core.store.engine.connect() as conn:
        recipients = collections.Counter(conn.execute(
            select(sink_messages.c.recipient)).scalars())
        statuses = collections.Counter(conn.execute(select(sends.c.status)).scalars())
    assert set(recipients) == eligible
    assert set(recipients.values()) == {1}
    assert statuses == {"sent": len(eligible), "suppressed": n - len(eligible)}


def test_a_pass_finding_its_plan_finished_by_another_replica_stops_quietly(sqlite_url, redis_url,
                                                                           profile_url):
    # Another replica sends everything and completes the plan right after this pass has
    # read the occurrence it is about to run: the pass must end without an error and send
    # nothing more.
    profiles = make_profiles(profile_url, [{"consents": {"push": True}}] * 3)
    audiences = {"everyone": [1, 2, 3]}
    core = build_core(sqlite_url, redis_url, profiles, audiences)
    other = build_core(sqlite_url, redis_url, profiles, audiences)
    plan = approved_plan(core, spec())
    read = core.store.occurrence

    def reading_then_the_other_replica_finishes(occurrence_id):
        found = read(occurrence_id)
        if sys._getframe(1).f_code.co_name == "run_occurrence" and found.state == "pending":
            drive(other, plan.id)
        return found

    core.store.occurrence = reading_then_the_other_replica_finishes
    assert core.run_due(plan_id=plan.id).sent == 0
    assert core.store.get_plan(plan.id).state == "completed"
    with core.store.engine.connect() as conn:
        recipients = conn.execute(select(sink_messages.c.recipient)).scalars().all()
    assert sorted(recipients) == ["u1", "u2", "u3"]
