"""Assembles the delivery service from settings: stores, Redis, sources, gateways, scheduler.

Service settings (environment, with defaults):

- ``DELIVERY_FREQUENCY_CAPS``: JSON list of cap rules (see ``caps.CapRule``); default: 2
  pushes per local day, 1 SMS per local day, 5 marketing messages per rolling 7 days.
- ``DELIVERY_GATEWAYS``: JSON routing of channels to gateways (see ``gateways.build_router``);
  default: every channel to the recording sink.
- ``DELIVERY_WEBHOOK_SECRET``: HMAC-SHA256 key for webhook signatures (default empty: unsigned
  keys are refused at start when a webhook route exists).
- ``DELIVERY_WEBHOOK_ALLOW_PRIVATE``: 1 lets webhooks reach private/loopback/link-local
  addresses (default 0).
- ``DELIVERY_BATCH_SIZE`` (1000), ``DELIVERY_CLAIM_LEASE_SECONDS`` (30),
  ``DELIVERY_MAX_ATTEMPTS`` (5), ``DELIVERY_RETRY_BACKOFF_SECONDS`` (30),
  ``DELIVERY_SCHEDULER_INTERVAL_SECONDS`` (1; 0 disables the background scheduler),
  ``DELIVERY_WORKER_ID`` (default host-pid).
- ``DELIVERY_OPT_IN_CHANNELS`` (``email,sms``): channels that need a recorded opt-in.
- ``DELIVERY_PROFILE_SOURCE``: ``grpc`` (default; PROFILE_ADDR and SEGMENT_ADDR) or ``sql``
  (read the profile store's read-path tables at PROFILE_READ_DATABASE_URL, read-only, with
  audiences from ``DELIVERY_STATIC_AUDIENCES``, a JSON object of name -> user ids; for local
  runs without the other services).
"""

from __future__ import annotations

import json
import logging
import threading

from services.common.config import Settings, env_bool, env_float, env_int, env_str
from services.common.db import make_engine
from services.common.errors import Unavailable
from services.common.redis_client import connect_redis
from services.delivery import caps as caps_mod
from services.delivery.core import DeliveryConfig, DeliveryCore
from services.delivery.gateways import build_router
from services.delivery.store import Store, open_engine

log = logging.getLogger(__name__)


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
    else:
        from services.common.clients import open_channel
        from services.common.config import service_address
        from services.delivery.grpc_sources import GrpcProfileDirectory, GrpcSegmentSource

        directory = GrpcProfileDirectory(open_channel(service_address("profile"),
                                                      settings.outbound_api_key))
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


def build(settings: Settings):
    from marketing.delivery.v1 import delivery_service_pb2_grpc as pb_grpc
    from services.common.server import ServiceDefinition
    from services.delivery.servicer import ROLES, DeliveryServicer

    core = build_core(settings)
    scheduler = Scheduler(core, env_float("DELIVERY_SCHEDULER_INTERVAL_SECONDS", 1.0))
    return [ServiceDefinition(
        name="delivery", register=pb_grpc.add_DeliveryServiceServicer_to_server,
        servicer=DeliveryServicer(core), full_name="marketing.delivery.v1.DeliveryService",
        roles=ROLES, start=scheduler.start, stop=scheduler.stop,
    )]
