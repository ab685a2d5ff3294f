"""SQL of the profile service (SQLAlchemy Core, bound parameters, bulk statements)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from services.common.profile_tables import (
    attribute_catalog,
    computed_traits,
    consents,
    event_type_counts,
    events,
    profile_attributes,
    profile_tags,
    profiles,
    scores,
)
from services.profile.tables import identity_links, publish_backlog

# Bound parameters per statement stay far below SQLite's (32766) and PostgreSQL's (65535) caps.
IN_CHUNK = 900


def chunks(items: Sequence, size: int = IN_CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_set(conn: Connection, column, values: Iterable):
    """``column IN values`` with the whole set bound as one parameter.

    PostgreSQL receives an array (``= ANY``), SQLite a JSON array it unpacks with
    ``json_each``. One parameter keeps the statement text constant whatever the set's size,
    so it compiles once and is cached, and no set has to be cut to fit a parameter limit.
    """
    values = list(values)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    packed = bindparam(None, json.dumps(values), type_=String)
    return column.in_(select(literal_column("value")).select_from(func.json_each(packed)))


def dialect_insert(conn: Connection, table):
    """An INSERT supporting ON CONFLICT on the connection's engine (SQLite or PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the profile store needs SQLite or PostgreSQL, not {conn.dialect.name}")


def insert_ignore(conn: Connection, table, rows: list[dict], key: Sequence[str]) -> None:
    """Inserts ``rows`` in one executemany, skipping those whose ``key`` already exists."""
    if rows:
        conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(index_elements=key), rows)


def upsert(conn: Connection, table, rows: list[dict], key: Sequence[str], where=None) -> None:
    """Inserts or overwrites ``rows`` (all non-key columns) in one executemany."""
    if not rows:
        return
    stmt = dialect_insert(conn, table)
    columns = [c for c in rows[0] if c not in key]
    stmt = stmt.on_conflict_do_update(
        index_elements=key,
        set_={c: stmt.excluded[c] for c in columns},
        where=where(stmt) if where else None,
    )
    conn.execute(stmt, rows)


# --- users -----------------------------------------------------------------------------------


def resolve_ids(conn: Connection, external_ids: Iterable[str]) -> dict[str, int]:
    """Internal ids of known external ids, following identity links of merged aliases."""
    wanted = list(dict.fromkeys(external_ids))
    if not wanted:
        return {}
    found: dict[str, int] = dict(
        conn.execute(
            select(profiles.c.external_id, profiles.c.id).where(
                in_set(conn, profiles.c.external_id, wanted)
            )
        ).all()
    )
    found.update(
        conn.execute(
            select(identity_links.c.alias_external_id, identity_links.c.user_id).where(
                in_set(conn, identity_links.c.alias_external_id, wanted)
            )
        ).all()
    )
    return found


def traits_rows(conn: Connection, user_ids: Iterable[int]) -> list:
    """Computed traits, per-event-type counts and model scores of many users in ONE statement.

    The counts and the scores are stacked (UNION ALL, told apart by ``d_kind``) and joined to
    the users with their computed traits, so the result has one row per user and count or
    score, the traits repeated on each; a user with neither has one row of nulls. The users
    drive the join, so a user without any traits still comes back.
    """
    ids = list(set(user_ids))
    if not ids:
        return []
    counts = select(
        event_type_counts.c.user_id.label("d_user"),
        literal_column("'count'", String).label("d_kind"),
        event_type_counts.c.event_type.label("d_key"),
        event_type_counts.c.count_7d,
        event_type_counts.c.count_30d,
        event_type_counts.c.count_90d,
        event_type_counts.c.count_total,
        cast(null(), Float).label("score"),
        cast(null(), String).label("model_version"),
        cast(null(), BigInteger).label("scored_ms"),
    ).where(in_set(conn, event_type_counts.c.user_id, ids))
    model_scores = select(
        scores.c.user_id,
        literal_column("'score'", String),
        scores.c.model_name,
        cast(null(), Integer),
        cast(null(), Integer),
        cast(null(), Integer),
        cast(null(), Integer),
        scores.c.score,
        scores.c.model_version,
        scores.c.scored_ms,
    ).where(in_set(conn, scores.c.user_id, ids))
    detail = counts.union_all(model_scores).subquery("detail")
    stmt = (
        select(profiles.c.id.label("profile_id"), computed_traits, *[
            c for c in detail.c if c.name != "d_user"
        ])
        .select_from(
            profiles.outerjoin(computed_traits, computed_traits.c.user_id == profiles.c.id)
            .outerjoin(detail, detail.c.d_user == profiles.c.id)
        )
        .where(in_set(conn, profiles.c.id, ids))
        .order_by(profiles.c.id, detail.c.d_kind, detail.c.d_key)
    )
    return conn.execute(stmt).mappings().all()


