"""Assembles the delivery service from settings: stores, Redis, sources, gateways, scheduler.

Its ``DELIVERY_*`` settings, with meanings and defaults, are in ``settings.ENV_VARS``
(rendered in docs/services.md).
"""

from __future__ import annotations

import json
import logging
import threading

from services.common.config import Settings, env_bool, env_float, env_int, env_str
from services.common.db import make_engine
from services.common.streams import GroupReader, consume_until
from services.common.errors import Unavailable
from services.common.redis_client import connect_redis
from services.delivery import caps as caps_mod
from services.delivery.core import DeliveryConfig, DeliveryCore
from services.delivery.gateways import build_router
from services.delivery.store import Store, open_engine

log = logging.getLogger(__name__)


class _SqlConsentWriter:
    """Local runs without a profile service (``DELIVERY_PROFILE_SOURCE=sql``) have nowhere to
    write consent: opt-outs stay pending in the outcomes table until a profile service is
    wired, and are logged."""

    def apply(self, changes) -> None:
        raise RuntimeError(f"no profile service to record {len(changes)} opt-out(s)")


def build_core(settings: Settings) -> DeliveryCore:
    engine = open_engine(settings.database_url)
    store = Store(engine)
    client = connect_redis(settings)
    rules = (caps_mod.parse_rules(env_str("DELIVERY_FREQUENCY_CAPS", ""))
             if env_str("DELIVERY_FREQUENCY_CAPS", "") else caps_mod.DEFAULT_RULES)
    guard = caps_mod.CapGuard(client, rules)
    allow_private = env_bool("DELIVERY_WEBHOOK_ALLOW_PRIVATE", False)
    router = build_router(json.loads(env_str("DELIVERY_GATEWAYS", "{}")), store, allow_private,
                          env_str("DELIVERY_WEBHOOK_SECRET", "").encode())
    if env_str("DELIVERY_PROFILE_SOURCE", "grpc") == "sql":
        from services.delivery.sources import SqlProfileDirectory, StaticAudienceSource

        directory = SqlProfileDirectory(make_engine(settings.profile_read_database_url,
                                                    read_only=True))
        audiences = StaticAudienceSource(json.loads(env_str("DELIVERY_STATIC_AUDIENCES", "{}")))
        consent = _SqlConsentWriter()
    else:
        from services.common.clients import open_channel
        from services.common.config import service_address
        from services.delivery.grpc_sources import (
            GrpcConsentWriter,
            GrpcProfileDirectory,
            GrpcSegmentSource,
        )

        profile_channel = open_channel(service_address("profile"), settings.outbound_api_key)
        directory = GrpcProfileDirectory(profile_channel)
        consent = GrpcConsentWriter(profile_channel)
        audiences = GrpcSegmentSource(open_channel(service_address("segment"),
                                                   settings.outbound_api_key))
    config = DeliveryConfig(
        batch_size=env_int("DELIVERY_BATCH_SIZE", 1000),
        lease_ms=int(env_float("DELIVERY_CLAIM_LEASE_SECONDS", 30) * 1000),
        max_attempts=env_int("DELIVERY_MAX_ATTEMPTS", 5),
        retry_backoff_ms=int(env_float("DELIVERY_RETRY_BACKOFF_SECONDS", 30) * 1000),
        allow_private_webhooks=allow_private,
        opt_in_channels=frozenset(filter(None, env_str("DELIVERY_OPT_IN_CHANNELS",
                                                       "email,sms").split(","))),
        worker_id=env_str("DELIVERY_WORKER_ID", ""),
    )
    core = DeliveryCore(store, guard, router, directory, audiences, config)
    core.consent_writer = consent
    try:
        guard.ensure_ready(engine)
    except Exception:  # noqa: BLE001 - the scheduler retries; checks fail closed meanwhile
        log.warning("frequency caps not loaded yet; sends wait until they are")
    return core


class Scheduler:
    """Runs due work in the background; any number of replicas may run one."""

    def __init__(self, core: DeliveryCore, interval_s: float):
        self.core = core
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._loop, name="delivery-scheduler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.core.run_due()
            except Unavailable:
                # Redis lost the counters or is unreachable: send nothing until rebuilt.
                self.core.caps.ensure_ready(self.core.store.engine)
            except Exception:
                log.exception("scheduler pass failed")


