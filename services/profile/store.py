"""SQL of the profile service (SQLAlchemy Core, bound parameters, bulk statements)."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import (
    JSON,
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
    event,
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
from sqlalchemy.engine import Connection, Engine

from services.common.db import make_engine
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
from services.profile.tables import identity_links

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


def bound_set(dialect: str, column, name: str):
    """``column IN :name``, the set bound later as ONE parameter (see ``bound_set_value``).

    The form of ``in_set`` for statements built once and executed many times.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(
        select(literal_column("value")).select_from(func.json_each(bindparam(name, type_=String)))
    )


def bound_set_value(dialect: str, values: Iterable):
    """The parameter value of a ``bound_set``: a list on PostgreSQL, JSON text on SQLite."""
    if dialect == "postgresql":
        return list(values)
    return json.dumps(values if isinstance(values, list) else list(values))


def dialect_insert(conn: Connection, table):
    """An INSERT supporting ON CONFLICT on the connection's engine (SQLite or PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the profile store needs SQLite or PostgreSQL, not {conn.dialect.name}")


def upsert(
    conn: Connection, table, rows: list[dict], key: Sequence[str], where=None, returning=None
) -> list:
    """Inserts or overwrites ``rows`` (all non-key columns) in one executemany.

    ``where(stmt)`` limits which stored rows are overwritten. With ``returning`` (a column),
    returns its value for each row inserted or overwritten, not for rows ``where`` left alone:
    how a caller learns which rows actually changed, in the statement that changed them.
    """
    if not rows:
        return []
    stmt = dialect_insert(conn, table)
    columns = [c for c in rows[0] if c not in key]
    stmt = stmt.on_conflict_do_update(
        index_elements=key,
        set_={c: stmt.excluded[c] for c in columns},
        where=where(stmt) if where else None,
    )
    if returning is None:
        conn.execute(stmt, rows)
        return []
    return list(conn.execute(stmt.returning(returning), rows).scalars())


# The columns of profile_attributes holding a value (one set per row, after its type).
ATTRIBUTE_VALUE_COLUMNS = ("str_value", "num_value", "bool_value", "ts_value", "list_value")


def differs(stmt, table, columns: Iterable[str]):
    """The condition of an upsert ``stmt`` that a stored row differs from the one offered in
    any of ``columns`` (nulls compared as values; JSON compared as its text, since PostgreSQL's
    json type has no equality)."""
    def text_of(column):
        return cast(column, Text) if isinstance(column.type, JSON) else column

    return or_(*[
        text_of(table.c[c]).is_distinct_from(text_of(stmt.excluded[c])) for c in columns
    ])


def pair_key(user_column, name_column):
    """``'<user id>:<name>'``: one value naming a (user, name) pair, so a set of pairs binds
    as one parameter of ``in_set``."""
    return cast(user_column, String) + literal(":") + name_column


def pair_keys(pairs: Iterable[tuple[int, str]]) -> list[str]:
    """The ``pair_key`` values of (user id, name) pairs."""
    return [f"{user}:{name}" for user, name in pairs]


# --- users -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _resolve_statements(dialect: str) -> tuple:
    """The lookups of ``resolve_ids``, built once per engine (each call only binds the ids)."""
    return (
        select(profiles.c.external_id, profiles.c.id).where(
            bound_set(dialect, profiles.c.external_id, "ids")
        ),
        select(identity_links.c.alias_external_id, identity_links.c.user_id).where(
            bound_set(dialect, identity_links.c.alias_external_id, "ids")
        ),
    )


# Each answers in ONE row: the keys and the values as two aligned JSON arrays.
_SQLITE_PROFILE_IDS = (
    f"SELECT json_group_array(external_id), json_group_array(id) FROM {profiles.name} "
    "WHERE external_id IN (SELECT value FROM json_each(?))"
)
_SQLITE_ALIAS_IDS = (
    f"SELECT json_group_array(alias_external_id), json_group_array(user_id) "
    f"FROM {identity_links.name} WHERE alias_external_id IN (SELECT value FROM json_each(?))"
)


def resolve_ids(conn: Connection, external_ids: Iterable[str]) -> dict[str, int]:
    """Internal ids of known external ids, following identity links of merged aliases."""
    wanted = list(dict.fromkeys(external_ids))
    if not wanted:
        return {}
    dialect = conn.dialect.name
    if dialect == "sqlite":
        packed = (json.dumps(wanted),)
        return _sqlite_pairs(conn, (_SQLITE_PROFILE_IDS, packed), (_SQLITE_ALIAS_IDS, packed))
    params = {"ids": bound_set_value(dialect, wanted)}
    by_profile, by_link = _resolve_statements(dialect)
    found: dict[str, int] = dict(conn.execute(by_profile, params).all())
    found.update(conn.execute(by_link, params).all())
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


def external_ids(conn: Connection, user_ids: Iterable[int]) -> dict[int, str]:
    """The external ids of the users among ``user_ids`` that exist."""
    wanted = list(set(user_ids))
    if not wanted:
        return {}
    return dict(conn.execute(
        select(profiles.c.id, profiles.c.external_id).where(in_set(conn, profiles.c.id, wanted))
    ).all())


def existing_user_ids(conn: Connection, user_ids: Iterable[int]) -> set[int]:
    wanted = list(set(user_ids))
    if not wanted:
        return set()
    return set(conn.execute(select(profiles.c.id).where(in_set(conn, profiles.c.id, wanted))).scalars())


def create_bare_profiles(conn: Connection, external_ids: Sequence[str], now_ms: int) -> dict[str, int]:
    """Creates profiles for ``external_ids`` in one statement; returns the ids it created.

    An id another transaction created meanwhile is skipped (ON CONFLICT); on PostgreSQL it
    is absent from the result, so the caller resolves it again.
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
    # SQLite: created in arrival order (json_each's key), so internal ids follow first
    # appearance; then read back in one row. That also returns ids another transaction
    # created meanwhile, which the insert skipped.
    packed = json.dumps(list(external_ids))
    cursor = conn.connection.cursor()
    try:
        cursor.execute(
            "INSERT INTO profiles (external_id, created_ms, updated_ms) "
            "SELECT value, ?, ? FROM json_each(?) WHERE true ORDER BY key "
            "ON CONFLICT (external_id) DO NOTHING",
            (now_ms, now_ms, packed),
        )
    finally:
        cursor.close()
    return _sqlite_pairs(conn, (_SQLITE_PROFILE_IDS, (packed,)))


