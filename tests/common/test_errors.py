"""Infrastructure failures become UNAVAILABLE; everything else stays a bug (INTERNAL)."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from services.common.errors import Unavailable, connection_lost, translate


@pytest.mark.parametrize("exc", [
    # Raised by lookups that run on the driver's own cursor, unwrapped by SQLAlchemy.
    psycopg.OperationalError("consuming input failed: server closed the connection "
                             "unexpectedly"),
    psycopg.InterfaceError("the connection is closed"),
    sqlite3.OperationalError("database is locked"),
])
def test_raw_driver_connection_errors_are_unavailable(exc):
    assert isinstance(translate(exc), Unavailable)


@pytest.mark.parametrize("exc", [
    sqlite3.OperationalError("no such table: profiles"),
    psycopg.errors.UndefinedColumn("column \"x\" does not exist"),
    ValueError("connection"),  # not a driver error, whatever its text
])
def test_other_driver_errors_stay_bugs(exc):
    assert translate(exc) is None


@pytest.mark.parametrize(("exc", "lost"), [
    (psycopg.OperationalError("consuming input failed: server closed the connection "
                              "unexpectedly"), True),
    (psycopg.OperationalError("terminating connection due to administrator command"), True),
    (psycopg.InterfaceError("the connection is closed"), True),
    (sqlite3.OperationalError("database is locked"), False),  # busy, not gone
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
    (ValueError("connection"), False),
])
def test_connection_lost_is_only_a_connection_the_server_no_longer_holds(exc, lost):
    assert connection_lost(exc) is lost
