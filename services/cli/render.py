"""Renders responses as JSON or as plain-text tables, from their descriptors alone."""

from __future__ import annotations

import datetime as dt
import math
import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.client.pagination import _is_repeated

MAX_CELL = 60


def to_dict(message: Message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def to_json(message: Message) -> str:
    return json.dumps(to_dict(message), indent=2, ensure_ascii=False)


def enum_label(field: FieldDescriptor, number: int) -> str:
    """An enum value without its type prefix: RFM_GROUP_AT_RISK -> AT_RISK, 0 -> ''."""
    value = field.enum_type.values_by_number.get(number)
    if value is None:
        return str(number)
    if number == 0:
        return ""
    prefix = _enum_prefix(field.enum_type)
    return value.name.removeprefix(prefix)


def _enum_prefix(enum_type) -> str:
    name = enum_type.name
    snake = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()
    return snake + "_"


def _timestamp(message: Message) -> str:
    if not message.seconds and not message.nanos:
        return ""
    instant = dt.datetime.fromtimestamp(message.seconds + message.nanos / 1e9, dt.UTC)
    return instant.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}" if abs(value) < 1e-3 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def format_message(message: Message) -> str:
    """A short text form of a nested message for a table cell."""
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        return _timestamp(message)
    if name == "google.protobuf.Duration":
        return f"{message.seconds + message.nanos / 1e9:g}s"
    if name == "google.protobuf.FieldMask":
        return ",".join(message.paths)
    if name == "marketing.common.v1.Value":
        kind = message.WhichOneof("kind")
        if kind is None:
            return ""
        value = getattr(message, kind)
        if kind == "timestamp_value":
            return _timestamp(value)
        if kind == "string_list_value":
            return ",".join(value.values)
        if kind == "bool_value":
            return "true" if value else "false"
        return _number(value)
    if name == "google.rpc.Status":
        return "OK" if message.code == 0 else f"{message.code}: {message.message}"
    parts = []
    for field, value in message.ListFields():
        parts.append(f"{field.name}={format_field(field, value)}")
    return " ".join(parts)


def format_field(field: FieldDescriptor, value: Any) -> str:
    """A cell: scalars as text, enums by short name, messages compact, lists comma-joined."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return ",".join(f"{k}={format_single(value_field, v)}" for k, v in sorted(value.items()))
    if _is_repeated(field):
        return ",".join(format_single(field, v) for v in value)
    return format_single(field, value)


def format_single(field: FieldDescriptor, value: Any) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_label(field, value)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return format_message(value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else ""
    if field.type == FieldDescriptor.TYPE_BYTES:
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _clip(text: str, width: int = MAX_CELL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned table; columns empty in every row are left out."""
    keep = [i for i in range(len(headers)) if any(row[i] for row in rows)] or \
        list(range(len(headers)))
    headers = [headers[i] for i in keep]
    rows = [[_clip(row[i]) for i in keep] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _is_plain_list(field: FieldDescriptor) -> bool:
    return (_is_repeated(field) and field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.message_type.GetOptions().map_entry
            and field.message_type.full_name not in _LEAF_MESSAGES)


_LEAF_MESSAGES = {"google.protobuf.Timestamp", "google.protobuf.Duration",
                  "google.protobuf.FieldMask", "marketing.common.v1.Value"}


def _hidden(field: FieldDescriptor) -> bool:
    """A tree with a readable twin (`rule` next to `rule_text`) is shown as the text only."""
    return (field.type == FieldDescriptor.TYPE_MESSAGE
            and f"{field.name}_text" in field.containing_type.fields_by_name)


def rows_table(items: Iterable[Message], descriptor=None) -> str:
    items = list(items)
    if not items:
        return "(none)"
    descriptor = descriptor or items[0].DESCRIPTOR
    fields = [f for f in descriptor.fields if not _is_plain_list(f)
              and f.type != FieldDescriptor.TYPE_BYTES and not _hidden(f)]
    rows = []
    for item in items:
        row = []
        for f in fields:
            value = getattr(item, f.name)
            if f.type == FieldDescriptor.TYPE_MESSAGE and not _is_repeated(f) \
                    and not item.HasField(f.name):
                row.append("")
            else:
                row.append(format_field(f, value))
        rows.append(row)
    return table(rows, [f.name for f in fields])


def _flatten(message: Message, prefix: str = "") -> tuple[list[tuple[str, str]], list]:
    """Key/value lines of a message (nested messages dotted) and its lists of messages."""
    lines: list[tuple[str, str]] = []
    lists: list[tuple[str, list]] = []
    for field, value in message.ListFields():
        key = prefix + field.name
        if _hidden(field):
            continue
        if _is_plain_list(field):
            lists.append((key, list(value)))
        elif (field.type == FieldDescriptor.TYPE_MESSAGE and not _is_repeated(field)
              and field.message_type.full_name not in _LEAF_MESSAGES
              and field.message_type.full_name != "google.rpc.Status"):
            sub_lines, sub_lists = _flatten(value, key + ".")
            lines.extend(sub_lines)
            lists.extend(sub_lists)
        else:
            lines.append((key, format_field(field, value)))
    return lines, lists


def render_table(message: Message) -> str:
    """A list response as a table (plus its other fields); anything else as key/value lines
    followed by a table per nested list."""
    descriptor = message.DESCRIPTOR
    list_fields = [f for f in descriptor.fields if _is_plain_list(f)]
    blocks: list[str] = []
    if len(list_fields) == 1 and len([f for f, _ in message.ListFields()
                                      if f.type == FieldDescriptor.TYPE_MESSAGE
                                      and not _is_repeated(f)]) == 0:
        field = list_fields[0]
        blocks.append(rows_table(getattr(message, field.name), field.message_type))
        rest = [(f, v) for f, v in message.ListFields() if f is not field]
        for f, v in rest:
            blocks.append(f"{f.name}: {format_field(f, v)}")
        return "\n".join(blocks)
    lines, lists = _flatten(message)
    if lines:
        width = max(len(k) for k, _ in lines)
        blocks.append("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines))
    for key, items in lists:
        blocks.append(f"\n{key}:\n" + rows_table(items))
    return "\n".join(blocks) if blocks else "(done)"
