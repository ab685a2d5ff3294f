"""Channel gateways: built-in webhook, SMTP and recording sink, remote ChannelGatewayService
adapters over gRPC, and routing of channels to gateways by configuration."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import random
import smtplib
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from typing import Any, Protocol

from services.common.errors import InvalidArgument

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, RETRY, REJECTED = "accepted", "duplicate", "retry", "rejected"


@dataclasses.dataclass(frozen=True)
class OutboundMessage:
    """One rendered message for one user (mirrors marketing.gateway.v1.OutboundMessage)."""

    idempotency_key: str
    channel: str
    recipient: str
    address: str = ""
    title: str = ""
    body: str = ""
    subject: str = ""
    data: Mapping[str, str] = dataclasses.field(default_factory=dict)
    plan: str = ""
    touch_id: str = ""
    webhook_url: str = ""


@dataclasses.dataclass(frozen=True)
class SendResult:
    idempotency_key: str
    status: str  # accepted | duplicate | retry | rejected
    detail: str = ""
    vendor_message_id: str = ""
    retry_after_s: float = 0.0

    @property
    def delivered(self) -> bool:
        return self.status in (ACCEPTED, DUPLICATE)


class Gateway(Protocol):
    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]: ...


# Recording sink ----------------------------------------------------------------------------


class RecordingSink:
    """Stores every message in the delivery database instead of sending it (dry runs, tests,
    demos). It honours idempotency keys like a vendor: a repeated key is a duplicate."""

    def __init__(self, store):
        self.store = store

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        fresh = self.store.sink_record([
            {
                "idempotency_key": m.idempotency_key, "channel": m.channel,
                "recipient": m.recipient, "title": m.title, "body": m.body,
                "payload": {"subject": m.subject, "data": dict(m.data), "plan": m.plan,
                            "touch_id": m.touch_id, "address": m.address},
            }
            for m in messages
        ])
        return [SendResult(m.idempotency_key, ACCEPTED if new else DUPLICATE,
                           vendor_message_id=m.idempotency_key)
                for m, new in zip(messages, fresh)]


# HTTP webhook ------------------------------------------------------------------------------


class DestinationRefused(Exception):
    """The destination resolves to an address webhooks may not reach."""


def forbidden_address(ip: ipaddress._BaseAddress) -> bool:
    """Private, loopback, link-local, multicast, reserved or unspecified: not the public
    internet, so a webhook there could probe the internal network."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified)