def _sqlite_pairs(conn: Connection, *statements: tuple) -> dict:
    """The pairs answered by SQLite ``statements`` (sql, parameters), later ones winning.

    Each statement answers in one row of two aligned JSON arrays (keys, values), read
    through the transaction's DBAPI cursor. A row per pair cost more than the lookup: the
    driver hands the interpreter lock back and forth for every row fetched (each wait up
    to the switch interval while the stream's parser runs), and a batch's thousands of
    SQLAlchemy Row objects set off full garbage-collector passes mid-stream.
    """
    cursor = conn.connection.cursor()
    try:
        found: dict = {}
        for sql, parameters in statements:
            keys, values = cursor.execute(sql, parameters).fetchone()
            found.update(zip(json.loads(keys), json.loads(values)))
        return found
    finally:
        cursor.close()


# Rows per multi-row INSERT on SQLite. Preparing the statement costs more the more rows it
# has (5,000 rows: about 20 ms, as long as inserting them) and is done again on every pooled
# connection; at 500 rows preparing is cheap and inserting as fast per row. The text is the
# same for every full chunk, so the driver's statement cache keeps it prepared.
SQLITE_ROWS_PER_INSERT = 500

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


def insert_new_events(conn: Connection, rows: Iterable[tuple]) -> tuple[int, int, int]:
    """Stores (event_id, user_id, event_type, ts_ms, value, properties JSON text) tuples,
    skipping ids already stored; returns (rows stored, least and greatest row id stored).

    ``insert_events`` without a row back per event, for a caller that only needs the count
    and the range (see ``ProfileCore._store_rows``); the ids are 0 when nothing was stored.
    On SQLite the range is exact only when every row was stored: the greatest id is the last
    one inserted and the ids of one write transaction are consecutive.
    """
    if conn.dialect.name == "postgresql":
        payload = json.dumps(list(rows), separators=(",", ":"))
        if payload == "[]":
            return 0, 0, 0
        stored, first, last = conn.exec_driver_sql(
            f"WITH stored AS (INSERT INTO events ({EVENT_COLUMNS}) "
            "SELECT r->>0, (r->>1)::bigint, r->>2, (r->>3)::bigint, (r->>4)::float8, (r->>5)::json "
            "FROM json_array_elements(%s::json) AS r ON CONFLICT (event_id) DO NOTHING "
            "RETURNING id) SELECT count(*), min(id), max(id) FROM stored",
            (payload,),
        ).one()
        return stored, first or 0, last or 0
    params = tuple(itertools.chain.from_iterable(rows))
    width = len(EVENT_COLUMNS.split(","))
    stored = last = 0
    cursor = conn.connection.cursor()
    try:
        for part in chunks(params, SQLITE_ROWS_PER_INSERT * width):
            holes = ",".join(["(?,?,?,?,?,?)"] * (len(part) // width))
            cursor.execute(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES {holes} "
                "ON CONFLICT (event_id) DO NOTHING",
                part,
            )
            if cursor.rowcount:
                stored += cursor.rowcount
                last = cursor.lastrowid
    finally:
        cursor.close()
    return stored, (last - stored + 1) if stored else 0, last


def batch_engine(engine: Engine, connections: int) -> Engine | None:
    """On a SQLite file, an engine of its own for event batches; None elsewhere.

    Its connections never checkpoint the write-ahead log when they commit: a checkpoint
    copies and syncs every page written since the last one, which made every few commits
    several times slower than the others while the stream waited. The caller has it done
    beside the next batch instead (see ``ProfileCore._checkpoint_soon``); every other
    writer keeps SQLite's automatic checkpoints. The pool hands out the connection used
    last, whose page cache and prepared statements are warm.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    batches = make_engine(
        url.render_as_string(hide_password=False), pool_size=connections, pool_use_lifo=True
    )

    @event.listens_for(batches, "connect")
    def _no_automatic_checkpoints(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    return batches


def checkpoint(conn: Connection) -> None:
    """A passive SQLite checkpoint: copies what it can without waiting for anyone."""
    conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _dict_rows(conn: Connection, statement) -> list[dict]:
    """Rows as plain dicts read straight off the DBAPI cursor. The columns read this way
    need no result processing (integers, floats, text; booleans are converted by callers),
    and building a result row object per row cost more than the query for a batch read."""
    result = conn.execute(statement)
    try:
        keys = list(result.keys())
        return [dict(zip(keys, row)) for row in result.cursor.fetchall()]
    finally:
        result.close()


def profile_rows(conn: Connection, user_ids: Sequence[int]) -> list:
    if not user_ids:
        return []
    return _dict_rows(conn, select(profiles).where(in_set(conn, profiles.c.id, user_ids)))


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
    return _dict_rows(
        conn, select(*columns).where(in_set(conn, profile_attributes.c.user_id, user_ids)))


def live_tag_rows(conn: Connection, user_ids: Sequence[int], now_ms: int) -> list:
    if not user_ids:
        return []
    return conn.execute(
        select(profile_tags).where(
            in_set(conn, profile_tags.c.user_id, user_ids),
            or_(profile_tags.c.expires_ms.is_(None), profile_tags.c.expires_ms > now_ms),
        ).order_by(profile_tags.c.user_id, profile_tags.c.tag)
    ).mappings().all()


# One user's profile row, attribute rows and live tag rows in ONE statement, stacked and told
# apart by the first column (0 profile, 1 attribute, 2 tag); ``{e}`` and ``{now}`` stand for
# the driver's placeholders. The external id resolves as ``resolve_ids`` does: an identity
# link (a merged alias) wins over a profile of that id. Every column has one type across the
# three parts, as PostgreSQL wants:
#   k  c1 (bigint) c2 (text)    c3 (bigint) c4 (bigint) c5 (text)  c6, c7 (int)   c8, c9 (bool)
#   0  id          external_id  created_ms  updated_ms  time_zone  quiet minutes  notif., uninst.
#   1              name         ts_value                str_value                 bool_value
#   2              tag          expires_ms
# and c10 (float) the attribute's num_value, c11 (text) its list_value as JSON. Tags come in tag
# order (as ``live_tag_rows`` gives them), attributes in name order.
_ONE_PROFILE_SQL = f"""
WITH u AS (
  SELECT coalesce(
    (SELECT user_id FROM {identity_links.name} WHERE alias_external_id = {{e}}),
    (SELECT id FROM {profiles.name} WHERE external_id = {{e}})) AS id
)
SELECT 0 AS k, p.id AS c1, p.external_id AS c2, p.created_ms AS c3, p.updated_ms AS c4,
       p.time_zone AS c5, p.quiet_start_minute AS c6, p.quiet_end_minute AS c7,
       p.notifications_disabled AS c8, p.app_uninstalled AS c9, NULL AS c10, NULL AS c11
  FROM u JOIN {profiles.name} p ON p.id = u.id
UNION ALL
SELECT 1, NULL, a.name, a.ts_value, NULL, a.str_value, NULL, NULL, a.bool_value, NULL,
       a.num_value, {{list_value}}
  FROM u JOIN {profile_attributes.name} a ON a.user_id = u.id
UNION ALL
SELECT 2, NULL, t.tag, t.expires_ms, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM u JOIN {profile_tags.name} t ON t.user_id = u.id
  WHERE t.expires_ms IS NULL OR t.expires_ms > {{now}}
ORDER BY 1, 3
"""
_ONE_PROFILE = {
    "sqlite": _ONE_PROFILE_SQL.format(e=":e", now=":now", list_value="a.list_value"),
    # psycopg prepares a statement on the server after a few executions on a connection.
    "postgresql": _ONE_PROFILE_SQL.format(
        e="%(e)s", now="%(now)s", list_value="CAST(a.list_value AS TEXT)"),
}


def one_profile_rows(conn: Connection, external_id: str, now_ms: int) -> list[tuple]:
    """The rows of ``_ONE_PROFILE_SQL`` for one external id (none when it is unknown).

    The statement goes to the driver as written, through the transaction's DBAPI cursor:
    building and compiling the SQLAlchemy statements of the set reads (``profile_rows``,
    ``attribute_rows``, ``live_tag_rows`` and ``resolve_ids``) cost several times what the
    database took to answer one user, and each was a round trip of its own.
    """
    sql = _ONE_PROFILE.get(conn.dialect.name)
    if sql is None:
        raise NotImplementedError(
            f"the profile store needs SQLite or PostgreSQL, not {conn.dialect.name}")
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, {"e": external_id, "now": now_ms})
        return cursor.fetchall()
    finally:
        cursor.close()


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


def merge_user_rows(conn: Connection, alias_id: int, user_id: int) -> dict[str, int]:
    """Moves an alias profile's events, attributes, tags and consents onto ``user_id``;
    returns the rows moved per table.

    The known user's own attributes, tags and consents win where both have one; the alias's
    scores and traits are dropped (the known user's traits are refreshed by the caller).
    """
    moved = {events.name: conn.execute(
        update(events).where(events.c.user_id == alias_id).values(user_id=user_id)).rowcount}
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
        # The driver's count of an INSERT .. SELECT is kept only when asked for.
        moved[table.name] = conn.execute(table.insert().from_select(columns, source),
                                         execution_options={"preserve_rowcount": True}).rowcount
        conn.execute(delete(table).where(table.c.user_id == alias_id))
    for table in (scores, computed_traits, event_type_counts):
        conn.execute(delete(table).where(table.c.user_id == alias_id))
    conn.execute(
        update(identity_links).where(identity_links.c.user_id == alias_id).values(user_id=user_id)
    )
    conn.execute(delete(profiles).where(profiles.c.id == alias_id))
    return moved


def count(conn: Connection, table, *where) -> int:
    return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
