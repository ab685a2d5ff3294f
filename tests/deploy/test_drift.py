"""The manifests agree with the services' own configuration: ports, variables, health names."""

from __future__ import annotations

import base64
import re

import pytest

from services.common.config import (
    ENV_VARS,
    SERVICE_DEFAULTS,
    SERVICE_NAMES,
    Settings,
    parse_api_keys,
)
from tests.deploy import dockerfile
from tests.deploy.conftest import OVERLAYS, ROOT, all_containers, pod_spec

SERVICES = tuple(SERVICE_DEFAULTS)
# Variables every service needs in a cluster, and those particular to some services.
REQUIRED = {"DATABASE_URL", "REDIS_URL", "MKT_API_KEYS", "DATA_DIR", "GRPC_PORT", "METRICS_PORT",
            "SHUTDOWN_GRACE_SECONDS"}
REQUIRED_BY = {
    "profile": set(),
    "segment": {"PROFILE_READ_DATABASE_URL", "PROFILE_ADDR", "MKT_API_KEY"},
    "scoring": {"PROFILE_READ_DATABASE_URL", "PROFILE_ADDR", "MKT_API_KEY"},
    "delivery": {"PROFILE_ADDR", "SEGMENT_ADDR", "SCORING_ADDR", "MKT_API_KEY",
                 "DELIVERY_WEBHOOK_SECRET", "DELIVERY_GATEWAYS"},
}
# Credentials must never sit in a ConfigMap or a literal value.
SECRET_VARS = {"DATABASE_URL", "PROFILE_READ_DATABASE_URL", "REDIS_URL", "MKT_API_KEYS",
               "MKT_API_KEY", "DELIVERY_WEBHOOK_SECRET", "DELIVERY_GATEWAYS"}


def _container(rendered, svc):
    (container,) = pod_spec(rendered.service_deployments()[svc])["containers"]
    return container


def _ports(container) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def _secret_value(rendered, ref) -> str | None:
    _, name, key = ref
    secret = rendered.find("Secret", name)
    if secret is None:
        return None
    if key in secret.get("stringData", {}):
        return secret["stringData"][key]
    return base64.b64decode(secret["data"][key]).decode()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_run_every_service_and_only_those(overlays, overlay):
    assert set(overlays[overlay].service_deployments()) == set(SERVICE_DEFAULTS)
    assert set(SERVICE_NAMES) == set(SERVICE_DEFAULTS)


