"""Computed traits as SQL set operations: RFM, quintile scores, named groups, lifecycle, counts.

Definitions (all relative to an instant ``as_of``; events stamped after it are ignored):

- *purchases* are events whose type is one of the configured purchase types;
- ``last_purchase_ms``: the latest purchase ever; ``recency_days`` = (as_of - it) / 1 day;
- ``frequency`` and ``monetary``: the number of purchases and the sum of their ``value`` within
  the RFM window (the last ``rfm_window_days`` days; 0 means all history);
- quintile scores 1..5 rank every user who ever purchased (the *population*, n users). For a
  user whose value v has c users strictly below it, the score is 1 + floor(5c / n): ties share
  a score, and the best fifth scores 5. Recency ranks ``last_purchase_ms`` (later is better),
  frequency ranks the count and monetary ranks the sum rounded to cents. A full recompute
  stores the least value reaching each score (the breakpoints); an incremental refresh scores
  the users a batch touched against the stored breakpoints, so their scores stay comparable
  with everyone else's until the next full recompute;
- named RFM groups come from R and FM = floor((F + M + 1) / 2) (the mean of F and M, rounded
  half up) through ``RFM_GRID`` below;
- lifecycle stage over events of every type: ``new`` if first seen within ``new_days``, else
  ``active`` if last seen within ``active_days``, else ``dormant`` if last seen within
  ``dormant_days``, else ``churned``;
- per-event-type counts over the last 7, 30 and 90 days (ts > as_of - N days) and in total.

Users without any event have no traits row; users who never purchased have null scores/group.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    Numeric,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from services.common.profile_tables import computed_traits, event_type_counts, events
from services.profile.config import DAY_MS, ProfileConfig
from services.profile.store import bound_set, bound_set_value, in_set
from services.profile.tables import rfm_breakpoints

# The instants every statement below is bound to: traits describe ``as_of``, rows are stamped
# ``now``. Bound rather than inlined, so each statement is built and compiled once per
# configuration and engine (see ``_refresh_statements``) and reused for every batch.
AS_OF = bindparam("as_of", type_=BigInteger)
NOW = bindparam("now", type_=BigInteger)

RFM_GROUPS = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new_customers",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose_them",
    "hibernating",
    "lost",
)

# RFM_GRID[r][fm] is the group of recency score r and combined frequency-monetary score fm.
RFM_GRID: dict[int, dict[int, str]] = {
    5: {1: "new_customers", 2: "potential_loyalist", 3: "potential_loyalist", 4: "champions", 5: "champions"},
    4: {1: "promising", 2: "potential_loyalist", 3: "potential_loyalist", 4: "loyal", 5: "champions"},
    3: {1: "about_to_sleep", 2: "about_to_sleep", 3: "need_attention", 4: "loyal", 5: "loyal"},
    2: {1: "hibernating", 2: "hibernating", 3: "at_risk", 4: "at_risk", 5: "cannot_lose_them"},
    1: {1: "lost", 2: "hibernating", 3: "at_risk", 4: "at_risk", 5: "cannot_lose_them"},
}

DIMENSIONS = ("r", "f", "m")


def rfm_group(r: int, f: int, m: int) -> str:
    """The named group of one user's scores (the same rule the SQL applies)."""
    return RFM_GRID[r][(f + m + 1) // 2]


def _dimension_expr(dimension: str):
    """The ranked quantity of one RFM dimension over computed_traits."""
    if dimension == "r":
        return computed_traits.c.last_purchase_ms
    if dimension == "f":
        return computed_traits.c.frequency
    # Sums of floats differ in the last bits with summation order; cents make ties exact.
    return func.round(cast(computed_traits.c.monetary, Numeric), 2)


def _aggregate_select(config: ProfileConfig, users=None):
    """SELECT producing computed_traits rows from events, for all users or those ``users`` admits."""
    # One bound parameter per type, not an expanding IN: that one is re-rendered per execution.
    is_purchase = events.c.event_type.in_([literal(t) for t in config.purchase_event_types])
    window_start = AS_OF - config.rfm_window_days * DAY_MS if config.rfm_window_days > 0 else None
    in_window = is_purchase if window_start is None else and_(is_purchase, events.c.ts_ms >= window_start)
    where = [events.c.ts_ms <= AS_OF]
    if users is not None:
        where.append(users(events.c.user_id))
    agg = (
        select(
            events.c.user_id.label("user_id"),
            func.min(events.c.ts_ms).label("first_seen_ms"),
            func.max(events.c.ts_ms).label("last_seen_ms"),
            func.max(case((is_purchase, events.c.ts_ms))).label("last_purchase_ms"),
            func.sum(case((in_window, 1), else_=0)).label("frequency"),
            func.sum(case((in_window, func.coalesce(events.c.value, 0.0)), else_=0.0)).label(
                "monetary"
            ),
        )
        .where(*where)
        .group_by(events.c.user_id)
        .subquery()
    )
    stage = case(
        (agg.c.first_seen_ms > AS_OF - config.lifecycle_new_days * DAY_MS, "new"),
        (agg.c.last_seen_ms > AS_OF - config.lifecycle_active_days * DAY_MS, "active"),
        (agg.c.last_seen_ms > AS_OF - config.lifecycle_dormant_days * DAY_MS, "dormant"),
        else_="churned",
    )
    columns = [
        "user_id", "recency_days", "frequency", "monetary", "lifecycle_stage", "first_seen_ms",
        "last_seen_ms", "last_purchase_ms", "as_of_ms", "updated_ms",
    ]
    query = select(
        agg.c.user_id,
        (cast(AS_OF - agg.c.last_purchase_ms, Float) / DAY_MS).label("recency_days"),
        agg.c.frequency,
        agg.c.monetary,
        stage.label("lifecycle_stage"),
        agg.c.first_seen_ms,
        agg.c.last_seen_ms,
        agg.c.last_purchase_ms,
        AS_OF.label("as_of_ms"),
        NOW.label("updated_ms"),
    )
    return columns, query


def _counts_select(users=None):
    def within(days: int):
        return func.sum(case((events.c.ts_ms > AS_OF - days * DAY_MS, 1), else_=0))

    where = [events.c.ts_ms <= AS_OF]
    if users is not None:
        where.append(users(events.c.user_id))
    columns = ["user_id", "event_type", "count_7d", "count_30d", "count_90d", "count_total", "updated_ms"]
    query = (
        select(
            events.c.user_id,
            events.c.event_type,
            within(7),
            within(30),
            within(90),
            func.count(),
            NOW,
        )
        .where(*where)
        .group_by(events.c.user_id, events.c.event_type)
    )
    return columns, query


def _compute_breakpoints(conn: Connection) -> tuple[dict[str, dict[int, float | None]], int]:
    """The least value reaching scores 2..5 per dimension, with the window functions of SQL."""
    out: dict[str, dict[int, float | None]] = {}
    population = 0
    for dimension in DIMENSIONS:
        value = _dimension_expr(dimension)
        ranked = (
            select(
                value.label("v"),
                (func.rank().over(order_by=value) - 1).label("c"),
                func.count().over().label("n"),
            )
            .where(computed_traits.c.last_purchase_ms.is_not(None))
            .subquery()
        )
        row = conn.execute(
            select(
                func.max(ranked.c.n),
                *[
                    func.min(case((5 * ranked.c.c >= (score - 1) * ranked.c.n, ranked.c.v)))
                    for score in range(2, 6)
                ],
            )
        ).one()
        population = int(row[0] or 0)
        out[dimension] = {
            score: (float(v) if v is not None else None) for score, v in zip(range(2, 6), row[1:])
        }
    return out, population


def _score_expr(dimension: str, thresholds: dict[int, float | None]):
    value = _dimension_expr(dimension)
    expr = literal(1)
    for score in range(2, 6):
        threshold = thresholds.get(score)
        if threshold is not None:
            # Recency and frequency rank integers; bind them as integers on every engine.
            bound = threshold if dimension == "m" else int(threshold)
            expr = expr + case((value >= bound, 1), else_=0)
    return expr


def _group_expr():
    fm = (computed_traits.c.f_score + computed_traits.c.m_score + 1) // 2
    whens = [
        (and_(computed_traits.c.r_score == r, fm == f), group)
        for r, row in RFM_GRID.items()
        for f, group in row.items()
    ]
    return case(*whens, else_=None)


def _score_statements(breakpoints, users=None) -> tuple:
    """The two UPDATEs scoring users against ``breakpoints`` (all users, or those ``users`` admits)."""
    where = [computed_traits.c.last_purchase_ms.is_not(None)]
    if users is not None:
        where.append(users(computed_traits.c.user_id))
    scored = update(computed_traits).where(*where).values(
        r_score=_score_expr("r", breakpoints["r"]),
        f_score=_score_expr("f", breakpoints["f"]),
        m_score=_score_expr("m", breakpoints["m"]),
    )
    # A second statement: the group reads the scores the first one just wrote.
    return scored, update(computed_traits).where(*where).values(rfm_group=_group_expr())


def _apply_scores(conn: Connection, breakpoints) -> None:
    for statement in _score_statements(breakpoints):
        conn.execute(statement)


def _users_filter(dialect: str):
    """``column IN :users`` in the dialect's one-parameter form (see ``store.bound_set``)."""
    return lambda column: bound_set(dialect, column, "users")


@functools.lru_cache(maxsize=32)
def _refresh_statements(config: ProfileConfig, dialect: str) -> tuple:
    """The statements of ``refresh_users``, built once per configuration and engine.

    Built per call, they cost more Python (construction, cache keys) than the SQLite work
    of a 5,000-event batch's refresh; reused, SQLAlchemy finds each compiled form at once.
    """
    users = _users_filter(dialect)
    aggregate_columns, aggregate = _aggregate_select(config, users)
    count_columns, counts = _counts_select(users)
    return (
        delete(computed_traits).where(users(computed_traits.c.user_id)),
        delete(event_type_counts).where(users(event_type_counts.c.user_id)),
        _insert_or_replace(dialect, computed_traits, ["user_id"], aggregate_columns, aggregate),
        _insert_or_replace(
            dialect, event_type_counts, ["user_id", "event_type"], count_columns, counts
        ),
    )


@functools.lru_cache(maxsize=32)
def _refresh_score_statements(frozen_breakpoints: tuple, dialect: str) -> tuple:
    """``_score_statements`` for the touched users, built once per set of breakpoints."""
    breakpoints = {dimension: dict(values) for dimension, values in frozen_breakpoints}
    return _score_statements(breakpoints, _users_filter(dialect))


_BREAKPOINTS = select(rfm_breakpoints.c.dimension, rfm_breakpoints.c.score, rfm_breakpoints.c.min_value)


def refresh_users(
    conn: Connection, user_ids: Sequence[int], config: ProfileConfig, as_of_ms: int, now_ms: int
) -> int:
    """Recomputes the traits of ``user_ids`` only (after an ingested batch); returns users.

    A handful of set statements whatever the number of users: each binds the whole id set
    as one parameter (see ``store.bound_set``), so a flush of thousands of events costs the
    same round trips as a single event.
    """
    ids = sorted(set(user_ids))
    if not ids:
        return 0
    dialect = conn.dialect.name
    params = {"users": bound_set_value(dialect, ids), "as_of": as_of_ms, "now": now_ms}
    rows = conn.execute(_BREAKPOINTS).all()
    for statement in _refresh_statements(config, dialect):
        conn.execute(statement, params)
    if rows:
        frozen: dict[str, list] = {d: [] for d in DIMENSIONS}
        for dimension, score, min_value in sorted(rows):
            frozen[dimension].append((score, min_value))
        for statement in _refresh_score_statements(
            tuple((d, tuple(v)) for d, v in frozen.items()), dialect
        ):
            conn.execute(statement, params)
    return len(ids)


def _insert_or_replace(dialect: str, table, key: list[str], columns: list[str], query):
    """INSERT .. SELECT of freshly computed rows, replacing rows of the same key.

    The rows were just deleted, but on PostgreSQL another transaction refreshing the same
    users (a stream's background refresh beside a unary ingestion) may insert them before
    this one commits; the conflict clause then overwrites instead of failing. SQLite runs
    one writer at a time, so a plain insert cannot conflict there.
    """
    if dialect != "postgresql":
        return table.insert().from_select(columns, query)
    stmt = postgresql.insert(table).from_select(columns, query)
    return stmt.on_conflict_do_update(
        index_elements=key, set_={c: stmt.excluded[c] for c in columns if c not in key}
    )


def _visible_columns(dialect: str) -> list:
    """The traits segment rules read, per user, as changes are told apart: ``recency_days``
    in whole days (it grows with every recompute; a rule compares it with a number of days)
    and ``monetary`` in cents (sums of floats differ in the last bits with their order)."""
    t = computed_traits.c
    days = func.floor(t.recency_days) if dialect == "postgresql" else cast(t.recency_days, Integer)
    return [
        t.user_id, days.label("recency_whole_days"), t.frequency,
        func.round(cast(t.monetary, Numeric), 2).label("monetary_cents"), t.r_score, t.f_score,
        t.m_score, t.rfm_group, t.lifecycle_stage, t.first_seen_ms, t.last_seen_ms,
        t.last_purchase_ms,
    ]


def visible(conn: Connection, user_ids: Iterable[int]) -> dict[int, tuple]:
    """The rule-visible traits of ``user_ids`` (see ``_visible_columns``), by user; users
    without traits are absent."""
    ids = list(set(user_ids))
    if not ids:
        return {}
    rows = conn.execute(select(*_visible_columns(conn.dialect.name)).where(
        in_set(conn, computed_traits.c.user_id, ids)))
    return {row[0]: tuple(row[1:]) for row in rows}


# Holds the rule-visible traits as they were while a full recompute rebuilds them.
_BEFORE = "profile_traits_before"


def _keep_visible(conn: Connection) -> str:
    """Copies every user's rule-visible traits into a temporary table; returns the SELECT
    reading the current ones in the same shape (see ``_changed_users``)."""
    dialect = conn.dialect
    current = str(select(*_visible_columns(dialect.name)).compile(
        dialect=dialect, compile_kwargs={"literal_binds": True}))
    if dialect.name == "postgresql":
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{_BEFORE}")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {_BEFORE} ON COMMIT DROP AS {current}")
    else:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_BEFORE}")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {_BEFORE} AS {current}")
    return current


