"""Renders the kustomize overlays once per test session and indexes the objects they produce."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def kustomize_command() -> list[str] | None:
    """``kubectl kustomize`` (what CI has), or a standalone ``kustomize build``."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def render(directory: pathlib.Path) -> list[dict]:
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kubectl nor kustomize is installed: the overlays cannot be rendered")
    done = subprocess.run([*command, str(directory)], check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"kustomize failed for {directory}:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


class Rendered:
    """The objects of one rendered overlay, with look-ups by kind and name."""

    def __init__(self, name: str, objects: list[dict]):
        self.name = name
        self.objects = objects

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert found, f"{self.name}: no {kind} named {name}"
        return found[0]

    def find(self, kind: str, name: str) -> dict | None:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def workloads(self) -> list[dict]:
        return [o for o in self.objects if o["kind"] in WORKLOAD_KINDS]

    def service_deployments(self) -> dict[str, dict]:
        """The suite's four services, by service name."""
        return {
            o["metadata"]["labels"]["app.kubernetes.io/name"]: o
            for o in self.of_kind("Deployment")
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == "service"
        }

    def config_map(self, prefix: str) -> dict:
        """A generated ConfigMap by its name before kustomize appended the content hash."""
        found = [o for o in self.of_kind("ConfigMap")
                 if o["metadata"]["name"] == prefix
                 or o["metadata"]["name"].rsplit("-", 1)[0] == prefix]
        assert len(found) == 1, f"{self.name}: expected one ConfigMap {prefix}, got {len(found)}"
        return found[0]

    def effective_env(self, container: dict) -> dict[str, object]:
        """Name -> literal value, or ("secret", name, key) for a Secret reference."""
        env: dict[str, object] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                cm = self.get("ConfigMap", source["configMapRef"]["name"])
                env.update(cm.get("data") or {})
            if "secretRef" in source:
                env[f"<all of secret {source['secretRef']['name']}>"] = None
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "valueFrom" in item and "secretKeyRef" in item["valueFrom"]:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = ("secret", ref["name"], ref["key"])
            elif "valueFrom" in item and "configMapKeyRef" in item["valueFrom"]:
                ref = item["valueFrom"]["configMapKeyRef"]
                env[item["name"]] = self.get("ConfigMap", ref["name"])["data"][ref["key"]]
            else:
                env[item["name"]] = None
        return env


def pod_spec(workload: dict) -> dict:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def all_containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


class Overlays(dict):
    """Renders an overlay on first use, so one broken overlay does not hide the other's results."""

    def __missing__(self, name: str) -> Rendered:
        self[name] = Rendered(name, render(DEPLOY / "overlays" / name))
        return self[name]


@pytest.fixture(scope="session")
def overlays() -> Overlays:
    return Overlays()


@pytest.fixture(scope="session")
def with_servicemonitor(tmp_path_factory) -> Rendered:
    """prod plus the optional ServiceMonitor component, as a platform team would combine them."""
    directory = tmp_path_factory.mktemp("servicemonitor")
    # kustomize refuses absolute paths to other kustomizations, so point at them relatively.
    prod = os.path.relpath(DEPLOY / "overlays" / "prod", directory)
    component = os.path.relpath(DEPLOY / "components" / "servicemonitor", directory)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {prod}\ncomponents:\n  - {component}\n"
    )
    return Rendered("prod+servicemonitor", render(directory))
