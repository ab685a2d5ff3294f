"""What delivery reads from other services: audiences and contactability, behind small interfaces.

Production wiring goes through the segment and profile services' gRPC stubs
(``grpc_sources.py``); ``SqlProfileDirectory`` reads the profile store's published read-path
tables directly and read-only, for local runs and tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from pyroaring import BitMap
from sqlalchemy import and_, select
from sqlalchemy.engine import Engine

from services.common import profile_tables as pt

# Which profile attribute holds a channel's address (the rest address users by external id).
ADDRESS_ATTRIBUTES = {"email": "email", "sms": "phone"}


@dataclasses.dataclass(frozen=True)
class Contact:
    """Everything the guards need to know about one user for one channel."""

    user_id: int
    external_id: str
    time_zone: str = "UTC"
    quiet_start_minute: int | None = None
    quiet_end_minute: int | None = None
    notifications_disabled: bool = False
    app_uninstalled: bool = False
    # True: opted in; False: opted out (unsubscribed); None: no recorded choice.
    consent: bool | None = None
    address: str = ""


class AudienceSource(Protocol):
    """Resolves a segment to the internal ids of its members at this instant."""

    def snapshot(self, segment: str) -> BitMap: ...


class ProfileDirectory(Protocol):
    """Read access to the profile service for delivery."""

    def resolve(self, external_ids: Sequence[str]) -> dict[str, int]:
        """Internal ids of the given external ids (unknown ones are absent)."""

    def contactability(self, user_ids: Sequence[int], channel: str) -> dict[int, Contact]:
        """Contactability of many users for one channel, in one round trip."""

    def template_attributes(
        self, user_ids: Sequence[int], names: Iterable[str]
    ) -> dict[int, dict[str, Any]]:
        """Attribute and trait values by user for template rendering, in one round trip."""

    def attribute_names(self) -> set[str]:
        """The attribute catalogue's names (templates may only use these, traits and context)."""


class StaticAudienceSource:
    """Audiences held in memory by name (local runs and tests without a segment service)."""

    def __init__(self, audiences: Mapping[str, Iterable[int]] | None = None):
        self.audiences = {k: BitMap(v) for k, v in (audiences or {}).items()}

    def snapshot(self, segment: str) -> BitMap:
        from services.common.errors import NotFound

        if segment not in self.audiences:
            raise NotFound("segment", segment)
        return BitMap(self.audiences[segment])


CHUNK = 5000


def _chunks(items: Sequence, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class SqlProfileDirectory:
    """Reads the profile store's read-path tables through a read-only engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def resolve(self, external_ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(external_ids)):
                rows = conn.execute(
                    select(pt.profiles.c.external_id, pt.profiles.c.id).where(
                        pt.profiles.c.external_id.in_(chunk)
                    )
                )
                out.update({external_id: user_id for external_id, user_id in rows})
        return out

    def contactability(self, user_ids: Sequence[int], channel: str) -> dict[int, Contact]:
        p, c = pt.profiles, pt.consents
        address_attr = ADDRESS_ATTRIBUTES.get(channel)
        a = pt.profile_attributes
        columns = [
            p.c.id, p.c.external_id, p.c.time_zone, p.c.quiet_start_minute, p.c.quiet_end_minute,
            p.c.notifications_disabled, p.c.app_uninstalled, c.c.subscribed,
        ]
        joined = p.outerjoin(c, and_(c.c.user_id == p.c.id, c.c.channel == channel))
        if address_attr:
            joined = joined.outerjoin(a, and_(a.c.user_id == p.c.id, a.c.name == address_attr))
            columns.append(a.c.str_value)
        query = select(*columns).select_from(joined)
        out: dict[int, Contact] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(user_ids)):
                for row in conn.execute(query.where(p.c.id.in_(chunk))):
                    out[row[0]] = Contact(
                        user_id=row[0], external_id=row[1], time_zone=row[2] or "UTC",
                        quiet_start_minute=row[3], quiet_end_minute=row[4],
                        notifications_disabled=bool(row[5]), app_uninstalled=bool(row[6]),
                        consent=None if row[7] is None else bool(row[7]),
                        address=(row[8] or "") if address_attr else "",
                    )
        return out

    def template_attributes(
        self, user_ids: Sequence[int], names: Iterable[str]
    ) -> dict[int, dict[str, Any]]:
        wanted = set(names)
        out: dict[int, dict[str, Any]] = {uid: {} for uid in user_ids}
        a, t = pt.profile_attributes, pt.computed_traits
        trait_columns = [col for col in t.c if col.name in wanted]
        attr_names = wanted - {col.name for col in t.c}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(user_ids)):
                if attr_names:
                    rows = conn.execute(
                        select(a.c.user_id, a.c.name, a.c.str_value, a.c.num_value, a.c.bool_value,
                               a.c.ts_value, a.c.list_value)
                        .where(a.c.user_id.in_(chunk), a.c.name.in_(sorted(attr_names)))
                    )
                    for uid, name, *values in rows:
                        out[uid][name] = next((v for v in values if v is not None), None)
                if trait_columns:
                    rows = conn.execute(
                        select(t.c.user_id, *trait_columns).where(t.c.user_id.in_(chunk))
                    )
                    for row in rows:
                        for col, value in zip(trait_columns, row[1:]):
                            out[row[0]][col.name] = value
        return out

    def attribute_names(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(pt.attribute_catalog.c.name)).scalars())
