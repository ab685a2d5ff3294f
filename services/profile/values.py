"""Typed attribute and property values: the kinds, their limits and their storage columns."""

from __future__ import annotations

import json
import math
import re

from services.common.errors import InvalidArgument

STRING, NUMBER, BOOL, TIMESTAMP, STRING_LIST = "string", "number", "bool", "timestamp", "string_list"
VALUE_TYPES = (STRING, NUMBER, BOOL, TIMESTAMP, STRING_LIST)

# The profile_attributes column holding each kind; the others stay null.
COLUMN_FOR_TYPE = {
    STRING: "str_value",
    NUMBER: "num_value",
    BOOL: "bool_value",
    TIMESTAMP: "ts_value",
    STRING_LIST: "list_value",
}
VALUE_COLUMNS = tuple(COLUMN_FOR_TYPE.values())

MAX_STRING = 1024
MAX_LIST_ITEMS = 100
MAX_LIST_ITEM = 256
# Timestamps outside years 1900..2200 are almost certainly unit mistakes (seconds vs ms).
MIN_TS_MS = -2_208_988_800_000
MAX_TS_MS = 7_258_118_400_000

ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")


def check_value(field: str, kind: str, value) -> None:
    """Raises InvalidArgument naming ``field`` when ``value`` breaks the limits of ``kind``."""
    if kind == STRING:
        if len(value) > MAX_STRING:
            raise InvalidArgument(field, f"string longer than {MAX_STRING} characters")
    elif kind == NUMBER:
        if not math.isfinite(value):
            raise InvalidArgument(field, "number must be finite")
    elif kind == TIMESTAMP:
        if not MIN_TS_MS <= value <= MAX_TS_MS:
            raise InvalidArgument(field, "timestamp outside years 1900..2200")
    elif kind == STRING_LIST:
        if len(value) > MAX_LIST_ITEMS:
            raise InvalidArgument(field, f"more than {MAX_LIST_ITEMS} strings")
        if any(len(item) > MAX_LIST_ITEM for item in value):
            raise InvalidArgument(field, f"a string longer than {MAX_LIST_ITEM} characters")
    elif kind != BOOL:
        raise InvalidArgument(field, "value has no kind set")


def attribute_row(user_id: int, name: str, kind: str, value) -> dict:
    """The profile_attributes row storing ``value`` in the column of its kind."""
    row = {"user_id": user_id, "name": name, **{column: None for column in VALUE_COLUMNS}}
    row[COLUMN_FOR_TYPE[kind]] = list(value) if kind == STRING_LIST else value
    return row


def value_from_row(kind: str, row) -> object:
    """The typed value stored in a profile_attributes row for an attribute of ``kind``.

    A string list may arrive as its JSON text (see ``store.attribute_rows``).
    """
    value = row[COLUMN_FOR_TYPE[kind]]
    if kind == STRING_LIST and isinstance(value, str):
        return json.loads(value)
    if kind == BOOL and value is not None:
        return bool(value)
    if kind == TIMESTAMP and value is not None:
        return int(value)
    return value
