"""Starts `python -m services.run` (the `make run` launcher) on a port offset and waits for it."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import threading
import time

from services.common.config import SERVICE_DEFAULTS

READY_LINE = "Ctrl-C stops the suite"


def free_port_offset(tries: int = 50) -> int:
    """A port offset at which the suite's eight ports are free now. The offsets drawn put the
    gRPC ports above and the metrics ports below Linux's default ephemeral range
    (32768-60999), where the kernel never hands one to a client socket of another program;
    each port is also checked by binding it."""
    for _ in range(tries):
        offset = random.randrange(11_000, 15_400)
        ports = [d[k] + offset for d in SERVICE_DEFAULTS.values()
                 for k in ("grpc_port", "metrics_port")]
        try:
            for port in ports:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return offset
    raise RuntimeError("no port offset with eight free ports found")


class SuiteProcess:
    """The four services as child processes with their own data directory and log file."""

    def __init__(self, data_dir: pathlib.Path, offset: int | None = None,
                 extra_env: dict[str, str] | None = None):
        self.data_dir = pathlib.Path(data_dir)
        self.offset = offset if offset is not None else free_port_offset()
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "suite.log"
        self.not_serving: list[str] = []

    @property
    def addresses(self) -> dict[str, str]:
        return {s: f"127.0.0.1:{d['grpc_port'] + self.offset}"
                for s, d in SERVICE_DEFAULTS.items()}

    def start(self, timeout: float = 120.0) -> dict[str, str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "PROFILE_READ_DATABASE_URL", "REDIS_URL",
                            "MKT_API_KEYS", "MKT_API_KEY")
               and not k.endswith("_ADDR")}
        env.update(DATA_DIR=str(self.data_dir), MKT_RUN_PORT_OFFSET=str(self.offset),
                   LOG_LEVEL=env.get("LOG_LEVEL", "WARNING"), LOG_FORMAT="text",
                   METRICS_PORT="0")
        env.update(self.extra_env)
        log = open(self.log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.run"], env=env,
                                     stdout=subprocess.PIPE, stderr=log, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            log.write(line)
            log.flush()
            if line.startswith(READY_LINE):
                # Services that did not come up are reported; the steps needing them say so.
                self.not_serving = [x.split()[0] for x in lines if "NOT SERVING" in x]
                # Keep draining the launcher's output so a chatty child never blocks on a
                # full pipe.
                threading.Thread(target=self._drain, args=(log,), daemon=True).start()
                return self.addresses
        self.stop()
        raise RuntimeError("the suite did not start:\n" + "".join(lines)
                           + f"(service logs in {self.log_path})")

    def _drain(self, log) -> None:
        for line in self.proc.stdout:
            log.write(line)
        log.flush()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> SuiteProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
