"""Profile service settings read from ``PROFILE_*`` environment variables, with defaults."""

from __future__ import annotations

import dataclasses
import datetime as dt

from services.common.config import env_int, env_str

DAY_MS = 86_400_000

# Every setting of the profile service: variable, default and meaning (kept next to the code
# so the documentation cannot drift from what is read).
ENV_VARS: dict[str, str] = {
    "PROFILE_RETENTION_DAYS": "events older than this many days are pruned; 0 keeps them (0)",
    "PROFILE_UNKNOWN_USER": "an event for an unknown user: 'create' a profile or 'refuse' (create)",
    "PROFILE_MAX_BATCH_EVENTS": "most events in one IngestEvents call or stream message (10000)",
    "PROFILE_MAX_BATCH_ITEMS": "most ids or items in other batch calls (1000)",
    "PROFILE_MAX_FUTURE_SKEW_SECONDS": "how far past the wall clock an event may be stamped (300)",
    "PROFILE_RFM_WINDOW_DAYS": "frequency and monetary count purchases this far back; 0: all (365)",
    "PROFILE_PURCHASE_EVENT_TYPES": "comma-separated event types that are purchases (purchase)",
    "PROFILE_LIFECYCLE_NEW_DAYS": "first seen within this many days: stage 'new' (30)",
    "PROFILE_LIFECYCLE_ACTIVE_DAYS": "last seen within this many days: 'active' (30)",
    "PROFILE_LIFECYCLE_DORMANT_DAYS": "last seen within this many days: 'dormant', else 'churned' (90)",
    "PROFILE_AS_OF": "fixed 'now' for traits (ISO date or epoch ms), for demos on history (unset)",
    "PROFILE_EVENTS_STREAM_MAXLEN": "approximate length cap of the profile:events stream (1000000)",
    "PROFILE_CHANGES_STREAM_MAXLEN": "approximate length cap of the profile:changes stream, one "
    "entry per user whose attributes, tags, traits, scores, consent or identity a write changed "
    "(1000000)",
    "PROFILE_ANNOUNCE_GRACE_SECONDS": "how long after its commit a batch of events or a "
    "profile change may still be on its way to Redis; one still unannounced then was left "
    "behind (its process stopped, or Redis failed) and the maintenance pass announces it. "
    "Keep it above any commit-to-publish delay and any clock skew between replicas (60)",
    "PROFILE_STREAM_FLUSH_EVENTS": "StreamEvents commits once this many events are buffered (5000)",
    "PROFILE_STREAM_TRAITS": "traits of streamed events: 'sync' (refreshed in each batch's "
    "transaction, fresh when the stream answers) or 'background' (refreshed by one thread when "
    "the stream ends and about every second while it lasts; the answer does not wait, so "
    "traits lag the commit by up to a second plus one refresh round, about 0.1 s per 20000 "
    "events) (sync)",
    "PROFILE_OPT_OUT_CHANNELS": "channels where no consent record means subscribed (in_app,coupon)",
    "PROFILE_MAINTENANCE_INTERVAL_SECONDS": "period of pruning and of announcing what was left "
    "unannounced (also run at start); 0 disables (300)",
    "PROFILE_FULL_RECOMPUTE_INTERVAL_SECONDS": "full traits recompute period; 0 disables (3600)",
}

CHANNELS = ("push", "sms", "email", "wechat", "in_app", "webhook", "coupon")


