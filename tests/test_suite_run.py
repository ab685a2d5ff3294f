"""`make run`'s launcher brings up all four services: SERVING, with reflection, then stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.cli.suite_process import free_port_offset
from services.common.config import SERVICE_DEFAULTS, SERVICE_NAMES

pytestmark = pytest.mark.slow


def test_launcher_starts_four_serving_services_with_reflection(tmp_path):
    offset = free_port_offset()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATA_DIR=str(tmp_path / "var"), MKT_RUN_PORT_OFFSET=str(offset))
    proc = subprocess.Popen([sys.executable, "-m", "services.run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Ctrl-C stops the suite"):
                break
        output = "".join(lines)
        for service, defaults in SERVICE_DEFAULTS.items():
            address = f"127.0.0.1:{defaults['grpc_port'] + offset}"
            assert f"{address}" in output, output
            assert "NOT SERVING" not in output, output
            with grpc.insecure_channel(address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for name in ("", SERVICE_NAMES[service]):
                    response = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                    assert response.status == health_pb2.HealthCheckResponse.SERVING
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                request = reflection_pb2.ServerReflectionRequest(list_services="")
                listed = next(reflection.ServerReflectionInfo(iter([request]), timeout=5))
                names = {s.name for s in listed.list_services_response.service}
                assert SERVICE_NAMES[service] in names
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
