"""A small NetworkPolicy evaluator: may one pod reach another pod's port under given policies."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies see it: namespace, labels, and its named container ports."""

    namespace: str
    labels: dict
    ports: dict  # port name -> (number, protocol)
    namespace_labels: dict = dataclasses.field(default_factory=dict)

    def ns_labels(self) -> dict:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def matches(selector: dict | None, labels: dict) -> bool:
    """Label-selector semantics: an empty selector selects everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: dict, policy_ns: str, other: Pod | None, ip: str | None) -> bool:
    if "ipBlock" in peer:
        if ip is None:
            return False
        import ipaddress

        address = ipaddress.ip_address(ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if other is None:
        return False
    if "namespaceSelector" in peer:
        if not matches(peer["namespaceSelector"], other.ns_labels()):
            return False
    elif other.namespace != policy_ns:
        return False
    return matches(peer.get("podSelector"), other.labels)


def _port_matches(rule_ports: list | None, target: Pod | None, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for item in rule_ports:
        if item.get("protocol", "TCP") != protocol:
            continue
        wanted = item.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if target is None or wanted not in target.ports:
                continue
            wanted = target.ports[wanted][0]
        if wanted == port or (item.get("endPort") and wanted <= port <= item["endPort"]):
            return True
    return False


def _policies_for(policies: list[dict], pod: Pod, direction: str) -> list[dict]:
    return [
        p for p in policies
        if p["metadata"].get("namespace") == pod.namespace
        and matches(p["spec"].get("podSelector"), pod.labels)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]


def allowed(policies: list[dict], source: Pod, port: int | str, *, target: Pod | None = None,
            ip: str | None = None, protocol: str = "TCP") -> bool:
    """Whether ``source`` may open a connection to ``target`` (a pod) or ``ip`` (outside)."""
    if isinstance(port, str):
        assert target is not None and port in target.ports, f"unknown port {port}"
        port = target.ports[port][0]
    egress = _policies_for(policies, source, "Egress")
    if egress and not any(
        _port_matches(rule.get("ports"), target, port, protocol)
        and (not rule.get("to") or any(_peer_matches(peer, source.namespace, target, ip)
                                       for peer in rule["to"]))
        for p in egress for rule in p["spec"].get("egress") or []
    ):
        return False
    if target is None:
        return True
    ingress = _policies_for(policies, target, "Ingress")
    return not ingress or any(
        _port_matches(rule.get("ports"), target, port, protocol)
        and (not rule.get("from") or any(_peer_matches(peer, target.namespace, source, None)
                                         for peer in rule["from"]))
        for p in ingress for rule in p["spec"].get("ingress") or []
    )


def pod_of(workload: dict, pod_spec: dict) -> Pod:
    ports = {}
    for container in pod_spec.get("containers", []):
        for port in container.get("ports", []):
            if "name" in port:
                ports[port["name"]] = (port["containerPort"], port.get("protocol", "TCP"))
    template = workload["spec"]["template"]
    return Pod(workload["metadata"]["namespace"], dict(template["metadata"]["labels"]), ports)