def resolve_checked(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses ``host`` resolves to, refusing forbidden ones unless allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DestinationRefused(f"cannot resolve {host!r}: {exc}") from exc
    addresses = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
        if forbidden_address(ip) and not allow_private:
            raise DestinationRefused(f"{host!r} resolves to the non-public address {ip}")
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    if not addresses:
        raise DestinationRefused(f"{host!r} has no address")
    return addresses


def validate_webhook_url(url: str, allow_private: bool, field: str) -> None:
    """Save-time check of a webhook URL (scheme, host, and where it resolves now)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidArgument(field, "must be an http or https URL with a host")
    try:
        resolve_checked(parsed.hostname, parsed.port or 443, allow_private)
    except DestinationRefused as exc:
        raise InvalidArgument(field, str(exc)) from exc


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, not to a fresh DNS answer."""

    def __init__(self, host, port, address, allow_private, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address, self._allow_private = address, allow_private

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
        if forbidden_address(peer) and not self._allow_private:
            sock.close()
            raise DestinationRefused(f"connected peer {peer} is not a public address")
        return sock

    def connect(self):
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def __init__(self, host, port, address, allow_private, timeout, context):
        super().__init__(host, port, address, allow_private, timeout)
        self._context = context

    def connect(self):
        self.sock = self._context.wrap_socket(self._open(), server_hostname=self.host)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over ``<timestamp>.<body>``, hex encoded; receivers recompute it."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookGateway:
    """POSTs each message as signed JSON to the touch's webhook URL.

    Headers: ``X-Signature: t=<unix seconds>,v1=<hmac>``, ``Idempotency-Key``. 2xx accepts;
    408, 429, 5xx, timeouts and connection errors are retried with exponential backoff up to
    ``retries`` times, then reported retryable (the ledger retries later, then dead-letters);
    redirects are never followed and, like other 4xx, reject the message.
    """

    def __init__(self, secret: bytes, timeout_s: float = 5.0, retries: int = 2,
                 backoff_s: float = 0.2, allow_private: bool = False, concurrency: int = 8,
                 default_url: str = ""):
        self.secret = secret
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.allow_private = allow_private
        self.default_url = default_url
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook")

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return list(self._pool.map(self._send_one, messages))

    def _send_one(self, message: OutboundMessage) -> SendResult:
        url = message.webhook_url or self.default_url
        body = json.dumps({
            "idempotency_key": message.idempotency_key, "channel": message.channel,
            "recipient": message.recipient, "address": message.address,
            "title": message.title, "body": message.body, "subject": message.subject,
            "data": dict(message.data), "plan": message.plan, "touch_id": message.touch_id,
        }, sort_keys=True).encode()
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random() / 2))
            try:
                status, reason = self._post(url, body, message.idempotency_key)
            except DestinationRefused as exc:
                return SendResult(message.idempotency_key, REJECTED, str(exc))
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if 200 <= status < 300:
                return SendResult(message.idempotency_key, ACCEPTED, vendor_message_id="")
            if 300 <= status < 400:
                return SendResult(message.idempotency_key, REJECTED,
                                  f"HTTP {status}: redirects are not followed")
            if status in (408, 429) or status >= 500:
                last = f"HTTP {status} {reason}"
                continue
            return SendResult(message.idempotency_key, REJECTED, f"HTTP {status} {reason}")
        return SendResult(message.idempotency_key, RETRY, last)

    def _post(self, url: str, body: bytes, key: str) -> tuple[int, str]:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise DestinationRefused(f"not an http(s) URL: {url!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        address = resolve_checked(parsed.hostname, port, self.allow_private)[0]
        if parsed.scheme == "https":
            conn = _PinnedHTTPSConnection(parsed.hostname, port, address, self.allow_private,
                                          self.timeout_s, ssl.create_default_context())
        else:
            conn = _PinnedHTTPConnection(parsed.hostname, port, address, self.allow_private,
                                         self.timeout_s)
        timestamp = str(int(time.time()))
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        try:
            conn.request("POST", path, body=body, headers={
                "Content-Type": "application/json", "Idempotency-Key": key,
                "X-Signature": f"t={timestamp},v1={sign(self.secret, timestamp, body)}",
                "User-Agent": "marketing-delivery/1",
            })
            response = conn.getresponse()
            response.read()
            return response.status, response.reason
        finally:
            conn.close()


# SMTP email --------------------------------------------------------------------------------


class SmtpGateway:
    """Sends email over SMTP, one session per batch; the Message-ID derives from the
    idempotency key so receiving systems can drop a resent copy."""

    def __init__(self, host: str, port: int, sender: str, timeout_s: float = 10.0,
                 username: str = "", password: str = "", starttls: bool = False):
        self.host, self.port, self.sender = host, port, sender
        self.timeout_s = timeout_s
        self.username, self.password, self.starttls = username, password, starttls

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results: dict[str, SendResult] = {}
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
                for m in messages:
                    results[m.idempotency_key] = self._send_one(smtp, m)
        except (OSError, smtplib.SMTPException) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return [results.get(m.idempotency_key) or SendResult(m.idempotency_key, RETRY, detail)
                    for m in messages]
        return [results[m.idempotency_key] for m in messages]

    def _send_one(self, smtp: smtplib.SMTP, m: OutboundMessage) -> SendResult:
        if not m.address or "@" not in m.address:
            return SendResult(m.idempotency_key, REJECTED, "no email address on the profile")
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = m.address
        email["Subject"] = m.subject or m.title
        email["Message-ID"] = f"<{m.idempotency_key}@delivery.marketing>"
        email.set_content(m.body)
        try:
            refused = smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            return SendResult(m.idempotency_key, REJECTED, f"recipient refused: {exc}")
        except smtplib.SMTPResponseException as exc:
            status = RETRY if 400 <= exc.smtp_code < 500 else REJECTED
            return SendResult(m.idempotency_key, status, f"SMTP {exc.smtp_code}")
        if refused:
            return SendResult(m.idempotency_key, REJECTED, f"refused: {refused}")
        return SendResult(m.idempotency_key, ACCEPTED, vendor_message_id=email["Message-ID"])


# Remote adapters over the ChannelGatewayService contract ---------------------------------

_CHANNEL_ENUM = {"push": 1, "sms": 2, "email": 3, "wechat": 4, "in_app": 5, "webhook": 6,
                 "coupon": 7}


class GrpcGateway:
    """Calls a vendor adapter that implements marketing.gateway.v1.ChannelGatewayService."""

    def __init__(self, target: str, timeout_s: float = 10.0, channel=None):
        import grpc

        from marketing.gateway.v1 import channel_gateway_pb2_grpc

        self._channel = channel or grpc.insecure_channel(target)
        self._stub = channel_gateway_pb2_grpc.ChannelGatewayServiceStub(self._channel)
        self.timeout_s = timeout_s

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        import grpc

        from marketing.gateway.v1 import channel_gateway_pb2 as pb

        request = pb.SendBatchRequest(messages=[
            pb.OutboundMessage(
                idempotency_key=m.idempotency_key, channel=_CHANNEL_ENUM.get(m.channel, 0),
                recipient_external_id=m.recipient, address=m.address, title=m.title,
                body=m.body, subject=m.subject, data=dict(m.data), plan=m.plan,
                touch_id=m.touch_id,
            )
            for m in messages
        ])
        try:
            response = self._stub.SendBatch(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            detail = f"gateway call failed: {exc.code().name}"
            return [SendResult(m.idempotency_key, RETRY, detail) for m in messages]
        by_key = {r.idempotency_key: r for r in response.results}
        mapping = {pb.SEND_STATUS_ACCEPTED: ACCEPTED, pb.SEND_STATUS_DUPLICATE: DUPLICATE,
                   pb.SEND_STATUS_PERMANENT_FAILURE: REJECTED}
        out = []
        for m in messages:
            r = by_key.get(m.idempotency_key)
            if r is None:
                out.append(SendResult(m.idempotency_key, RETRY, "no result from the gateway"))
                continue
            out.append(SendResult(
                m.idempotency_key, mapping.get(r.status, RETRY), r.error_message,
                r.vendor_message_id, r.retry_after.ToMilliseconds() / 1000.0,
            ))
        return out


# Routing -----------------------------------------------------------------------------------


class Router:
    """Maps each channel to its gateway; channels without a route go to ``default``."""

    def __init__(self, routes: Mapping[str, Gateway], default: Gateway | None = None):
        self.routes = dict(routes)
        self.default = default

    def gateway_for(self, channel: str) -> Gateway:
        gateway = self.routes.get(channel, self.default)
        if gateway is None:
            raise LookupError(f"no gateway configured for channel {channel!r}")
        return gateway


def build_router(config: Mapping[str, Any], store, allow_private: bool,
                 webhook_secret: bytes) -> Router:
    """Routes from configuration (``DELIVERY_GATEWAYS``, JSON): ``{"<channel>": {"type":
    "sink"|"webhook"|"smtp"|"grpc", ...options}, "default": {...}}``. Without configuration
    every channel goes to the recording sink."""
    def make(spec: Mapping[str, Any]) -> Gateway:
        kind = spec.get("type")
        if kind == "sink":
            return RecordingSink(store)
        if kind == "webhook":
            return WebhookGateway(webhook_secret, float(spec.get("timeout_s", 5)),
                                  int(spec.get("retries", 2)), allow_private=allow_private,
                                  default_url=spec.get("url", ""))
        if kind == "smtp":
            return SmtpGateway(spec["host"], int(spec.get("port", 25)),
                               spec.get("sender", "no-reply@localhost"),
                               username=spec.get("username", ""),
                               password=spec.get("password", ""),
                               starttls=bool(spec.get("starttls", False)))
        if kind == "grpc":
            return GrpcGateway(spec["target"], float(spec.get("timeout_s", 10)))
        raise ValueError(f"unknown gateway type {kind!r}")

    routes = {ch: make(spec) for ch, spec in config.items() if ch != "default"}
    default = make(config["default"]) if "default" in config else RecordingSink(store)
    return Router(routes, default)