def existing_user_ids(conn: Connection, user_ids: Iterable[int]) -> set[int]:
    wanted = list(set(user_ids))
    if not wanted:
        return set()
    return set(conn.execute(select(profiles.c.id).where(in_set(conn, profiles.c.id, wanted))).scalars())


def create_bare_profiles(conn: Connection, external_ids: Sequence[str], now_ms: int) -> dict[str, int]:
    """Creates profiles for ``external_ids`` in one statement; returns the ids it created.

    An id another transaction created meanwhile is skipped (ON CONFLICT) and absent from
    the result, so the caller resolves it again.
    """
    if not external_ids:
        return {}
    if conn.dialect.name == "postgresql":
        return dict(conn.exec_driver_sql(
            "INSERT INTO profiles (external_id, created_ms, updated_ms) "
            "SELECT e, %s, %s FROM json_array_elements_text(%s::json) WITH ORDINALITY AS x(e, n) "
            "ORDER BY n ON CONFLICT (external_id) DO NOTHING RETURNING external_id, id",
            (now_ms, now_ms, json.dumps(list(external_ids))),
        ).all())
    created: dict[str, int] = {}
    for part in chunks(external_ids, SQLITE_ROWS_PER_INSERT):
        holes = ",".join(["(?,?,?)"] * len(part))
        params = [value for e in part for value in (e, now_ms, now_ms)]
        created.update(conn.exec_driver_sql(
            f"INSERT INTO profiles (external_id, created_ms, updated_ms) VALUES {holes} "
            "ON CONFLICT (external_id) DO NOTHING RETURNING external_id, id",
            tuple(params),
        ).all())
    return created


# SQLite binds at most 32766 parameters per statement: 5000 rows of up to 6 columns fit.
SQLITE_ROWS_PER_INSERT = 5000

EVENT_COLUMNS = "event_id, user_id, event_type, ts_ms, value, properties"


def insert_events(conn: Connection, rows: Sequence[tuple]) -> dict[str, int]:
    """Stores (event_id, user_id, event_type, ts_ms, value, properties JSON text) tuples.

    Returns event_id -> row id of the rows this call stored. The statement goes to the
    driver as written: SQLAlchemy's per-row parameter processing cost more than the insert.
    ON CONFLICT DO NOTHING makes a re-sent id a no-op even when two calls race, and
    RETURNING names exactly the rows stored here, so each is counted and announced once.
    PostgreSQL receives the rows as one JSON array, SQLite as multi-row VALUES.
    """
    if not rows:
        return {}
    if conn.dialect.name == "postgresql":
        # One JSON parameter: psycopg adapts a Python list element by element in Python,
        # which cost more than the insert, while json.dumps packs the rows in C.
        return dict(conn.exec_driver_sql(
            f"INSERT INTO events ({EVENT_COLUMNS}) "
            "SELECT r->>0, (r->>1)::bigint, r->>2, (r->>3)::bigint, (r->>4)::float8, (r->>5)::json "
            "FROM json_array_elements(%s::json) AS r "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id",
            (json.dumps(rows, separators=(",", ":")),),
        ).all())
    stored: dict[str, int] = {}
    # The DBAPI cursor of this transaction's connection: plain tuples back, no Row objects.
    cursor = conn.connection.cursor()
    try:
        for part in chunks(rows, SQLITE_ROWS_PER_INSERT):
            holes = ",".join(["(?,?,?,?,?,?)"] * len(part))
            cursor.execute(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES {holes} "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id",
                tuple(itertools.chain.from_iterable(part)),
            )
            stored.update(cursor.fetchall())
    finally:
        cursor.close()
    return stored


def profile_rows(conn: Connection, user_ids: Sequence[int]) -> list:
    if not user_ids:
        return []
    return conn.execute(
        select(profiles).where(in_set(conn, profiles.c.id, user_ids))
    ).mappings().all()


def attribute_rows(conn: Connection, user_ids: Sequence[int]) -> list:
    """Attribute rows of ``user_ids``; ``list_value`` comes back as JSON text (or None).

    The list column is read as text because the JSON type's per-row result processing cost
    more than the rest of a batch read while most rows hold no list at all.
    """
    if not user_ids:
        return []
    columns = [
        type_coerce(c, Text).label(c.name) if c.name == "list_value" else c
        for c in profile_attributes.columns
    ]
    return conn.execute(
        select(*columns).where(in_set(conn, profile_attributes.c.user_id, user_ids))
    ).mappings().all()


