"""`mkt`: the command-line client of the marketing suite, over the public gRPC API."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import grpc

from services.cli import commands, render
from services.cli.commands import Rpc, UsageError
from services.client import connect, describe_error, pages

EPILOG = """\
Addresses default to $PROFILE_ADDR, $SEGMENT_ADDR, $SCORING_ADDR, $DELIVERY_ADDR (else the
local ports 50051..50054); the credential to $MKT_API_KEY. Examples:

  mkt profiles get profiles/u-1
  mkt profiles list --rfm-group at-risk --all --output json
  mkt events ingest purchases.csv
  mkt traits recompute --as-of-time 1998-06-30
"""


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--address", default=default,
                        help="host:port of the service the command talks to")
    parser.add_argument("--api-key", default=default,
                        help="credential (default $MKT_API_KEY)")
    parser.add_argument("--output", "-o", choices=("table", "json"),
                        default=argparse.SUPPRESS if suppress else "table")
    parser.add_argument("--timeout", type=float,
                        default=argparse.SUPPRESS if suppress else 30.0,
                        help="deadline of each call in seconds (default 30)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, dict[str, Rpc]], list[str]]:
    descriptors, missing = commands.load_services()
    tree = commands.resources(descriptors)
    parser = argparse.ArgumentParser(
        prog="mkt", description="Command-line client of the marketing suite.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="resource", metavar="RESOURCE")
    extras = _extra_commands(tree)
    for resource in sorted(set(tree) | set(extras)):
        verbs = tree.get(resource, {})
        services = sorted({rpc.service for rpc in verbs.values()}) or \
            [extras[resource][0][0]]
        res_parser = sub.add_parser(resource, help=f"{services[0]} service")
        res_sub = res_parser.add_subparsers(dest="verb", metavar="VERB")
        curated = {verb for _, verb, *_ in extras.get(resource, [])}
        for verb, rpc in sorted(verbs.items()):
            if verb in curated or (rpc.client_streaming
                                   and (resource, verb) not in CURATED_STREAMS):
                continue
            doc = _rpc_doc(rpc)
            verb_parser = res_sub.add_parser(verb, help=doc, description=doc)
            _global_options(verb_parser, suppress=True)
            verb_parser.set_defaults(_rpc=rpc, _run=run_rpc)
            if (resource, verb) in CURATED_STREAMS:
                CURATED_STREAMS[(resource, verb)][0](verb_parser)
                verb_parser.set_defaults(_run=CURATED_STREAMS[(resource, verb)][1])
                continue
            commands.add_request_arguments(verb_parser, rpc)
            if _returns_operation(rpc) and _operation_getter(tree, rpc) is not None:
                verb_parser.add_argument("--wait", action="store_true",
                                         help="poll the returned operation until it is done")
        for service, verb, setup, handler, doc in extras.get(resource, []):
            verb_parser = res_sub.add_parser(verb, help=doc, description=doc)
            _global_options(verb_parser, suppress=True)
            setup(verb_parser)
            verb_parser.set_defaults(_run=handler, _service=service, _tree=tree)
    return parser, tree, missing


def _rpc_doc(rpc: Rpc) -> str:
    return f"{rpc.service}: {rpc.name}"


# ---------------------------------------------------------------------------------------------
# Running a generic RPC


def _stub(args, service: str):
    return connect(service, args.address, args.api_key, timeout=args.timeout)


def run_rpc(args) -> int:
    rpc: Rpc = args._rpc
    request = commands.build_request(rpc, args)
    stub = _stub(args, rpc.service)
    call = getattr(stub, rpc.name)
    try:
        if rpc.server_streaming:
            return _print_stream(args, _collect_stream(call(request), rpc), rpc)
        if rpc.paginated and getattr(args, "all", False):
            response = commands.merged_pages(list(pages(call, request)))
        else:
            response = call(request)
        if getattr(args, "wait", False):
            response = wait_operation(args, rpc.service, _operation_of(response),
                                      _operation_getter(args._tree_cache, rpc))
        _print(args, response)
        return 0
    finally:
        stub.channel.close()


def _print(args, message) -> None:
    if args.output == "json":
        print(render.to_json(message))
    else:
        print(render.render_table(message))


def _items_in(message) -> int:
    """How many items a streamed message carries: the length of its longest repeated field,
    or one for a message without repeated fields."""
    sizes = [len(getattr(message, f.name)) for f in message.DESCRIPTOR.fields if f.is_repeated]
    return max(sizes) if sizes else 1


def _collect_stream(responses, rpc: Rpc) -> list:
    """Reads a server stream (a snapshot export, a batch scoring) with a progress bar of the
    items received, on stderr when it is a terminal; MKT_NO_PROGRESS=1 hides it."""
    from tqdm import tqdm

    bar = tqdm(desc=rpc.name, unit="item", file=sys.stderr, leave=True,
               disable=not sys.stderr.isatty() or os.environ.get("MKT_NO_PROGRESS") == "1")
    messages = []
    try:
        for message in responses:
            messages.append(message)
            bar.update(_items_in(message))
    finally:
        bar.close()
    return messages


def _print_stream(args, items: list, rpc: Rpc) -> int:
    if args.output == "json":
        print(commands.dump_json([render.to_dict(i) for i in items]))
    else:
        print(render.rows_table(items, rpc.method.output_type))
    return 0


# ---------------------------------------------------------------------------------------------
# Operations (AIP-151): `--wait` on RPCs that start one, and `<...>operations wait NAME`


def _returns_operation(rpc: Rpc) -> bool:
    out = rpc.method.output_type
    if out.full_name == "marketing.common.v1.Operation":
        return True
    return any(f.message_type is not None and f.message_type.full_name ==
               "marketing.common.v1.Operation" for f in out.fields)


def _operation_of(response):
    if response.DESCRIPTOR.full_name == "marketing.common.v1.Operation":
        return response
    for field, value in response.ListFields():
        if field.message_type is not None and \
                field.message_type.full_name == "marketing.common.v1.Operation":
            return value
    raise UsageError("the response carries no operation")


def _operation_getter(tree: dict[str, dict[str, Rpc]], rpc: Rpc) -> Rpc | None:
    for resource, verbs in tree.items():
        get = verbs.get("get")
        if get is not None and get.service == rpc.service and resource.endswith("operations"):
            return get
    return None


def wait_operation(args, service: str, operation, getter: Rpc, poll_s: float = 0.5):
    """Polls GetOperation until done, with a progress bar; raises the operation's error."""
    import time

    from tqdm import tqdm

    stub = _stub(args, service)
    try:
        bar = tqdm(total=100, desc=operation.name, unit="%", file=sys.stderr,
                   disable=not sys.stderr.isatty() or os.environ.get("MKT_NO_PROGRESS") == "1")
        shown = 0
        while True:
            percent = min(100, max(shown, operation.progress_percent if not operation.done
                                   else 100))
            bar.update(percent - shown)
            shown = percent
            if operation.done:
                break
            time.sleep(poll_s)
            request = getter.request_class(name=operation.name)
            operation = _operation_of(getattr(stub, getter.name)(request))
        bar.close()
    finally:
        stub.channel.close()
    if operation.HasField("error") and operation.error.code != 0:
        raise OperationFailed(operation)
    return operation