def parse_instant_ms(raw: str) -> int:
    """Epoch milliseconds from either an integer or an ISO-8601 date/time (UTC if naive)."""
    raw = raw.strip()
    if raw.lstrip("-").isdigit():
        return int(raw)
    moment = dt.datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """The rules a deployment tunes; see ``ENV_VARS`` for each one's meaning."""

    retention_days: int = 0
    unknown_user: str = "create"
    max_batch_events: int = 10_000
    max_batch_items: int = 1_000
    max_future_skew_s: int = 300
    rfm_window_days: int = 365
    purchase_event_types: tuple[str, ...] = ("purchase",)
    lifecycle_new_days: int = 30
    lifecycle_active_days: int = 30
    lifecycle_dormant_days: int = 90
    as_of_ms: int | None = None
    events_stream_maxlen: int = 1_000_000
    changes_stream_maxlen: int = 1_000_000
    announce_grace_s: int = 60
    stream_flush_events: int = 5_000
    stream_traits: str = "sync"
    opt_out_channels: tuple[str, ...] = ("in_app", "coupon")
    maintenance_interval_s: int = 300
    full_recompute_interval_s: int = 3600

    def __post_init__(self) -> None:
        if self.unknown_user not in ("create", "refuse"):
            raise ValueError("PROFILE_UNKNOWN_USER must be 'create' or 'refuse'")
        if self.stream_traits not in ("background", "sync"):
            raise ValueError("PROFILE_STREAM_TRAITS must be 'background' or 'sync'")
        if self.stream_flush_events <= 0:
            raise ValueError("PROFILE_STREAM_FLUSH_EVENTS must be positive")
        if not (
            0 < self.lifecycle_active_days <= self.lifecycle_dormant_days
            and self.lifecycle_new_days > 0
        ):
            raise ValueError("lifecycle thresholds must be positive and active <= dormant")
        unknown = set(self.opt_out_channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"PROFILE_OPT_OUT_CHANNELS has unknown channels {sorted(unknown)}")
        if self.max_batch_events <= 0 or self.max_batch_items <= 0:
            raise ValueError("batch limits must be positive")
        if self.announce_grace_s < 0:
            raise ValueError("PROFILE_ANNOUNCE_GRACE_SECONDS must not be negative")

    @classmethod
    def from_env(cls, **overrides) -> ProfileConfig:
        as_of = env_str("PROFILE_AS_OF", "")
        values = {
            "retention_days": env_int("PROFILE_RETENTION_DAYS", 0),
            "unknown_user": env_str("PROFILE_UNKNOWN_USER", "create"),
            "max_batch_events": env_int("PROFILE_MAX_BATCH_EVENTS", 10_000),
            "max_batch_items": env_int("PROFILE_MAX_BATCH_ITEMS", 1_000),
            "max_future_skew_s": env_int("PROFILE_MAX_FUTURE_SKEW_SECONDS", 300),
            "rfm_window_days": env_int("PROFILE_RFM_WINDOW_DAYS", 365),
            "purchase_event_types": _csv(env_str("PROFILE_PURCHASE_EVENT_TYPES", "purchase")),
            "lifecycle_new_days": env_int("PROFILE_LIFECYCLE_NEW_DAYS", 30),
            "lifecycle_active_days": env_int("PROFILE_LIFECYCLE_ACTIVE_DAYS", 30),
            "lifecycle_dormant_days": env_int("PROFILE_LIFECYCLE_DORMANT_DAYS", 90),
            "as_of_ms": parse_instant_ms(as_of) if as_of else None,
            "events_stream_maxlen": env_int("PROFILE_EVENTS_STREAM_MAXLEN", 1_000_000),
            "changes_stream_maxlen": env_int("PROFILE_CHANGES_STREAM_MAXLEN", 1_000_000),
            "announce_grace_s": env_int("PROFILE_ANNOUNCE_GRACE_SECONDS", 60),
            "stream_flush_events": env_int("PROFILE_STREAM_FLUSH_EVENTS", 5_000),
            "stream_traits": env_str("PROFILE_STREAM_TRAITS", "sync"),
            "opt_out_channels": _csv(env_str("PROFILE_OPT_OUT_CHANNELS", "in_app,coupon")),
            "maintenance_interval_s": env_int("PROFILE_MAINTENANCE_INTERVAL_SECONDS", 300),
            "full_recompute_interval_s": env_int("PROFILE_FULL_RECOMPUTE_INTERVAL_SECONDS", 3600),
        }
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes) -> ProfileConfig:
        return dataclasses.replace(self, **changes)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())
