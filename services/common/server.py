"""Server bootstrap: one call pipeline (auth, deadlines, logging, metrics, errors), health, reflection."""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import signal
import threading
import time
import uuid
from concurrent import futures
from typing import Any, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from services.common import auth
from services.common.config import Settings
from services.common.errors import InvalidArgument, status_for, translate
from services.common.observability import configure_logging, observe, start_metrics_server

log = logging.getLogger("marketing.rpc")

# Methods anyone may call without a credential: probes and API discovery.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                   "/grpc.reflection.v1.ServerReflection/")

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def remaining_time(default: float | None = None) -> float | None:
    """Seconds left before the current RPC's deadline (for calls it makes onward)."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    left = max(0.0, deadline - time.monotonic())
    return left if default is None else min(left, default)


def current_request_id() -> str | None:
    return _request_id.get()


@dataclasses.dataclass
class ServiceDefinition:
    """One gRPC service to mount: its servicer, its full name and who may call each RPC.

    ``roles`` maps each RPC's short name to the roles allowed; an RPC missing from the map is
    refused for everyone but admin. ``start``/``stop`` run background work (schedulers,
    stream consumers) with the server. ``ready_at_start`` False keeps health NOT_SERVING until
    the service calls ``server.set_serving(full_name)`` (for example after loading models).
    """

    name: str
    register: Callable[[Any, grpc.Server], None]
    servicer: Any
    full_name: str
    roles: dict[str, Iterable[str]]
    start: Callable[[], None] | None = None
    stop: Callable[[], None] | None = None
    ready_at_start: bool = True


class CallPipeline(grpc.ServerInterceptor):
    """Wraps every handler: authenticate, authorize, propagate the deadline, log, count,
    and turn raised errors into statuses with rich details."""

    def __init__(self, settings: Settings, policy: dict[str, frozenset[str]]):
        self.settings = settings
        self.policy = policy
        # The wrapped handler of each method, built on its first call: the services'
        # handlers are fixed once the server starts, and wrapping one costs about as much
        # as the rest of the pipeline.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, handler, method: str):
        allowed = self.policy.get(method, frozenset())
        service_name, _, short = method.lstrip("/").rpartition("/")
        pipeline = self

        def unary_response(behavior):
            def handle(request, context):
                # A fresh context per call, so caller identity never leaks between calls
                # that reuse a pool thread.
                return contextvars.copy_context().run(pipeline._unary, behavior, request, context,
                                                      allowed, service_name, short)
            return handle

        def stream_response(behavior):
            def handle(request, context):
                ctx = contextvars.copy_context()
                started, code, request_id = time.perf_counter(), "OK", None
                try:
                    request_id = ctx.run(pipeline._enter, context, allowed, short)
                    iterator = ctx.run(behavior, request, context)
                    while True:
                        try:
                            item = ctx.run(next, iterator)
                        except StopIteration:
                            break
                        yield item
                except Exception as exc:  # noqa: BLE001 - every error becomes a status
                    code = pipeline._abort(context, exc, method)
                finally:
                    ctx.run(pipeline._finish, service_name, short, code, started, request_id,
                            context)
            return handle

        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler, unary_response),
            ("stream_unary", grpc.stream_unary_rpc_method_handler, unary_response),
            ("unary_stream", grpc.unary_stream_rpc_method_handler, stream_response),
            ("stream_stream", grpc.stream_stream_rpc_method_handler, stream_response),
        )
        for attr, factory, wrap in kinds:
            behavior = getattr(handler, attr)
            if behavior is not None:
                if attr.startswith("stream_"):
                    behavior = _checked_stream(behavior)
                else:
                    behavior = _checked_unary(behavior)
                return factory(
                    wrap(behavior),
                    request_deserializer=_tolerant(handler.request_deserializer),
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _enter(self, context, allowed: frozenset[str], short: str) -> str:
        """Sets the call's request id, deadline and caller; raises if the caller may not call."""
        metadata = context.invocation_metadata()
        request_id = next((v for k, v in metadata if k == "x-request-id"), None) or uuid.uuid4().hex
        _request_id.set(request_id)
        remaining = context.time_remaining()
        _deadline.set(time.monotonic() + remaining if remaining is not None else None)
        principal = auth.authenticate(metadata, self.settings.api_keys, self.settings.allow_anonymous)
        auth.set_principal(principal)
        auth.authorize(principal, allowed, short)
        return request_id

    def _unary(self, behavior, request, context, allowed, service_name, short):
        started, code, request_id = time.perf_counter(), "OK", None
        try:
            request_id = self._enter(context, allowed, short)
            return behavior(request, context)
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            code = self._abort(context, exc, f"{service_name}/{short}")
        finally:
            self._finish(service_name, short, code, started, request_id, context)

    def _abort(self, context, exc: BaseException, method: str) -> str:
        """Aborts the call with the status for ``exc``; always raises. The status code is read
        back from the context when the call is logged."""
        code = context.code() if hasattr(context, "code") else None
        if code is not None and code != grpc.StatusCode.OK:
            raise exc  # the handler aborted the call itself; keep its status
        if translate(exc) is None:
            log.exception("unhandled error in %s", method, extra={"method": method})
        context.abort_with_status(rpc_status.to_status(status_for(exc)))
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    def _finish(self, service, short, code, started, request_id, context) -> None:
        if code == "OK":
            actual = context.code() if hasattr(context, "code") else None
            if actual is not None:
                code = actual.name
        elapsed = observe(service, short, code, started)
        if log.isEnabledFor(logging.INFO):
            principal = auth._principal.get()
            log.info("rpc", extra={"method": f"{service}/{short}", "code": code,
                                   "duration_ms": round(elapsed * 1000, 3),
                                   "subject": principal.subject if principal else None,
                                   "request_id": request_id})


