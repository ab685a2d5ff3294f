"""deploy/README.md's commands match the manifests: Secrets, paths, migration steps, image name."""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import DEPLOY, ROOT, all_containers, pod_spec

README = (DEPLOY / "README.md").read_text()


def _commands() -> list[str]:
    """Shell commands of the README's code blocks, continuation lines joined."""
    blocks = re.findall(r"```\n(.*?)```", README, re.DOTALL)
    return [c.strip() for block in blocks for c in block.replace("\\\n", " ").splitlines()
            if c.strip()]


def _secret_references(rendered) -> set[tuple[str, str]]:
    refs = set()
    for workload in rendered.workloads():
        for container in all_containers(workload):
            for value in rendered.effective_env(container).values():
                if isinstance(value, tuple):
                    refs.add(value[1:])
    return refs


def test_documented_secrets_are_exactly_those_prod_references(overlays):
    documented = set()
    for command in _commands():
        match = re.search(r"create secret generic ([\w.-]+)", command)
        if match:
            for key in re.findall(r"--from-literal=([\w.-]+)=", command):
                documented.add((match.group(1), key))
    referenced = _secret_references(overlays["prod"])
    assert documented == referenced, (
        f"undocumented: {referenced - documented}; documented but unused: "
        f"{documented - referenced}")
    assert not overlays["prod"].of_kind("Secret"), "prod must not ship credentials"


def test_every_secret_in_the_table_is_referenced(overlays):
    rows = re.findall(r"^\| (marketing-[\w-]+) \| ([^|]+) \|", README, re.MULTILINE)
    referenced = _secret_references(overlays["prod"])
    table = {(name, key.strip()) for name, keys in rows for key in keys.split(",")}
    assert table == referenced


def test_paths_in_commands_exist():
    for command in _commands():
        for path in re.findall(r"(?:apply -[kf]|cd) (deploy/[\w./-]+)", command):
            assert (ROOT / path).exists(), f"{command}: {path} does not exist"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_namespaces_in_commands_match_the_overlay(overlays, overlay):
    namespace = overlays[overlay].service_deployments()["profile"]["metadata"]["namespace"]
    used = {m for c in _commands() if f"overlays/{overlay}" in c or f"-n {namespace} " in c
            for m in re.findall(r"-n ([\w-]+)", c)}
    assert namespace in used
    assert used <= {"marketing", "marketing-dev"}


def test_migration_steps_select_the_job_alone(overlays):
    rendered = overlays["prod"]
    (job,) = rendered.of_kind("Job")
    commands = _commands()
    name = job["metadata"]["name"]
    assert any(f"delete job {name} " in c for c in commands)
    assert any(f"--for=condition=complete job/{name} " in c for c in commands)
    selector = next(re.search(r"-l ([\w./-]+)=([\w.-]+)", c).groups()
                    for c in commands if "apply -k deploy/overlays/prod -l" in c)
    selected = [o for o in rendered.objects
                if o["metadata"].get("labels", {}).get(selector[0]) == selector[1]]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in selected}
    assert ("Job", name) in kinds
    assert ("ServiceAccount", pod_spec(job)["serviceAccountName"]) in kinds
    assert {k for k, _ in kinds} == {"Job", "ServiceAccount", "NetworkPolicy"}
    # The Job's only needs beyond its own objects are the Secrets created in step 2.
    assert all(isinstance(v, (str, tuple)) for v in
               rendered.effective_env(pod_spec(job)["containers"][0]).values())
    assert pod_spec(job)["containers"][0]["args"][0] == "services.migrate"


def test_image_name_and_entrypoints_match(overlays):
    match = re.search(r"kustomize edit set image ([\w.-]+)=", README)
    assert match and match.group(1) == "marketing-suite"
    assert "marketing-suite" in (DEPLOY / "base" / "profile" / "deployment.yaml").read_text()
    for svc in ("profile", "segment", "scoring", "delivery", "migrate"):
        assert f"services.{svc}" in README


def test_documented_timings_match_the_manifests(overlays):
    deployment = overlays["prod"].service_deployments()["profile"]
    spec = pod_spec(deployment)
    env = overlays["prod"].effective_env(spec["containers"][0])
    assert f"terminationGracePeriodSeconds: {spec['terminationGracePeriodSeconds']}" in README
    assert f"`SHUTDOWN_GRACE_SECONDS` ({env['SHUTDOWN_GRACE_SECONDS']} s)" in README
    pause = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert f"first sleeps {pause} s" in README
    startup = pod_spec(overlays["prod"].service_deployments()["scoring"])["containers"][0]
    probe = startup["startupProbe"]
    minutes = probe["periodSeconds"] * probe["failureThreshold"] / 60
    assert f"allows {minutes:g} minutes" in README
