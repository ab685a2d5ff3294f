"""The segment service's settings: every ``SEGMENT_*`` variable with its meaning and default."""

from __future__ import annotations

ENV_VARS: dict[str, str] = {
    "SEGMENT_KNOWN_MODELS": "comma-separated model names whose scores rules may name, besides "
    "those already written to the scores table (empty)",
    "SEGMENT_CATALOG_TTL_SECONDS": "how long the attribute catalogue and known fields are "
    "cached for validation (30)",
    "SEGMENT_REALTIME_ENABLED": "consume profile:events and profile:changes (group segment) to "
    "keep real-time segments' membership current and publish segment:membership (1)",
    "SEGMENT_ERASURES_ENABLED": "consume profile:erasures (group segment-erasures) to remove "
    "erased users from real-time segments' live membership (1)",
    "SEGMENT_CONSUMER_NAME": "this replica's name in the consumer group segment (host name)",
    "SEGMENT_REALTIME_BATCH": "entries read per stream (events, profile changes) and "
    "re-checked together, one SQL per real-time segment per batch (500)",
    "SEGMENT_REALTIME_RECONCILE_SECONDS": "how often each real-time segment is evaluated in "
    "full and its live membership corrected, publishing entered/left for users whom time "
    "alone moved (a window passed, a tag lapsed, a sequence deadline passed); one replica per "
    "period does a given segment (lock segment:{s<id>}:reconcile:<period>); 0 turns it off "
    "(300)",
    "SEGMENT_MEMBERSHIP_MAXLEN": "approximate length cap of the segment:membership stream "
    "(1000000)",
    "SEGMENT_SNAPSHOT_CACHE_TTL_SECONDS": "how long a decoded snapshot is served from memory "
    "before its stored metadata is checked again, so a deletion through another replica is "
    "seen within this time (2)",
    "SEGMENT_SCHEDULER_INTERVAL_SECONDS": "how often scheduled snapshot refreshes are looked "
    "for (30)",
}