class _Malformed:
    """Stands for a request whose bytes did not parse, so the handler can refuse it cleanly
    (grpc itself would answer INTERNAL)."""

    def __init__(self, error: Exception):
        self.error = error


def _tolerant(deserializer):
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError and friends
            return _Malformed(exc)

    return parse


def _refuse(request) -> None:
    raise InvalidArgument("request", f"malformed protobuf message: {request.error}")


def _checked_unary(behavior):
    def handle(request, context):
        if isinstance(request, _Malformed):
            _refuse(request)
        return behavior(request, context)

    return handle


def _checked_stream(behavior):
    def checked(requests):
        for request in requests:
            if isinstance(request, _Malformed):
                _refuse(request)
            yield request

    def handle(request_iterator, context):
        return behavior(checked(request_iterator), context)

    return handle


class SuiteServer:
    """A started-or-startable gRPC server with its health servicer and lifecycle hooks."""

    def __init__(self, grpc_server: grpc.Server, health_servicer: health.HealthServicer,
                 definitions: list[ServiceDefinition], settings: Settings):
        self.grpc_server = grpc_server
        self.health = health_servicer
        self.definitions = definitions
        self.settings = settings
        self._stopped = threading.Event()

    def set_serving(self, full_name: str, serving: bool = True) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        self.health.set(full_name, status)
        if all(self._status(d.full_name) == health_pb2.HealthCheckResponse.SERVING
               for d in self.definitions):
            self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        elif not serving:
            self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    def _status(self, name: str):
        response = self.health.Check(health_pb2.HealthCheckRequest(service=name), None)
        return response.status

    def start(self) -> "SuiteServer":
        self.grpc_server.start()
        for definition in self.definitions:
            if definition.start:
                definition.start()
            if definition.ready_at_start:
                self.set_serving(definition.full_name)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Drains: health says NOT_SERVING, new calls are refused, in-flight calls finish."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        for definition in self.definitions:
            if definition.stop:
                try:
                    definition.stop()
                except Exception:  # noqa: BLE001
                    log.exception("stopping %s failed", definition.name)
        grace = self.settings.shutdown_grace_s if grace is None else grace
        self.grpc_server.stop(grace).wait()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.grpc_server.wait_for_termination(timeout)

    def __enter__(self) -> "SuiteServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop(0)


def create_server(
    settings: Settings,
    definitions: list[ServiceDefinition],
    address: str | None = None,
    max_workers: int = 32,
) -> tuple[SuiteServer, int]:
    """Builds the server (not started) and binds ``address``; returns it and the bound port."""
    policy: dict[str, frozenset[str]] = {}
    for definition in definitions:
        for rpc, roles in definition.roles.items():
            unknown = set(roles) - auth.ROLES
            if unknown:
                raise ValueError(f"{definition.full_name}/{rpc}: unknown roles {unknown}")
            policy[f"/{definition.full_name}/{rpc}"] = frozenset(roles)
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.so_reuseport", 0),
        # Clients reconnect every few minutes, so replicas added by a scale-out get their
        # share of long-lived HTTP/2 connections behind a plain ClusterIP Service.
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", 30_000),
    ]
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=settings.service),
        interceptors=[CallPipeline(settings, policy)],
        options=options,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    for definition in definitions:
        definition.register(definition.servicer, grpc_server)
        health_servicer.set(definition.full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
        names.append(definition.full_name)
    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(names, grpc_server)
    address = address or f"{settings.host}:{settings.port}"
    port = grpc_server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    return SuiteServer(grpc_server, health_servicer, definitions, settings), port


def serve(settings: Settings, build: Callable[[Settings], list[ServiceDefinition]]) -> None:
    """Runs a service until SIGTERM or SIGINT, then drains in-flight calls and exits."""
    configure_logging(settings.log_level, settings.log_format)
    definitions = build(settings)
    server, port = create_server(settings, definitions)
    start_metrics_server(settings.metrics_port)
    server.start()
    logging.getLogger("marketing").info(
        "serving", extra={"service": settings.service, "address": f"{settings.host}:{port}",
                          "metrics_port": settings.metrics_port},
    )
    done = threading.Event()

    def shutdown(signum, _frame):
        logging.getLogger("marketing").info("draining", extra={"signal": signum})
        done.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    done.wait()
    server.stop()
    logging.getLogger("marketing").info("stopped", extra={"service": settings.service})
