"""A Node.js client built from protos/ at run time calls a running service end to end."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import google.rpc
import pytest

from services.common.db import migrate
from services.common.testing import running_server, service_settings
from services.profile.servicer import build

ROOT = pathlib.Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "clients" / "node"

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def node_ready():
    if shutil.which("node") is None:
        pytest.skip("Node.js not installed")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        pytest.skip("clients/node dependencies not installed (make install runs npm ci)")


def node_call(address: str, key: str | None, service: str, method: str, request: dict):
    googleapis = pathlib.Path(google.rpc.__path__[0]).parent.parent
    env = dict(os.environ, PROTO_INCLUDE=str(googleapis))
    env.pop("MKT_API_KEY", None)
    if key:
        env["MKT_API_KEY"] = key
    proc = subprocess.run(
        ["node", str(NODE_DIR / "client.js"), address, service, method, json.dumps(request)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_node_client_creates_and_reads_a_profile(node_ready, tmp_path, redis_url):
    settings = service_settings("profile", tmp_path, redis_url=redis_url)
    migrate("profile", settings.database_url)
    with running_server(settings, build(settings)) as (_, address):
        service = "marketing.profile.v1.ProfileService"
        code, created, err = node_call(address, "operator-key", service, "CreateProfile",
                                       {"profile": {"external_id": "node-user-1",
                                                    "time_zone": "Europe/Paris"}})
        assert code == 0, err
        assert created["profile"]["name"] == "profiles/node-user-1"
        assert int(created["profile"]["user_id"]) > 0

        code, fetched, err = node_call(address, "operator-key", service, "GetProfile",
                                       {"name": "profiles/node-user-1"})
        assert code == 0, err
        assert fetched["profile"]["time_zone"] == "Europe/Paris"
        assert fetched["profile"]["user_id"] == created["profile"]["user_id"]

        # Errors reach the other language as proper statuses: 16 UNAUTHENTICATED, 5 NOT_FOUND.
        code, failed, _ = node_call(address, None, service, "GetProfile",
                                    {"name": "profiles/node-user-1"})
        assert code == 1 and failed["error"]["code"] == 16
        code, failed, _ = node_call(address, "operator-key", service, "GetProfile",
                                    {"name": "profiles/nobody"})
        assert code == 1 and failed["error"]["code"] == 5
