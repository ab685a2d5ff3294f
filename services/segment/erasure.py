"""Erasure: removes erased users from real-time segments' live membership sets.

Redis keys:
- ``profile:erasures`` (read): the profile service's erasure notices (fields ``user_id``
  (internal), ``external_id``, ``aliases`` (JSON), ``kind`` (erased|deleted|merged),
  ``erasure_id``, ``ts_ms``), read by consumer group ``segment-erasures``.
- ``segment:{s<id>}:members`` (written): see ``services.segment.realtime``.

Choices:
- An erased or deleted user is removed from every live set without a ``left`` event on
  ``segment:membership``. A ``left`` event would carry the user's ids to every consumer of that
  stream after the user asked to be forgotten, and would start "left segment" journeys for
  someone who must no longer be contacted; the delivery service does its own erasure.
- A ``merged`` notice names the merged-away id: its rows now belong to the surviving user,
  whose own events re-check them. The merged-away id names no profile any more, so it is
  dropped from the live sets the same way; the surviving user is never touched.
- Snapshots need no rewrite: streamed members are resolved through the profile tables
  (``SegmentCore.external_ids``), where an erased id no longer exists, so it is never returned.

Delivery is at least once: a batch is acknowledged after the set removals are applied, entries
a dead consumer left pending are claimed after ``claim_idle_ms``, and removing an id that is
already gone is harmless, so a redelivered notice changes nothing.
"""

from __future__ import annotations

import logging
import threading

import redis

from services.common.streams import GroupReader, consume_until
from services.segment.core import SegmentCore
from services.segment.realtime import REMOVE_LUA, members_key

log = logging.getLogger("marketing.segment.erasure")

ERASURES_STREAM = "profile:erasures"
GROUP = "segment-erasures"
KINDS = ("erased", "deleted", "merged")


class ErasureConsumer:
    """Reads ``profile:erasures`` in batches; one pipelined round trip removes the batch's ids
    from every real-time segment's live set, then the batch is acknowledged."""

    def __init__(self, core: SegmentCore, client: redis.Redis, consumer: str = "",
                 batch_size: int = 500, claim_idle_ms: int = 60_000):
        self.core = core
        self.redis = client
        # Start at "0": notices published before the first start are still applied.
        self.reader = GroupReader(client, ERASURES_STREAM, GROUP, consumer, batch_size,
                                  claim_idle_ms)
        self.consumer = self.reader.consumer
        self._remove = client.register_script(REMOVE_LUA)

    def ensure_group(self) -> None:
        self.reader.ensure_group()

    def remove(self, user_ids) -> int:
        """Removes ``user_ids`` from every real-time segment's live set in one pipeline."""
        ids = sorted({int(u) for u in user_ids})
        if not ids:
            return 0
        keys = [members_key(row["id"]) for row in self.core.store.realtime_segments()]
        if not keys:
            return 0
        # One script call per set (each segment's key has its own hash tag): a set emptied
        # by the erasure stays loaded and empty instead of vanishing.
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            self._remove(keys=[key], args=ids, client=pipe)
        return sum(int(n) for n in pipe.execute())

    def poll_once(self, block_ms: int = 1000) -> int:
        """Reads one batch, removes its ids, acknowledges; returns the entries handled."""
        entries = self.reader.read(block_ms)
        if not entries:
            return 0
        ids = set()
        for entry_id, fields in entries:
            if fields.get("kind") not in KINDS:
                log.warning("erasure notice of unknown kind skipped", extra={"entry": entry_id})
                continue
            try:
                ids.add(int(fields["user_id"]))
            except (KeyError, ValueError):
                log.warning("erasure notice without a usable user_id", extra={"entry": entry_id})
        self.remove(ids)
        self.reader.ack(entries)
        return len(entries)

    def run(self, stop: threading.Event) -> None:
        """Consumes until ``stop`` is set; a Redis or database outage pauses, then retries."""
        consume_until(stop, self.ensure_group, self.poll_once, log, "erasure")
