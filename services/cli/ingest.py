"""Event files (CSV, JSON lines, the CDNOW purchase log) read into batches for IngestEvents."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import json_format

from services.client import connect, describe_error
from services.client.connection import messages

CORE_COLUMNS = ("event_id", "user_id", "event_type", "timestamp", "value")


def add_arguments(parser) -> None:
    parser.add_argument("file", help="CSV (header: event_id,user_id,event_type,timestamp,"
                        "value,<property>...), JSON lines (one Event each) or the CDNOW log")
    parser.add_argument("--format", choices=("auto", "csv", "jsonl", "cdnow"), default="auto",
                        help="file format (default: by extension; .txt is the CDNOW log)")
    parser.add_argument("--batch-size", type=int, default=5000,
                        help="events per IngestEvents call (default 5000)")
    parser.add_argument("--event-type", default="purchase",
                        help="event type of CDNOW rows (default purchase)")


def _value(raw: Any):
    """A plain JSON or CSV value as a typed `marketing.common.v1.Value`."""
    from marketing.common.v1 import common_pb2

    if isinstance(raw, dict):
        return json_format.ParseDict(raw, common_pb2.Value())
    if isinstance(raw, bool):
        return common_pb2.Value(bool_value=raw)
    if isinstance(raw, (int, float)):
        return common_pb2.Value(number_value=float(raw))
    if isinstance(raw, list):
        return common_pb2.Value(string_list_value=common_pb2.StringList(values=map(str, raw)))
    text = str(raw)
    try:
        return common_pb2.Value(number_value=float(text)) if text.strip() else None
    except ValueError:
        return common_pb2.Value(string_value=text)


def _set_time(event, raw: Any) -> None:
    text = str(raw).strip()
    if text.lstrip("-").isdigit() and len(text) >= 10:
        event.timestamp.FromMilliseconds(int(text))
        return
    instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    event.timestamp.FromDatetime(instant.astimezone(dt.UTC))


def event_from_mapping(row: dict[str, Any]):
    """An Event from a CSV row or a JSON object; unknown keys become properties."""
    pb = messages("profile")
    event = pb.Event(event_id=str(row.get("event_id", "")), user_id=str(row.get("user_id", "")),
                     event_type=str(row.get("event_type", "")))
    if row.get("timestamp") not in (None, ""):
        try:
            _set_time(event, row["timestamp"])
        except ValueError:
            pass  # left unset so the service names `events[i].timestamp` in its answer
    if row.get("value") not in (None, ""):
        event.value = float(row["value"])
    properties = dict(row.get("properties") or {})
    properties.update({k: v for k, v in row.items() if k not in CORE_COLUMNS
                       and k != "properties"})
    for key, raw in properties.items():
        value = _value(raw)
        if value is not None:
            event.properties[key].CopyFrom(value)
    return event


def read_csv(path: str) -> Iterator:
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            yield event_from_mapping(row)


def read_jsonl(path: str) -> Iterator:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield event_from_mapping(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc.msg}") from None


def cdnow_rows(path: str) -> Iterator[tuple[int, str, int, int, float]]:
    """(line, customer id, day as epoch ms at noon UTC, number of CDs, dollars) per purchase."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if len(parts) != 4 or not parts[0].isdigit():
                continue  # the header line
            day = dt.datetime.strptime(parts[1], "%Y%m%d").replace(
                hour=12, tzinfo=dt.UTC)
            yield number, f"c{parts[0]}", int(day.timestamp() * 1000), int(parts[2]), \
                float(parts[3])


def cdnow_event(line: int, customer: str, ts_ms: int, cds: int, dollars: float,
                event_type: str = "purchase"):
    from marketing.common.v1 import common_pb2

    pb = messages("profile")
    event = pb.Event(event_id=f"cdnow-{line}", user_id=customer, event_type=event_type,
                     value=dollars)
    event.timestamp.FromMilliseconds(ts_ms)
    event.properties["cds"].CopyFrom(common_pb2.Value(number_value=cds))
    return event


def read_cdnow(path: str, event_type: str = "purchase") -> Iterator:
    for row in cdnow_rows(path):
        yield cdnow_event(*row, event_type=event_type)


def read_events(path: str, fmt: str = "auto", event_type: str = "purchase") -> Iterator:
    if fmt == "auto":
        ext = os.path.splitext(path)[1].lower()
        fmt = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
               ".txt": "cdnow"}.get(ext)
        if fmt is None:
            raise ValueError(f"cannot tell the format of {path}; pass --format")
    if fmt == "csv":
        return read_csv(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    return read_cdnow(path, event_type)


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest(stub, events: Iterable, *, batch_size: int = 5000, total: int | None = None,
           progress: bool = True, timeout: float = 120.0, on_rejected=None) -> dict[str, int]:
    """Sends events in IngestEvents batches; returns accepted / duplicate / rejected counts.

    `on_rejected(event, result)` sees each refused item (default: print the first ten)."""
    from tqdm import tqdm

    pb = messages("profile")
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    shown = 0
    bar = tqdm(total=total, unit="ev", desc="ingest", file=sys.stderr,
               disable=not progress or os.environ.get("MKT_NO_PROGRESS") == "1")
    try:
        for batch in batched(events, batch_size):
            response = stub.IngestEvents(pb.IngestEventsRequest(events=batch), timeout=timeout)
            counts["accepted"] += response.accepted_count
            counts["duplicate"] += response.duplicate_count
            counts["rejected"] += response.rejected_count
            if response.rejected_count:
                for result in response.results:
                    if result.outcome == pb.EVENT_OUTCOME_REJECTED:
                        if on_rejected is not None:
                            on_rejected(batch[result.index], result)
                        elif shown < 10:
                            shown += 1
                            print(f"rejected {result.event_id or '#' + str(result.index)}: "
                                  f"{describe_status(result.status)}", file=sys.stderr)
            bar.update(len(batch))
    finally:
        bar.close()
    return counts


def describe_status(status) -> str:
    """A per-item google.rpc.Status as one line (same form as describe_error)."""
    import grpc
    from google.rpc import error_details_pb2

    code = next((c.name for c in grpc.StatusCode if c.value[0] == status.code), str(status.code))
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            fields.extend(f"{v.field}: {v.description}" for v in request.field_violations)
    return f"{code}: {'; '.join(fields) if fields else status.message}"


def run(args) -> int:
    from services.cli import render

    try:
        events = read_events(args.file, args.format, args.event_type)
        total = None
        if os.path.getsize(args.file) < 200_000_000:
            with open(args.file, "rb") as handle:
                total = max(0, sum(1 for _ in handle) - (0 if args.format == "jsonl" else 1))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stub = connect("profile", args.address, args.api_key, timeout=args.timeout)
    try:
        counts = ingest(stub, events, batch_size=args.batch_size, total=total)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        stub.channel.close()
    if args.output == "json":
        print(json.dumps(counts))
    else:
        print(render.table([[str(counts[k]) for k in counts]], list(counts)))
    if counts["rejected"]:
        print(f"error: {counts['rejected']} events rejected", file=sys.stderr)
        return 1
    return 0


__all__ = ["cdnow_rows", "describe_error", "event_from_mapping", "ingest", "read_events"]
