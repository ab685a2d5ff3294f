"""The fields a rule may name: catalogued attributes, computed traits and known model scores."""

from __future__ import annotations

import dataclasses
import threading
import time

from sqlalchemy import select
from sqlalchemy.engine import Engine

from services.common import profile_tables as pt
from services.segment.rules import FieldRef, Source

# Computed traits a rule may compare, with their value type and column.
TRAITS: dict[str, tuple[str, object]] = {
    "recency_days": ("number", pt.computed_traits.c.recency_days),
    "frequency": ("number", pt.computed_traits.c.frequency),
    "monetary": ("number", pt.computed_traits.c.monetary),
    "r_score": ("number", pt.computed_traits.c.r_score),
    "f_score": ("number", pt.computed_traits.c.f_score),
    "m_score": ("number", pt.computed_traits.c.m_score),
    "rfm_group": ("string", pt.computed_traits.c.rfm_group),
    "lifecycle_stage": ("string", pt.computed_traits.c.lifecycle_stage),
    "first_seen": ("timestamp", pt.computed_traits.c.first_seen_ms),
    "last_seen": ("timestamp", pt.computed_traits.c.last_seen_ms),
    "last_purchase": ("timestamp", pt.computed_traits.c.last_purchase_ms),
}

# The value types of the attribute catalogue.
VALUE_TYPES = ("string", "number", "bool", "timestamp", "string_list")

# Channels a consent leaf may name (the common Channel enum, lower case without prefix).
CHANNELS = ("push", "sms", "email", "wechat", "in_app", "webhook", "coupon")


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A field bound to where it lives: source ATTRIBUTE, TRAIT or SCORE, and its type."""

    source: Source
    name: str
    value_type: str


@dataclasses.dataclass(frozen=True)
class Catalog:
    """A snapshot of what rules may name."""

    attributes: dict[str, str]
    models: frozenset[str]

    def resolve(self, field: FieldRef) -> Resolved | None:
        """Looks a field up; AUTO prefers attributes, then traits, then model scores."""
        order = (
            [Source.ATTRIBUTE, Source.TRAIT, Source.SCORE]
            if field.source is Source.AUTO else [field.source]
        )
        for source in order:
            if source is Source.ATTRIBUTE and field.name in self.attributes:
                return Resolved(source, field.name, self.attributes[field.name])
            if source is Source.TRAIT and field.name in TRAITS:
                return Resolved(source, field.name, TRAITS[field.name][0])
            if source is Source.SCORE and field.name in self.models:
                return Resolved(source, field.name, "number")
        return None


def load_catalog(engine: Engine, extra_models: tuple[str, ...] = ()) -> Catalog:
    """Reads the attribute catalogue and the models that have written scores."""
    with engine.connect() as connection:
        attributes = dict(
            connection.execute(
                select(pt.attribute_catalog.c.name, pt.attribute_catalog.c.value_type)
            ).all()
        )
        models = connection.execute(select(pt.scores.c.model_name).distinct()).scalars().all()
    return Catalog(attributes, frozenset(models) | frozenset(extra_models))


class CatalogCache:
    """Reloads the catalogue at most every ``ttl_s`` seconds, so each rule does not."""

    def __init__(self, engine: Engine, ttl_s: float = 30.0, extra_models: tuple[str, ...] = (),
                 refresh_min_age_s: float = 1.0):
        self.engine, self.ttl_s, self.extra_models = engine, ttl_s, extra_models
        self.refresh_min_age_s = refresh_min_age_s
        self._lock = threading.Lock()
        self._value: Catalog | None = None
        self._loaded = 0.0

    def get(self) -> Catalog:
        with self._lock:
            if self._value is None or time.monotonic() - self._loaded > self.ttl_s:
                self._value = load_catalog(self.engine, self.extra_models)
                self._loaded = time.monotonic()
            return self._value

    def refresh(self) -> bool:
        """Reloads now unless the cached catalogue is younger than ``refresh_min_age_s``; says
        whether it reloaded. Validation calls this on a miss, so an attribute just declared or
        a model's scores just written are usable at once, while a stream of bad rules still
        reads the catalogue at most once a ``refresh_min_age_s``."""
        with self._lock:
            if (self._value is not None
                    and time.monotonic() - self._loaded < self.refresh_min_age_s):
                return False
            self._value = load_catalog(self.engine, self.extra_models)
            self._loaded = time.monotonic()
            return True

    def invalidate(self) -> None:
        with self._lock:
            self._value = None
