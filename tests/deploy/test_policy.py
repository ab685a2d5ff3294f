"""Hardening, availability and network-isolation rules every rendered workload must follow."""

from __future__ import annotations

import pytest

from services.common.config import env_float
from tests.deploy.conftest import OVERLAYS, all_containers, pod_spec
from tests.deploy.netpol import Pod, allowed, pod_of

SERVICES = ("profile", "segment", "scoring", "delivery")
# Who calls whom over gRPC inside the suite; every other pair must be refused.
CALLS = {
    "profile": set(),
    "segment": {"profile"},
    "scoring": {"profile"},
    "delivery": {"profile", "segment", "scoring"},
}


def workload_id(workload: dict) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_hardened(overlays, overlay):
    rendered = overlays[overlay]
    assert rendered.workloads()
    for workload in rendered.workloads():
        where = f"{overlay} {workload_id(workload)}"
        spec = pod_spec(workload)
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert pod_sc.get("runAsUser", 0) != 0, where
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), f"{where}: {flag}"
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], where
        assert spec.get("automountServiceAccountToken") is False, where
        account = spec.get("serviceAccountName")
        assert account and account != "default", where
        assert rendered.get("ServiceAccount", account).get("automountServiceAccountToken") is False
        for container in all_containers(workload):
            cwhere = f"{where} container {container['name']}"
            sc = container.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, cwhere
            assert sc.get("allowPrivilegeEscalation") is False, cwhere
            assert not sc.get("privileged"), cwhere
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, cwhere
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), cwhere
            assert not sc.get("capabilities", {}).get("add"), cwhere
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", cwhere
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(kind, {}), f"{cwhere}: no {kind}.{resource}"
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest" and "/" not in tag, f"{cwhere}: image {image}"
            # Writable paths must be volumes, since the root filesystem is read-only.
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            templates = workload["spec"].get("volumeClaimTemplates", [])
            claims = {c["metadata"]["name"] for c in templates}
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in claims, cwhere


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_probe_the_standard_health_service_and_drain(overlays, overlay):
    rendered = overlays[overlay]
    budgets = {}
    for svc, deployment in rendered.service_deployments().items():
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        grpc_port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "grpc" in container.get(probe, {}), f"{svc}: {probe} is not a native gRPC probe"
            assert container[probe]["grpc"]["port"] == grpc_port, f"{svc}: {probe} port"
        startup = container["startupProbe"]
        budgets[svc] = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
        # Termination: preStop pause, then the server's drain, all inside the grace period.
        env = rendered.effective_env(container)
        drain = float(env.get("SHUTDOWN_GRACE_SECONDS") or 20)
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] > pause + drain, svc
        assert spec.get("enableServiceLinks") is False, svc
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] in (0, "0%"), svc
    # Scoring loads its models before it serves: its start-up allowance is the longest.
    assert budgets["scoring"] >= 180
    assert budgets["scoring"] == max(budgets.values())