class OperationFailed(Exception):
    def __init__(self, operation):
        self.operation = operation
        code = grpc.StatusCode.UNKNOWN
        for status in grpc.StatusCode:
            if status.value[0] == operation.error.code:
                code = status
        super().__init__(f"{operation.name} failed: {code.name}: {operation.error.message}")


def _wait_setup(parser) -> None:
    parser.add_argument("target", metavar="NAME", help="the operation, operations/...")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls")


def _wait_handler(args) -> int:
    getter = _operation_getter(args._tree, _ServiceOnly(args._service))
    stub = _stub(args, args._service)
    try:
        first = _operation_of(getattr(stub, getter.name)(getter.request_class(name=args.target)))
    finally:
        stub.channel.close()
    done = wait_operation(args, args._service, first, getter, args.poll)
    _print(args, done)
    return 0


class _ServiceOnly:
    def __init__(self, service: str):
        self.service = service


# ---------------------------------------------------------------------------------------------
# Curated commands


def _ingest_setup(parser) -> None:
    from services.cli import ingest

    ingest.add_arguments(parser)


def _ingest_handler(args) -> int:
    from services.cli import ingest

    return ingest.run(args)


# (resource, verb) of client-streaming RPCs served by a curated command instead.
CURATED_STREAMS: dict[tuple[str, str], tuple[Any, Any]] = {}


def _extra_commands(tree: dict[str, dict[str, Rpc]]) -> dict[str, list]:
    """Commands that are not one RPC each: file ingestion, operation polling."""
    extras: dict[str, list] = {}
    events = tree.get("events", {})
    if "ingest" in events and events["ingest"].service == "profile":
        extras.setdefault("events", []).append(
            ("profile", "ingest", _ingest_setup, _ingest_handler,
             "profile: ingest events from a CSV or JSON-lines file, in batches, with progress"))
    for resource, verbs in tree.items():
        if resource.endswith("operations") and "get" in verbs and "wait" not in verbs:
            extras.setdefault(resource, []).append(
                (verbs["get"].service, "wait", _wait_setup, _wait_handler,
                 "poll an operation until it is done, with a progress bar"))
    return extras


def main(argv: list[str] | None = None) -> int:
    parser, tree, missing = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors and --help
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "resource", None) or not hasattr(args, "_run"):
        if getattr(args, "resource", None):
            try:
                parser.parse_args([args.resource, "--help"])
            except SystemExit:
                pass
            return 2
        parser.print_help()
        if missing:
            print(f"\nnot available in this build (no generated code): {', '.join(missing)}",
                  file=sys.stderr)
        return 2
    args._tree_cache = tree
    try:
        return args._run(args)
    except grpc.RpcError as exc:
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        return 1
    except OperationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (UsageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