def _changed_users(conn: Connection, current: str) -> set[int]:
    """Users whose rule-visible traits differ from the kept copy (new, gone or changed): two
    set differences the database computes, nulls comparing equal."""
    changed = set()
    for query in (f"{current} EXCEPT SELECT * FROM {_BEFORE}",
                  f"SELECT * FROM {_BEFORE} EXCEPT {current}"):
        changed.update(conn.exec_driver_sql(
            f"SELECT user_id FROM ({query}) AS differing").scalars())
    conn.exec_driver_sql(f"DROP TABLE {_BEFORE}")
    return changed


def recompute_all(conn: Connection, config: ProfileConfig, as_of_ms: int, now_ms: int,
                  changes: bool = True) -> dict:
    """Rebuilds every user's traits, the quintile breakpoints and every score and group;
    with ``changes``, the summary's ``changed`` lists the users whose rule-visible traits
    changed (else it is empty)."""
    params = {"as_of": as_of_ms, "now": now_ms}
    current = _keep_visible(conn) if changes else None
    conn.execute(delete(computed_traits))
    conn.execute(delete(event_type_counts))
    columns, query = _aggregate_select(config)
    conn.execute(computed_traits.insert().from_select(columns, query), params)
    columns, query = _counts_select()
    conn.execute(event_type_counts.insert().from_select(columns, query), params)
    breakpoints, population = _compute_breakpoints(conn)
    conn.execute(delete(rfm_breakpoints))
    conn.execute(
        rfm_breakpoints.insert(),
        [
            {"dimension": d, "score": s, "min_value": v, "population": population, "as_of_ms": as_of_ms}
            for d, values in breakpoints.items()
            for s, v in values.items()
        ],
    )
    _apply_scores(conn, breakpoints)
    users = conn.execute(select(func.count()).select_from(computed_traits)).scalar_one()
    changed = sorted(_changed_users(conn, current)) if current is not None else []
    return {"users": users, "population": population, "breakpoints": breakpoints,
            "changed": changed}