@pytest.mark.parametrize("svc", SERVICES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_read_from_the_manifest_match_ports_and_volumes(overlays, overlay, svc,
                                                                 monkeypatch):
    rendered = overlays[overlay]
    deployment = rendered.service_deployments()[svc]
    container = _container(rendered, svc)
    env = rendered.effective_env(container)
    for name in list(ENV_VARS) + [n for n in env if n.startswith(f"{svc.upper()}_")]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if isinstance(value, tuple):  # a Secret: its dev value, or a well-formed stand-in
            value = _secret_value(rendered, value) or {
                "MKT_API_KEYS": "k:service:svc", "MKT_API_KEY": "k",
            }.get(name, "postgresql+psycopg://u@db:5432/marketing" if "DATABASE" in name
                  else "redis://cache:6379/0" if "REDIS" in name else "x")
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(svc)
    ports = _ports(container)
    assert settings.port == ports["grpc"]
    assert settings.metrics_port == ports["metrics"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == settings.metrics_port
    assert settings.host == "0.0.0.0"
    # DATA_DIR must be a writable volume, since the root filesystem is read-only.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert str(settings.data_dir) in mounts and not mounts[str(settings.data_dir)].get("readOnly")
    assert "/tmp" in mounts
    assert settings.api_keys, "the service would accept no credential"
    assert not settings.allow_anonymous
    assert not settings.database_url.startswith("sqlite"), "containers must not use SQLite files"
    assert settings.redis_url, "containers must not start an embedded Redis"
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert settings.shutdown_grace_s + pause < grace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_credential_sits_in_a_config_map(overlays, overlay):
    for config_map in overlays[overlay].of_kind("ConfigMap"):
        leaked = SECRET_VARS & set(config_map.get("data") or {})
        assert not leaked, f"{config_map['metadata']['name']} holds {leaked}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_gets_the_variables_it_needs_and_credentials_from_secrets(overlays,
                                                                             overlay):
    rendered = overlays[overlay]
    for svc in SERVICES:
        env = rendered.effective_env(_container(rendered, svc))
        missing = (REQUIRED | REQUIRED_BY[svc]) - set(env)
        assert not missing, f"{overlay} {svc}: missing {missing}"
        for name in SECRET_VARS & set(env):
            assert isinstance(env[name], tuple), f"{overlay} {svc}: {name} is not from a Secret"


def test_dev_secrets_exist_for_every_reference(overlays):
    rendered = overlays["dev"]
    for workload in rendered.workloads():
        for container in all_containers(workload):
            for name, value in rendered.effective_env(container).items():
                if isinstance(value, tuple):
                    assert _secret_value(rendered, value) is not None, (
                        f"{workload['metadata']['name']}: {name} -> missing {value[1:]}")


def test_dev_credentials_let_each_service_call_the_others(overlays):
    rendered = overlays["dev"]
    env = rendered.effective_env(_container(rendered, "profile"))
    keys = parse_api_keys(_secret_value(rendered, env["MKT_API_KEYS"]))
    for svc in SERVICES:
        ref = rendered.effective_env(_container(rendered, svc)).get("MKT_API_KEY")
        if ref is None:
            continue
        outbound = _secret_value(rendered, ref)
        assert outbound in keys and "service" in keys[outbound].roles, svc
        assert keys[outbound].subject == svc, "audit logs name the calling service"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_addresses_point_at_the_grpc_services(overlays, overlay):
    rendered = overlays[overlay]
    env = rendered.effective_env(_container(rendered, "delivery"))
    for svc in SERVICES:
        address = env[f"{svc.upper()}_ADDR"]
        match = re.fullmatch(r"dns:///([a-z0-9-]+):(\d+)", address)
        assert match, f"{svc.upper()}_ADDR={address!r} is not dns:///<service>:<port>"
        service = rendered.get("Service", match.group(1))
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["grpc"]["port"] == int(match.group(2))
        assert service["spec"]["selector"]["app.kubernetes.io/name"] == svc


def _proto_service(svc: str) -> str | None:
    path = ROOT / "protos" / "marketing" / svc / "v1" / f"{svc}_service.proto"
    if not path.exists():
        return None
    text = path.read_text()
    package = re.search(r"^package\s+([\w.]+)\s*;", text, re.MULTILINE).group(1)
    services = re.findall(r"^service\s+(\w+)\s*\{", text, re.MULTILINE)
    assert len(services) == 1, f"{path.name} declares {services}"
    return f"{package}.{services[0]}"


@pytest.mark.parametrize("svc", SERVICES)
def test_health_probes_name_the_service_the_proto_declares(overlays, svc):
    for overlay in OVERLAYS:
        container = _container(overlays[overlay], svc)
        assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAMES[svc]
        assert container["startupProbe"]["grpc"]["service"] == SERVICE_NAMES[svc]
        # Liveness asks about the whole server (the empty name), which every server registers.
        assert container["livenessProbe"]["grpc"].get("service", "") == ""
    declared = _proto_service(svc)
    if declared is None:
        pytest.skip(f"protos for {svc} are not written yet; the probe names match "
                    "services.common.config.SERVICE_NAMES")
    assert declared == SERVICE_NAMES[svc]


def test_shared_variables_are_documented(overlays):
    for overlay in OVERLAYS:
        rendered = overlays[overlay]
        for svc in SERVICES:
            for name in rendered.effective_env(_container(rendered, svc)):
                if name in ENV_VARS:
                    continue
                # Anything else is a service's own setting, given only to that service.
                assert name.startswith(f"{svc.upper()}_"), (
                    f"{overlay} {svc}: {name} is neither a shared variable nor a {svc} setting")


@pytest.mark.parametrize("svc", SERVICES)
def test_service_settings_are_read_by_the_service(overlays, svc):
    names = set()
    for overlay in OVERLAYS:
        rendered = overlays[overlay]
        names |= {n for n in rendered.effective_env(_container(rendered, svc))
                  if n.startswith(f"{svc.upper()}_") and not n.endswith("_ADDR")}
    if not names:
        pytest.skip(f"the manifests set no {svc.upper()}_* variable")
    package = ROOT / "services" / svc
    if not (package / "__main__.py").exists():
        pytest.skip(f"services.{svc} is not written yet, so {sorted(names)} cannot be checked "
                    "against its code; this becomes a hard check once it exists")
    source = "\n".join(p.read_text() for p in package.rglob("*.py"))
    unread = sorted(n for n in names if not re.search(rf"\b{n}\b", source))
    assert not unread, f"services.{svc} never reads {unread}"


def test_image_defaults_agree_with_the_manifests(overlays):
    _, stages = dockerfile.parse((ROOT / "Dockerfile").read_text())
    image_env = {}
    for instruction in stages[-1].all("ENV"):
        image_env.update(dockerfile.env_values(instruction))
    expose = {int(p) for i in stages[-1].all("EXPOSE") for p in i.arguments.split()}
    for overlay in OVERLAYS:
        rendered = overlays[overlay]
        for svc in SERVICES:
            container = _container(rendered, svc)
            env = rendered.effective_env(container)
            ports = _ports(container)
            assert int(image_env["GRPC_PORT"]) == ports["grpc"] == int(env["GRPC_PORT"])
            assert int(image_env["METRICS_PORT"]) == ports["metrics"] == int(env["METRICS_PORT"])
            assert image_env["DATA_DIR"] == env["DATA_DIR"]
            assert {ports["grpc"], ports["metrics"]} == expose
