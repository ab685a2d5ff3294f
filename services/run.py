"""Runs the whole suite on one machine: embedded Redis, migrations, then the four services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import SERVICE_DEFAULTS, SERVICE_NAMES, env_str
from services.common.redis_client import EmbeddedRedis

# Local credentials used when MKT_API_KEYS is not set; never use them beyond a laptop.
DEV_API_KEYS = (
    "dev-operator:operator:dev-operator;dev-approver:approver:dev-approver;"
    "dev-approver2:approver:dev-approver2;dev-admin:admin:dev-admin;"
    "dev-service:service:dev-service"
)


def wait_serving(address: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DATA_DIR", "var")
    env.setdefault("GRPC_HOST", "127.0.0.1")
    env.setdefault("LOG_FORMAT", "text")
    env.setdefault("MKT_API_KEYS", DEV_API_KEYS)
    env.setdefault("MKT_API_KEY", "dev-service")
    redis = None
    if not env.get("REDIS_URL"):
        redis = EmbeddedRedis(os.path.join(env["DATA_DIR"], "redis"))
        env["REDIS_URL"] = redis.start()
    # MKT_RUN_PORT_OFFSET shifts every port, so a second suite (a test, say) can run beside one.
    offset = int(env_str("MKT_RUN_PORT_OFFSET", "0"))
    ports = {s: (d["grpc_port"] + offset, d["metrics_port"] + offset)
             for s, d in SERVICE_DEFAULTS.items()}
    for service, (grpc_port, _) in ports.items():
        env.setdefault(f"{service.upper()}_ADDR", f"127.0.0.1:{grpc_port}")
    subprocess.run([sys.executable, "-m", "services.migrate"], env=env, check=True)
    children: dict[str, subprocess.Popen] = {}
    for service, (grpc_port, metrics_port) in ports.items():
        child_env = dict(env, GRPC_PORT=str(grpc_port), METRICS_PORT=str(metrics_port))
        children[service] = subprocess.Popen([sys.executable, "-m", f"services.{service}"],
                                             env=child_env)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    host = env["GRPC_HOST"]
    for service, (grpc_port, metrics_port) in ports.items():
        address = f"{host}:{grpc_port}"
        ok = wait_serving(address)
        print(f"{service:9} {address:18} {SERVICE_NAMES[service]:40} "
              f"{'SERVING' if ok else 'NOT SERVING'}  metrics :{metrics_port}", flush=True)
    print(f"redis     {env['REDIS_URL']}", flush=True)
    if env["MKT_API_KEYS"] == DEV_API_KEYS:
        print("credentials: 'authorization: Bearer dev-operator' (also dev-approver, "
              "dev-admin, dev-service)", flush=True)
    print("Ctrl-C stops the suite.", flush=True)
    while not stopping and all(child.poll() is None for child in children.values()):
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=float(env_str("SHUTDOWN_GRACE_SECONDS", "20")) + 5)
        except subprocess.TimeoutExpired:
            child.kill()
    if redis:
        redis.stop()
    failed = [s for s, c in children.items() if c.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed and not stopping else 0


if __name__ == "__main__":
    sys.exit(main())
