"""Builds `mkt <resource> <verb>` commands from the services' descriptors.

Every RPC of a generated service becomes a command: `GetProfile` -> `mkt profiles get`,
`ListSegments` -> `mkt segments list`, `BatchGetProfiles` -> `mkt profiles batch-get`. The
request's top-level fields become flags (`--page-size`, `--rfm-group at-risk`), a `name` or
`parent` field is also accepted as the first positional argument, and `--json` supplies the
whole request (or the parts flags cannot express) as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.client.connection import SERVICES, messages
from services.client.pagination import _is_repeated
from services.common.config import SERVICE_NAMES

_VERB_PREFIXES = ("Batch",)

# RPCs whose name does not split into a verb and a resource the usual way.
OVERRIDES: dict[str, tuple[str, str]] = {
    "WriteBackScores": ("score", "write-back"),
    "ScoreUsers": ("score", "users"),
    "ScoreRows": ("score", "rows"),
    "ScoreSnapshot": ("score", "snapshot"),
    "DryRunTouch": ("touches", "dry-run"),
    "PreviewTouch": ("touches", "preview"),
    "RunTouch": ("touches", "run"),
    "ValidateRule": ("rules", "validate"),
    "ParseRule": ("rules", "parse"),
    "FormatRule": ("rules", "format"),
    "StreamSnapshotMembers": ("snapshots", "members"),
    "CompareSnapshots": ("snapshots", "compare"),
    "CheckMembership": ("segments", "check-membership"),
    "GetPlanStats": ("stats", "get"),
    "VerifyAuditLog": ("audit-entries", "verify"),
    "GetExperiment": ("experiments", "get"),
    "SetAlias": ("aliases", "set"),
    "RollbackAlias": ("aliases", "rollback"),
    "MergeIdentity": ("profiles", "merge-identity"),
    "EraseUser": ("profiles", "erase"),
    "BatchGetContactability": ("contactability", "batch-get"),
}


def kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


def split_rpc(rpc: str) -> tuple[str, str]:
    """`BatchGetProfiles` -> ("BatchGet", "Profiles"); `GetTraits` -> ("Get", "Traits")."""
    words = re.findall(r"[A-Z][a-z0-9]*", rpc)
    take = 2 if words and words[0] in _VERB_PREFIXES and len(words) > 2 else 1
    verb, noun = "".join(words[:take]), "".join(words[take:])
    return verb, noun or verb


def singular(noun: str) -> str:
    if noun.endswith("ies"):
        return noun[:-3] + "y"
    if noun.endswith(("sses", "ches", "shes", "xes")):
        return noun[:-2]
    if noun.endswith("s") and not noun.endswith(("ss", "us", "is")):
        return noun[:-1]
    return noun


@dataclasses.dataclass
class Rpc:
    """One RPC of one service, as a command."""

    service: str
    method: Any  # MethodDescriptor
    verb: str

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def request_class(self) -> type[Message]:
        return _message_class(self.service, self.method.input_type)

    @property
    def client_streaming(self) -> bool:
        return self.method.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.method.server_streaming

    @property
    def paginated(self) -> bool:
        return ("page_token" in self.method.input_type.fields_by_name
                and "next_page_token" in self.method.output_type.fields_by_name)


def _message_class(service: str, descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def load_services() -> tuple[dict[str, Any], list[str]]:
    """The descriptors of the services whose generated code is importable, and the others."""
    found, missing = {}, []
    for service in SERVICES:
        try:
            module = messages(service)
        except ModuleNotFoundError:
            missing.append(service)
            continue
        short = SERVICE_NAMES[service].rsplit(".", 1)[1]
        descriptor = module.DESCRIPTOR.services_by_name.get(short)
        if descriptor is None:
            missing.append(service)
        else:
            found[service] = descriptor
    return found, missing


def resources(descriptors: dict[str, Any]) -> dict[str, dict[str, Rpc]]:
    """{resource: {verb: Rpc}} for every RPC; a resource two services share is prefixed with
    the service (`scoring-operations`, `delivery-operations`)."""
    grouped: dict[tuple[str, str], dict[str, Rpc]] = {}
    display: dict[tuple[str, str], str] = {}
    for service, descriptor in descriptors.items():
        for method in descriptor.methods:
            if method.name in OVERRIDES:
                shown, verb = OVERRIDES[method.name]
                key = (service, singular(shown))
                grouped.setdefault(key, {})[verb] = Rpc(service, method, verb)
                display.setdefault(key, shown)
                if display[key] != shown and shown.endswith("s"):
                    display[key] = shown
                continue
            verb, noun = split_rpc(method.name)
            key = (service, kebab(singular(noun)))
            grouped.setdefault(key, {})[kebab(verb)] = Rpc(service, method, kebab(verb))
            # Prefer the plural spelling when any RPC uses it (ListProfiles over GetProfile).
            shown = kebab(noun)
            if key not in display or (shown != key[1] and display[key] == key[1]):
                display[key] = shown
    owners: dict[str, list[str]] = {}
    for (service, single), shown in display.items():
        owners.setdefault(shown, []).append(service)
    out: dict[str, dict[str, Rpc]] = {}
    for key, verbs in grouped.items():
        shown = display[key]
        if len(owners[shown]) > 1:
            shown = f"{key[0]}-{shown}"
        out[shown] = verbs
    return out


# ---------------------------------------------------------------------------------------------
# Request fields as flags


def parse_timestamp(text: str):
    """ISO 8601 (`2024-05-01`, `2024-05-01T10:00:00Z`), epoch milliseconds, or `now`."""
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    text = text.strip()
    if text == "now":
        ts.GetCurrentTime()
        return ts
    if re.fullmatch(r"-?\d{10,}", text):
        ts.FromMilliseconds(int(text))
        return ts
    try:
        instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use ISO 8601, epoch milliseconds or 'now')") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    ts.FromDatetime(instant.astimezone(dt.UTC))
    return ts


def parse_enum(field: FieldDescriptor, text: str) -> int:
    """`at-risk`, `AT_RISK`, `RFM_GROUP_AT_RISK` or the number."""
    enum = field.enum_type
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    wanted = text.strip().upper().replace("-", "_")
    from services.cli.render import _enum_prefix

    prefix = _enum_prefix(enum)
    for value in enum.values:
        if value.name in (wanted, prefix + wanted):
            return value.number
    choices = ", ".join(v.name[len(prefix):].lower().replace("_", "-")
                        for v in enum.values if v.number)
    raise argparse.ArgumentTypeError(f"unknown {enum.name} {text!r} (one of: {choices})")


def _duration(text: str):
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (for example 30s, 5m, 2h)")
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    d.FromNanoseconds(int(float(match.group(1)) * scale * 1e9))
    return d


def _converter(field: FieldDescriptor) -> Callable[[str], Any] | None:
    t = field.type
    if t == FieldDescriptor.TYPE_ENUM:
        return lambda text: parse_enum(field, text)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float
    if t == FieldDescriptor.TYPE_STRING:
        return str
    if t == FieldDescriptor.TYPE_BOOL:
        return None  # handled as a switch
    if t == FieldDescriptor.TYPE_BYTES:
        return lambda text: text.encode()
    if t == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return parse_timestamp
        if name == "google.protobuf.Duration":
            return _duration
        if name == "google.protobuf.FieldMask":
            from google.protobuf import field_mask_pb2

            return lambda text: field_mask_pb2.FieldMask(
                paths=[p.strip() for p in text.split(",") if p.strip()])
        cls = _message_class("", field.message_type)

        def parse_json(text: str):
            try:
                return json_format.Parse(_read_json_text(text), cls())
            except json_format.ParseError as exc:
                raise argparse.ArgumentTypeError(f"--{kebab_field(field)}: {exc}") from None
        return parse_json
    return int


def kebab_field(field: FieldDescriptor) -> str:
    return field.name.replace("_", "-")


def _read_json_text(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as handle:
            return handle.read()
    return text


RESERVED = {"json", "all", "output", "address", "api_key", "timeout", "help", "target"}


def add_request_arguments(parser: argparse.ArgumentParser, rpc: Rpc) -> None:
    fields = rpc.method.input_type.fields
    target = next((f for f in fields if f.name in ("name", "parent")
                   and f.type == FieldDescriptor.TYPE_STRING and not _is_repeated(f)), None)
    if target is not None:
        parser.add_argument("target", nargs="?", metavar=target.name.upper(),
                            help=f"the request's `{target.name}` (a resource name)")
    parser.set_defaults(_target_field=target.name if target is not None else None)
    parser.add_argument("--json", metavar="JSON|@FILE|-",
                        help="the request as JSON (proto field names); flags override it")
    if rpc.paginated:
        parser.add_argument("--all", action="store_true",
                            help="follow next_page_token and return every page")
    for field in fields:
        if field.name in RESERVED:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue  # maps go through --json
        flag = f"--{kebab_field(field)}"
        dest = f"f_{field.name}"
        label = field.enum_type.name if field.type == FieldDescriptor.TYPE_ENUM else None
        if field.type == FieldDescriptor.TYPE_BOOL and not _is_repeated(field):
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                                default=None)
            continue
        convert = _converter(field)
        help_text = f"enum {label}" if label else None
        if _is_repeated(field):
            parser.add_argument(flag, dest=dest, type=convert, action="append",
                                metavar=field.name.upper(), help=(
                (help_text + "; " if help_text else "") + "repeat for several values"))
        else:
            parser.add_argument(flag, dest=dest, type=convert, metavar=field.name.upper(),
                                help=help_text)


def build_request(rpc: Rpc, args: argparse.Namespace) -> Message:
    request = rpc.request_class()
    if getattr(args, "json", None):
        try:
            json_format.Parse(_read_json_text(args.json), request)
        except (json_format.ParseError, ValueError) as exc:
            raise UsageError(f"--json: {exc}") from None
    target_field = getattr(args, "_target_field", None)
    if target_field and getattr(args, "target", None):
        setattr(request, target_field, args.target)
    for field in rpc.method.input_type.fields:
        value = getattr(args, f"f_{field.name}", None)
        if value is None:
            continue
        if _is_repeated(field):
            container = getattr(request, field.name)
            del container[:]
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    container.add().CopyFrom(item)
            else:
                container.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(request, field.name).CopyFrom(value)
        else:
            setattr(request, field.name, value)
    return request


class UsageError(Exception):
    """A command line that cannot become a request."""


def merged_pages(pages: list[Message]) -> Message:
    """All pages of a list response folded into one response with every item."""
    from services.client.pagination import items_field

    if not pages:
        raise ValueError("no pages")
    merged = type(pages[0])()
    merged.CopyFrom(pages[-1])
    name = items_field(merged.DESCRIPTOR)
    container = getattr(merged, name)
    del container[:]
    for page in pages:
        container.extend(getattr(page, name))
    merged.next_page_token = ""
    return merged


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)
