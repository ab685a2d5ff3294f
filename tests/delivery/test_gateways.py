"""Gateways: signed webhooks with address checks, SMTP to a real server, the gRPC contract."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
import typing
from concurrent import futures

import grpc
import pytest

from marketing.gateway.v1 import channel_gateway_pb2 as gpb
from marketing.gateway.v1 import channel_gateway_pb2_grpc as gpb_grpc
from services.common.errors import InvalidArgument
from services.delivery.gateways import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    RETRY,
    GrpcGateway,
    OutboundMessage,
    RecordingSink,
    SmtpGateway,
    WebhookGateway,
    validate_webhook_url,
)
from services.delivery.store import Store, open_engine

SECRET = b"s3cret"


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver on loopback whose answers the test scripts."""

    script: typing.ClassVar[list] = []
    seen: typing.ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.seen.append((self.path, dict(self.headers), body))
        status = Receiver.script.pop(0) if Receiver.script else 200
        if status == "slow":
            time.sleep(1.0)
            status = 200
        self.send_response(status)
        if status in (301, 302, 307):
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.script, Receiver.seen = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def message(url="", key="k1", address=""):
    return OutboundMessage(idempotency_key=key, channel="webhook", recipient="u1", title="T",
                           body="B", plan="plans/1", touch_id="t1", webhook_url=url,
                           address=address)


def test_webhook_is_signed_and_retried_with_backoff(receiver):
    Receiver.script = [503, 500, 200]
    gateway = WebhookGateway(SECRET, timeout_s=2, retries=3, backoff_s=0.01, allow_private=True)
    [result] = gateway.send([message(receiver)])
    assert result.status == ACCEPTED and len(Receiver.seen) == 3
    _, headers, body = Receiver.seen[-1]
    stamp, signature = (part.split("=", 1)[1] for part in headers["X-Signature"].split(","))
    expected = hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert signature == expected and headers["Idempotency-Key"] == "k1"
    assert json.loads(body)["body"] == "B"


def test_webhook_gives_up_as_retryable_and_rejects_redirects_and_4xx(receiver):
    gateway = WebhookGateway(SECRET, timeout_s=0.3, retries=1, backoff_s=0.01,
                             allow_private=True)
    Receiver.script = [500, 502]
    assert gateway.send([message(receiver)])[0].status == RETRY
    Receiver.script = ["slow", "slow"]
    assert gateway.send([message(receiver)])[0].status == RETRY
    Receiver.seen = []
    Receiver.script = [302]
    result = gateway.send([message(receiver)])[0]
    assert result.status == REJECTED and "redirect" in result.detail
    assert len(Receiver.seen) == 1  # the Location was not followed
    Receiver.script = [404]
    assert gateway.send([message(receiver)])[0].status == REJECTED


def test_webhook_refuses_private_destinations_unless_allowed(receiver):
    gateway = WebhookGateway(SECRET, timeout_s=1, retries=0)
    result = gateway.send([message(receiver)])[0]
    assert result.status == REJECTED and "non-public" in result.detail
    assert Receiver.seen == []
    # "localhost" is resolved and the resolved address is what gets checked.
    result = gateway.send([message(receiver.replace("127.0.0.1", "localhost"))])[0]
    assert result.status == REJECTED and Receiver.seen == []
    for url in ("http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x",
                "ftp://example.com/x"):
        with pytest.raises(InvalidArgument) as err:
            validate_webhook_url(url, False, "touches[0].content.webhook_url")
        assert err.value.violations[0][0] == "touches[0].content.webhook_url"
    validate_webhook_url(receiver, True, "f")


def test_smtp_gateway_delivers_to_a_real_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received = []

    class Collect(Message):
        def handle_message(self, msg):
            received.append(msg)

    from services.common.redis_client import free_port

    controller = Controller(Collect(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        gateway = SmtpGateway("127.0.0.1", controller.port, "news@shop.example")
        results = gateway.send([
            OutboundMessage("k1", "email", "u1", address="ann@example.com", subject="Hello",
                            body="Spring sale"),
            OutboundMessage("k2", "email", "u2", address="", subject="Hello", body="x"),
        ])
    finally:
        controller.stop()
    assert [r.status for r in results] == [ACCEPTED, REJECTED]
    assert len(received) == 1
    assert received[0]["To"] == "ann@example.com" and received[0]["Subject"] == "Hello"
    assert received[0]["Message-ID"] == "<k1@delivery.marketing>"
    assert "Spring sale" in received[0].get_payload()


class MockPushVendor(gpb_grpc.ChannelGatewayServiceServicer):
    """A push vendor's adapter (vendors cannot exist here), honouring idempotency keys."""

    def __init__(self):
        self.delivered = {}

    def SendBatch(self, request, context):
        results = []
        for m in request.messages:
            if not m.recipient_external_id:
                results.append(gpb.MessageResult(idempotency_key=m.idempotency_key,
                                                  status=gpb.SEND_STATUS_PERMANENT_FAILURE,
                                                  error_message="no device token"))
            elif m.idempotency_key in self.delivered:
                results.append(gpb.MessageResult(idempotency_key=m.idempotency_key,
                                                  status=gpb.SEND_STATUS_DUPLICATE))
            else:
                self.delivered[m.idempotency_key] = m
                results.append(gpb.MessageResult(idempotency_key=m.idempotency_key,
                                                  status=gpb.SEND_STATUS_ACCEPTED,
                                                  vendor_message_id=f"v-{len(self.delivered)}"))
        return gpb.SendBatchResponse(results=results)


def test_grpc_gateway_contract_with_a_push_vendor_adapter():
    vendor = MockPushVendor()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gpb_grpc.add_ChannelGatewayServiceServicer_to_server(vendor, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        gateway = GrpcGateway(f"127.0.0.1:{port}")
        batch = [OutboundMessage("k1", "push", "u1", title="T", body="B"),
                 OutboundMessage("k2", "push", "", title="T", body="B")]
        first = gateway.send(batch)
        again = gateway.send(batch[:1])
    finally:
        server.stop(0)
    assert [r.status for r in first] == [ACCEPTED, REJECTED]
    assert first[0].vendor_message_id == "v-1" and again[0].status == DUPLICATE
    assert vendor.delivered["k1"].channel == 1
    # An unreachable adapter makes every message retryable, never lost.
    assert {r.status for r in GrpcGateway(f"127.0.0.1:{port}", timeout_s=0.5).send(batch)} \
        == {RETRY}


def test_recording_sink_persists_across_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    sink = RecordingSink(Store(open_engine(url)))
    assert [r.status for r in sink.send([message(key="a"), message(key="b")])] == [ACCEPTED] * 2
    reopened = Store(open_engine(url))
    assert reopened.sink_count() == 2
    assert RecordingSink(reopened).send([message(key="a")])[0].status == DUPLICATE
    assert reopened.sink_count() == 2