def live_tag_rows(conn: Connection, user_ids: Sequence[int], now_ms: int) -> list:
    if not user_ids:
        return []
    return conn.execute(
        select(profile_tags).where(
            in_set(conn, profile_tags.c.user_id, user_ids),
            or_(profile_tags.c.expires_ms.is_(None), profile_tags.c.expires_ms > now_ms),
        ).order_by(profile_tags.c.user_id, profile_tags.c.tag)
    ).mappings().all()


def catalog(conn: Connection) -> dict[str, dict]:
    return {
        row["name"]: dict(row)
        for row in conn.execute(select(attribute_catalog)).mappings()
    }


def list_profile_ids(
    conn: Connection,
    *,
    after_id: int,
    limit: int,
    now_ms: int,
    tag: str | None = None,
    rfm_group: str | None = None,
    lifecycle_stage: str | None = None,
    attribute: tuple[str, str, object] | None = None,
    created_after_ms: int | None = None,
) -> list[int]:
    """One keyset page of internal ids matching every given filter, in id order."""
    query = select(profiles.c.id).where(profiles.c.id > after_id)
    if tag is not None:
        query = query.where(
            exists().where(
                profile_tags.c.user_id == profiles.c.id,
                profile_tags.c.tag == tag,
                or_(profile_tags.c.expires_ms.is_(None), profile_tags.c.expires_ms > now_ms),
            )
        )
    if rfm_group is not None or lifecycle_stage is not None:
        conditions = [computed_traits.c.user_id == profiles.c.id]
        if rfm_group is not None:
            conditions.append(computed_traits.c.rfm_group == rfm_group)
        if lifecycle_stage is not None:
            conditions.append(computed_traits.c.lifecycle_stage == lifecycle_stage)
        query = query.where(exists().where(*conditions))
    if attribute is not None:
        name, column, value = attribute
        query = query.where(
            exists().where(
                profile_attributes.c.user_id == profiles.c.id,
                profile_attributes.c.name == name,
                profile_attributes.c[column] == value,
            )
        )
    if created_after_ms is not None:
        query = query.where(profiles.c.created_ms > created_after_ms)
    return list(conn.execute(query.order_by(profiles.c.id).limit(limit)).scalars())


def delete_user_data(conn: Connection, user_id: int) -> dict[str, int]:
    """Removes every row about one user from every table; returns rows removed per table."""
    counts: dict[str, int] = {}
    counts[publish_backlog.name] = conn.execute(
        delete(publish_backlog).where(
            publish_backlog.c.event_row_id.in_(select(events.c.id).where(events.c.user_id == user_id))
        )
    ).rowcount
    for table in (
        events,
        profile_attributes,
        profile_tags,
        computed_traits,
        event_type_counts,
        scores,
        consents,
    ):
        counts[table.name] = conn.execute(delete(table).where(table.c.user_id == user_id)).rowcount
    counts[identity_links.name] = conn.execute(
        delete(identity_links).where(identity_links.c.user_id == user_id)
    ).rowcount
    counts[profiles.name] = conn.execute(delete(profiles).where(profiles.c.id == user_id)).rowcount
    return counts


def merge_user_rows(conn: Connection, alias_id: int, user_id: int) -> None:
    """Moves an alias profile's events, attributes, tags and consents onto ``user_id``.

    The known user's own attributes, tags and consents win where both have one; the alias's
    scores and traits are dropped (the known user's traits are refreshed by the caller).
    """
    conn.execute(update(events).where(events.c.user_id == alias_id).values(user_id=user_id))
    for table, key in (
        (profile_attributes, "name"),
        (profile_tags, "tag"),
        (consents, "channel"),
    ):
        mine = table.alias("mine")
        columns = [c.name for c in table.columns]
        source = select(
            *[literal(user_id).label("user_id") if c == "user_id" else table.c[c] for c in columns]
        ).where(
            table.c.user_id == alias_id,
            ~exists().where(and_(mine.c.user_id == user_id, mine.c[key] == table.c[key])),
        )
        conn.execute(table.insert().from_select(columns, source))
        conn.execute(delete(table).where(table.c.user_id == alias_id))
    for table in (scores, computed_traits, event_type_counts):
        conn.execute(delete(table).where(table.c.user_id == alias_id))
    conn.execute(
        update(identity_links).where(identity_links.c.user_id == alias_id).values(user_id=user_id)
    )
    conn.execute(delete(profiles).where(profiles.c.id == alias_id))


def count(conn: Connection, table, *where) -> int:
    return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
