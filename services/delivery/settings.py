"""The delivery service's settings: every ``DELIVERY_*`` variable with its meaning and default."""

from __future__ import annotations

ENV_VARS: dict[str, str] = {
    "DELIVERY_FREQUENCY_CAPS": "JSON list of cap rules (see caps.CapRule) (2 pushes per local "
    "day, 1 SMS per local day, 5 marketing messages per rolling 7 days)",
    "DELIVERY_GATEWAYS": "JSON routing of channels to gateways (see gateways.build_router); "
    "holds SMTP passwords, so keep it in a Secret (every channel to the recording sink)",
    "DELIVERY_WEBHOOK_SECRET": "HMAC-SHA256 key that signs webhook bodies; a webhook route "
    "without it is refused at start (empty)",
    "DELIVERY_WEBHOOK_ALLOW_PRIVATE": "1 lets webhooks reach private, loopback and link-local "
    "addresses (0)",
    "DELIVERY_BATCH_SIZE": "recipients claimed, guarded and sent per batch (1000)",
    "DELIVERY_CLAIM_LEASE_SECONDS": "how long a worker owns claimed recipients before another "
    "may take them over (30)",
    "DELIVERY_MAX_ATTEMPTS": "gateway attempts before a message is dead-lettered (5)",
    "DELIVERY_RETRY_BACKOFF_SECONDS": "first retry delay, doubled each attempt (30)",
    "DELIVERY_SCHEDULER_INTERVAL_SECONDS": "background scheduler period; 0 disables it (1)",
    "DELIVERY_WORKER_ID": "name of this worker in the ledger's claims (host-pid)",
    "DELIVERY_OPT_IN_CHANNELS": "channels that need a recorded opt-in before any marketing "
    "send; others need only the absence of an opt-out (email,sms)",
    "DELIVERY_TRIGGERS_ENABLED": "consume profile:events and segment:membership (group "
    "delivery-triggers) for event-triggered touches and fire their timers (1)",
    "DELIVERY_ERASURES_ENABLED": "consume profile:erasures (group delivery-erasures) and "
    "delete erased users' messages, dead-letter reasons, follow-ups and timers (1)",
    "DELIVERY_ATTRIBUTION_ENABLED": "consume profile:events (group delivery-attribution) and "
    "credit plans' goal events to their sends, last touch (1)",
    "DELIVERY_EFFECTS_INTERVAL_SECONDS": "how often follow-ups advance, open races are "
    "evaluated, pending opt-outs retried and effect gauges published; 0 off (5)",
    "DELIVERY_WEBHOOK_INTAKE_PORT": "port of the signed outcome webhook intake, POST "
    "/v1/outcomes/<vendor>; 0 off (0)",
    "DELIVERY_WEBHOOK_INTAKE_HOST": "interface of the outcome webhook intake (127.0.0.1)",
    "DELIVERY_OUTCOME_WEBHOOK_SECRETS": "JSON object vendor -> HMAC key for the outcome "
    "intake ({})",
    "DELIVERY_PROFILE_SOURCE": "grpc (PROFILE_ADDR, SEGMENT_ADDR) or sql (read-only read path "
    "at PROFILE_READ_DATABASE_URL, audiences from DELIVERY_STATIC_AUDIENCES; for local runs "
    "without the other services) (grpc)",
    "DELIVERY_STATIC_AUDIENCES": "with DELIVERY_PROFILE_SOURCE=sql: JSON object audience "
    "name -> internal user ids ({})",
}
