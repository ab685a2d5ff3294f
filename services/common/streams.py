"""Reading a Redis stream through a consumer group: at least once, with take-over of entries
a dead consumer left unacknowledged."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

import redis


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def consume_until(stop: threading.Event, ensure_group: Callable[[], None],
                  poll_once: Callable[[], object], log: logging.Logger, what: str) -> None:
    """A consumer's loop: makes sure its group exists, then polls until ``stop`` is set. A
    Redis or database outage is logged and the loop starts again a second later, group
    check included (the stream may have been recreated meanwhile)."""
    while not stop.is_set():
        try:
            ensure_group()
            while not stop.is_set():
                poll_once()
        except Exception:
            log.exception("%s pass failed", what)
            stop.wait(1.0)


def default_consumer_name() -> str:
    """This process's name inside a consumer group: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


class GroupReader:
    """One consumer of one stream in one group.

    ``read`` first claims entries that any consumer of the group read but did not acknowledge
    for ``claim_idle_ms`` (a crashed replica's batch), then reads new ones. Callers handle a
    batch and ``ack`` it once its effects are committed; handling must therefore be
    idempotent, since a batch whose ack was lost comes back.
    """

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str = "",
                 count: int = 500, claim_idle_ms: int = 60_000, start_id: str = "0"):
        self.redis = client
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self.count = count
        self.claim_idle_ms = claim_idle_ms
        self.start_id = start_id  # "0": entries published before the group existed count too

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, block_ms: int = 1000) -> list[tuple[str, dict[str, str]]]:
        """A batch of (entry id, fields), decoded; empty when nothing came within ``block_ms``."""
        claimed = self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                        self.claim_idle_ms, "0-0", count=self.count)[1]
        entries = [(text(i), _fields(f)) for i, f in claimed if f]
        if entries:
            return entries
        reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                      count=self.count, block=block_ms or None)
        return [(text(i), _fields(f)) for _, items in reply or [] for i, f in items]

    def ack(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        if entries:
            self.redis.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])


def _fields(raw) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}
