"""A service run as its own process (`python -m services.<svc>`), killed and restarted by tests."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.testing import TEST_API_KEYS

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """One service in a child process on a fixed loopback port, so a restarted process is
    found at the same address by clients that keep their channel."""

    def __init__(self, service: str, data_dir: pathlib.Path, **env: str):
        self.service = service
        self.data_dir = pathlib.Path(data_dir)
        self.port = free_port()
        self.env = {
            **os.environ,
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(self.port),
            "METRICS_PORT": "0",
            "DATA_DIR": str(self.data_dir),
            "DATABASE_URL": f"sqlite:///{self.data_dir / f'{service}.db'}",
            "PROFILE_READ_DATABASE_URL": f"sqlite:///{self.data_dir / 'profile.db'}",
            "MKT_API_KEYS": TEST_API_KEYS,
            "MKT_API_KEY": "service-key",
            "MKT_ALLOW_ANONYMOUS": "0",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "SHUTDOWN_GRACE_SECONDS": "1",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.log = self.data_dir / f"{service}.log"
        self.kills = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", f"services.{self.service}"],
                                            env=self.env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)
        if not self.wait_serving(timeout):
            self.stop()
            raise RuntimeError(f"{self.service} did not start; log:\n{self.log.read_text()[-4000:]}")
        return self

    def wait_serving(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    return False
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return True
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        return False

    def kill(self) -> None:
        """SIGKILL: no draining, no cleanup, as a crash or an OOM kill."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def restart(self) -> ServiceProcess:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        return self.start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
