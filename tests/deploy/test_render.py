"""Each overlay renders with kustomize and every object validates against the Kubernetes schemas."""

from __future__ import annotations

import socket

import pytest
from kubernetes_validate import utils as kv

from tests.deploy.conftest import DEPLOY, OVERLAYS, render

# The oldest release the manifests support (native preStop sleep arrived in 1.30) and the
# newest the installed schemas know; both must accept every object.
MIN_KUBERNETES = "1.30.0"
# Custom resources have no schema in kubernetes-validate; they are checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor"}

EXPECTED_KINDS = {
    "Namespace", "ConfigMap", "ServiceAccount", "Service", "Deployment", "Job",
    "PodDisruptionBudget", "NetworkPolicy",
}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: validation must work offline."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("schema validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_suite(overlays, overlay):
    rendered = overlays[overlay]
    kinds = {o["kind"] for o in rendered.objects}
    assert EXPECTED_KINDS <= kinds, f"missing kinds: {EXPECTED_KINDS - kinds}"
    assert set(rendered.service_deployments()) == {"profile", "segment", "scoring", "delivery"}
    namespaces = {o["metadata"].get("namespace") for o in rendered.objects
                  if o["kind"] != "Namespace"}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    keys = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
    assert len(keys) == len(set(keys)), "two objects share a kind and name"


def test_base_renders_without_environment_specifics():
    objects = render(DEPLOY / "base")
    assert not [o for o in objects if o["kind"] in {"Namespace", "Secret"}]
    assert all("namespace" not in o["metadata"] for o in objects)


@pytest.mark.parametrize("version", [MIN_KUBERNETES, kv.latest_version()])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlays, overlay, version,
                                                              no_network):
    for obj in overlays[overlay].objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {name} is invalid for Kubernetes {version} at {path}: "
                        f"{exc.message}")
        except kv.SchemaNotFoundError:
            pytest.fail(f"{overlay}: {name} ({obj['apiVersion']}) is not a Kubernetes "
                        f"{version} API")


def test_strict_validation_rejects_a_misspelt_field(no_network):
    # Guards the check above: an unknown field must fail, not pass silently.
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "x", "image": "x",
                                                       "readinesProbe": {}}]}}},
    }
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, kv.latest_version(), strict=True)


def test_servicemonitor_component_targets_the_metrics_ports(with_servicemonitor, no_network):
    rendered = with_servicemonitor
    monitors = rendered.of_kind("ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"profile", "segment", "scoring",
                                                         "delivery"}
    for obj in rendered.objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kv.validate(obj, kv.latest_version(), strict=True)
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in rendered.of_kind("Service")
                    if selector.items() <= s["metadata"]["labels"].items()]
        assert [s["metadata"]["name"] for s in services] == [monitor["metadata"]["name"]]
        port_names = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