class EffectWorkers:
    """The background work of triggers, outcomes and effects, started and stopped with the
    server: the trigger engine, the attribution consumer, a periodic pass (follow-ups, races,
    opt-out retries, gauges) and the signed webhook intake."""

    ATTRIBUTION_GROUP = "delivery-attribution"

    def __init__(self, core: DeliveryCore, redis_client, intake, stats):
        from services.delivery.followups import FollowUps
        from services.delivery.outcomes import Attribution
        from services.delivery.triggers import TriggeredSender

        self.core = core
        self.redis = redis_client
        self.intake = intake
        self.stats = stats
        self.sender = TriggeredSender(core)
        self.followups = FollowUps(core.store.engine, self.sender, core.clock)
        self.attribution = Attribution(core.store.engine, clock=core.clock)
        self.interval_s = env_float("DELIVERY_EFFECTS_INTERVAL_SECONDS", 5.0)
        self.consumer = f"{core.worker_id}"
        from services.delivery.triggers import EVENTS_STREAM

        # Its own group on profile:events, from "0"; a dead replica's unacknowledged batch is
        # taken over, so no goal event goes uncredited.
        self.attribution_reader = GroupReader(self.redis, EVENTS_STREAM, self.ATTRIBUTION_GROUP,
                                              self.consumer, count=1000)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.webhook = None
        self.webhook_port = 0

    def start(self) -> None:
        self._stop.clear()
        if env_bool("DELIVERY_TRIGGERS_ENABLED", True):
            from services.delivery.triggers import TriggerEngine

            engine = TriggerEngine(self.core.store.engine, self.redis, self.sender,
                                   clock=self.core.clock, consumer=self.consumer)
            self._spawn("delivery-triggers", lambda: engine.run(self._stop))
        if env_bool("DELIVERY_ERASURES_ENABLED", True):
            from services.delivery.erasure import ErasureConsumer

            erasures = ErasureConsumer(self.core.store.engine, self.redis,
                                       consumer=self.consumer, clock=self.core.clock)
            erasures.ensure_group()
            self._spawn("delivery-erasures", lambda: erasures.run(self._stop))
        if env_bool("DELIVERY_ATTRIBUTION_ENABLED", True):
            self.attribution_reader.ensure_group()
            self._spawn("delivery-attribution", self._attribution_loop)
        if self.interval_s > 0:
            self._spawn("delivery-effects", self._effects_loop)
        port = env_int("DELIVERY_WEBHOOK_INTAKE_PORT", 0)
        if port:
            from services.delivery.outcomes import WebhookIntake, serve_webhook

            secrets = {k: v.encode() for k, v in json.loads(
                env_str("DELIVERY_OUTCOME_WEBHOOK_SECRETS", "{}")).items()}
            self.webhook = serve_webhook(WebhookIntake(self.intake, secrets),
                                         env_str("DELIVERY_WEBHOOK_INTAKE_HOST", "127.0.0.1"),
                                         port)
            self.webhook_port = self.webhook.server_address[1]

    def stop(self) -> None:
        self._stop.set()
        if self.webhook is not None:
            self.webhook.shutdown()
            self.webhook.server_close()
            self.webhook = None
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def attribute_once(self, block_ms: int = 1000) -> int:
        """Reads one batch of ``profile:events`` (its own consumer group, at least once),
        credits goal events to sends, then acknowledges; returns the new conversions."""
        from services.delivery.outcomes import GoalEvent

        entries = self.attribution_reader.read(block_ms)
        if not entries:
            return 0
        events = []
        for entry_id, f in entries:
            try:
                value = f.get("value") or ""
                events.append(GoalEvent(f["event_id"], int(f["user_id"]), f["event_type"],
                                        int(f["ts_ms"]), float(value) if value else None))
            except (KeyError, ValueError):
                log.warning("unreadable profile:events entry %s skipped", entry_id)
        added = self.attribution.attribute(events)
        self.attribution_reader.ack(entries)
        return added

    def _attribution_loop(self) -> None:
        # The group is checked again after every failure: a Redis restarted without its
        # data has lost the stream and the group.
        consume_until(self._stop, self.attribution_reader.ensure_group, self.attribute_once,
                      log, "attribution")

    def effects_once(self) -> None:
        """Follow-ups, open races of live plans, opt-out retries, then the gauges."""
        from services.delivery.model import SENDABLE_STATES

        self.followups.enroll()
        self.followups.process_due()
        live = self.core.store.plan_ids_in_states(sorted(SENDABLE_STATES))
        for plan_id, touch_id in self.core.experiments.open_races(live):
            self.core.evaluate_race(plan_id, touch_id)
        self.intake.retry_pending_consents()
        self.stats.publish(live)

    def _effects_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.effects_once()
            except Exception:
                log.exception("effects pass failed")


def build(settings: Settings):
    from marketing.delivery.v1 import delivery_service_pb2_grpc as pb_grpc
    from services.common.server import ServiceDefinition
    from services.delivery.outcomes import OutcomeIntake
    from services.delivery.servicer import ROLES, DeliveryServicer
    from services.delivery.stats import EffectStats

    core = build_core(settings)
    scheduler = Scheduler(core, env_float("DELIVERY_SCHEDULER_INTERVAL_SECONDS", 1.0))
    intake = OutcomeIntake(core.store.engine, core.consent_writer, core.directory, core.clock)
    stats = EffectStats(core.store.engine)
    workers = EffectWorkers(core, core.caps.redis, intake, stats)

    def start() -> None:
        scheduler.start()
        workers.start()

    def stop() -> None:
        workers.stop()
        scheduler.stop()

    servicer = DeliveryServicer(core, intake, stats)
    servicer.workers = workers
    return [ServiceDefinition(
        name="delivery", register=pb_grpc.add_DeliveryServiceServicer_to_server,
        servicer=servicer, full_name="marketing.delivery.v1.DeliveryService",
        roles=ROLES, start=start, stop=stop,
    )]