def test_drain_default_matches_the_server(monkeypatch):
    # The manifests rely on the server's default drain when the ConfigMap omits it.
    monkeypatch.delenv("SHUTDOWN_GRACE_SECONDS", raising=False)
    assert env_float("SHUTDOWN_GRACE_SECONDS", 20.0) == 20.0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_autoscaling(overlays, overlay):
    rendered = overlays[overlay]
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h
            for h in rendered.of_kind("HorizontalPodAutoscaler")}
    for svc, deployment in rendered.service_deployments().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        pdbs = [p for p in rendered.of_kind("PodDisruptionBudget")
                if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(pdbs) == 1, f"{overlay} {svc}: {len(pdbs)} PodDisruptionBudgets"
        # maxUnavailable (not minAvailable) so a single replica can still be evicted.
        assert pdbs[0]["spec"].get("maxUnavailable") == 1
        if overlay == "dev":
            assert deployment["spec"]["replicas"] == 1
            assert svc not in hpas
        else:
            assert "replicas" not in deployment["spec"], f"{svc}: replicas fights the autoscaler"
            hpa = hpas[svc]
            assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            assert hpa["spec"]["minReplicas"] >= 3
            assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


def _quantity(value) -> float:
    value = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def test_prod_resources_are_stricter_than_dev(overlays):
    dev = overlays["dev"].service_deployments()
    for svc, deployment in overlays["prod"].service_deployments().items():
        prod_res = pod_spec(deployment)["containers"][0]["resources"]
        dev_res = pod_spec(dev[svc])["containers"][0]["resources"]
        assert prod_res["requests"]["memory"] == prod_res["limits"]["memory"], svc
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert _quantity(prod_res[kind][resource]) >= _quantity(dev_res[kind][resource])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_anonymous_access_is_never_enabled(overlays, overlay):
    rendered = overlays[overlay]
    for workload in rendered.workloads():
        for container in all_containers(workload):
            value = rendered.effective_env(container).get("MKT_ALLOW_ANONYMOUS")
            assert value in (None, "0", "false"), workload_id(workload)


def test_prod_pulls_a_released_image(overlays):
    for workload in overlays["prod"].workloads():
        for container in all_containers(workload):
            assert "/" in container["image"], "prod images come from a registry"
            assert not container["image"].endswith((":dev", ":latest"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_are_marked_http2(overlays, overlay):
    rendered = overlays[overlay]
    for svc, deployment in rendered.service_deployments().items():
        service = rendered.get("Service", svc)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
        container_ports = {p["name"] for p in pod_spec(deployment)["containers"][0]["ports"]}
        for port in ports.values():
            assert port["targetPort"] in container_ports


# --- network isolation -------------------------------------------------------------------

def _pods(rendered) -> dict[str, Pod]:
    pods = {}
    for workload in rendered.workloads():
        if workload["kind"] in ("Deployment", "StatefulSet", "Job"):
            pods[workload["metadata"]["labels"]["app.kubernetes.io/name"]] = pod_of(
                workload, pod_spec(workload))
    namespace = pods["profile"].namespace
    pods["client"] = Pod("backend", {"marketing.io/client": "true"}, {})
    pods["intruder"] = Pod(namespace, {"app": "something-else"}, {})
    pods["unlabelled-backend"] = Pod("backend", {"app": "backend"}, {})
    pods["prometheus"] = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, {})
    pods["dns"] = Pod("kube-system", {"k8s-app": "kube-dns"}, {"dns": (53, "UDP")})
    return pods


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_is_reachable_only_by_its_callers(overlays, overlay):
    rendered = overlays[overlay]
    policies = rendered.of_kind("NetworkPolicy")
    pods = _pods(rendered)
    for source, targets in CALLS.items():
        for target in SERVICES:
            got = allowed(policies, pods[source], "grpc", target=pods[target])
            assert got == (target in targets), f"{overlay}: {source} -> {target} grpc: {got}"
    for target in SERVICES:
        assert allowed(policies, pods["client"], "grpc", target=pods[target])
        assert not allowed(policies, pods["client"], "metrics", target=pods[target])
        assert not allowed(policies, pods["unlabelled-backend"], "grpc", target=pods[target])
        assert not allowed(policies, pods["intruder"], "grpc", target=pods[target])
        assert not allowed(policies, pods["migrate"], "grpc", target=pods[target])
        assert allowed(policies, pods["prometheus"], "metrics", target=pods[target])
        assert not allowed(policies, pods["prometheus"], "grpc", target=pods[target])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_limited_to_dns_datastores_and_gateways(overlays, overlay):
    rendered = overlays[overlay]
    policies = rendered.of_kind("NetworkPolicy")
    pods = _pods(rendered)
    for name in (*SERVICES, "migrate"):
        assert allowed(policies, pods[name], 53, target=pods["dns"], protocol="UDP"), name
        assert allowed(policies, pods[name], 5432, ip="10.20.0.5"), f"{name} -> PostgreSQL"
        assert not allowed(policies, pods[name], 8080, ip="10.20.0.5"), name
    for name in SERVICES:
        assert allowed(policies, pods[name], 6379, ip="10.20.0.6"), f"{name} -> Redis"
    assert not allowed(policies, pods["migrate"], 6379, ip="10.20.0.6")
    # Only delivery talks to the outside world, and never to private or metadata addresses.
    for port in (443, 587):
        assert allowed(policies, pods["delivery"], port, ip="203.0.113.10")
        for other in ("profile", "segment", "scoring", "migrate"):
            assert not allowed(policies, pods[other], port, ip="203.0.113.10"), other
    assert not allowed(policies, pods["delivery"], 443, ip="10.1.2.3")
    assert not allowed(policies, pods["delivery"], 80, ip="169.254.169.254")
    assert not allowed(policies, pods["delivery"], 443, ip="169.254.169.254")


def test_dev_datastores_accept_only_the_suite(overlays):
    rendered = overlays["dev"]
    policies = rendered.of_kind("NetworkPolicy")
    pods = _pods(rendered)
    for name in (*SERVICES, "migrate"):
        assert allowed(policies, pods[name], "postgresql", target=pods["postgresql"]), name
    for name in SERVICES:
        assert allowed(policies, pods[name], "redis", target=pods["redis"]), name
    for name in ("client", "intruder", "prometheus"):
        assert not allowed(policies, pods[name], "postgresql", target=pods["postgresql"]), name
        assert not allowed(policies, pods[name], "redis", target=pods["redis"]), name
    assert not allowed(policies, pods["migrate"], "redis", target=pods["redis"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_covered_by_a_default_deny(overlays, overlay):
    rendered = overlays[overlay]
    policies = rendered.of_kind("NetworkPolicy")
    for name, pod in _pods(rendered).items():
        if pod.namespace != rendered.service_deployments()["profile"]["metadata"]["namespace"]:
            continue
        if name == "intruder":
            continue
        stranger = Pod("elsewhere", {}, {})
        for port_name in pod.ports:
            assert not allowed(policies, stranger, port_name, target=pod), f"{name}:{port_name}"
        assert not allowed(policies, pod, 8443, ip="198.51.100.7"), f"{name} egress"
