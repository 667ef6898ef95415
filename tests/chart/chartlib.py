"""Helpers for the chart tests: render the chart with real Helm (the Go
SDK bundled in helm-python-sdk), parse the manifests, and look objects up.

Every render goes through `Chart.render`, which validates the values against
values.schema.json first, exactly as `helm install` and `helm template` do.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHART_DIR = REPO / "helm" / "zambda-guard"
RELEASE = "demo"
NAMESPACE = "apps"

PROXY_CONTAINER = "zambda-guard"
POLICIES_DIR = "/etc/zambda-guard/policies"
CONFIG_DIR = "/etc/zambda-guard/config"
TLS_DIR = "/etc/zambda-guard/tls"
UPSTREAM_CA_DIR = "/etc/zambda-guard/upstream-ca"
CHECKSUM_ANNOTATION = "checksum/zambda-guard-config"


@dataclass
class Rendered:
    """The objects one render produced, with the template each came from."""

    docs: list[dict[str, Any]]
    sources: list[str]
    notes: str = ""
    raw: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, (
            f"expected exactly one {kind}{' ' + name if name else ''}, found "
            f"{[d['metadata']['name'] for d in found]}"
        )
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    # --- shortcuts into the workload ------------------------------------

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def pod_spec(self) -> dict[str, Any]:
        return self.deployment()["spec"]["template"]["spec"]

    def container(self, name: str = PROXY_CONTAINER) -> dict[str, Any]:
        return container_named(self.pod_spec(), name)

    def config_map(self, suffix: str) -> dict[str, Any]:
        found = [c for c in self.of_kind("ConfigMap") if c["metadata"]["name"].endswith(suffix)]
        assert len(found) == 1, f"expected one ConfigMap named *{suffix}, found {len(found)}"
        return found[0]

    def config_yaml_text(self) -> str:
        return self.config_map("-config")["data"]["config.yaml"]

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_yaml_text())

    def checksum(self) -> str:
        return self.deployment()["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]

    def text(self) -> str:
        """Every template's output in one text, as `helm template` prints it
        (empty outputs included), NOTES.txt too: for byte-for-byte comparisons."""
        return render_text(self.raw)


def render_text(raw: dict[str, str]) -> str:
    return "".join(f"# Source: {source}\n{text}\n" for source, text in sorted(raw.items()))


def mounted_volumes(pod_spec: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[dict, dict]]:
    """mountPath -> (volumeMount, volume) for one container of a pod."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container.get("volumeMounts", [])}


def container_named(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod_spec["containers"] if c["name"] == name]
    assert len(found) == 1, f"expected one container {name!r}, found {[c['name'] for c in pod_spec['containers']]}"
    return found[0]


def port_number(container: dict[str, Any], port: int | str) -> int:
    """Resolve a port reference (number or container port name) to a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(named) == 1, f"container {container['name']} has no port named {port!r}"
    return named[0]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge `override` into a copy of `base` the way Helm coalesces values."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_manifests(rendered: dict[str, str]) -> Rendered:
    docs: list[dict[str, Any]] = []
    sources: list[str] = []
    notes = ""
    for source, text in sorted(rendered.items()):
        if source.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{source} rendered a non-object document"
                docs.append(doc)
                sources.append(source)
    return Rendered(docs=docs, sources=sources, notes=notes, raw=rendered)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- the values sets every "renders and validates" test runs over ---------

HMAC_ISSUER = {
    "issuer": "https://internal.example.com/",
    "audiences": ["zambda-guard"],
    "algorithms": ["HS256"],
    "hmac_secret_env": "ZG_HMAC_INTERNAL",
}

VALUE_SETS: dict[str, dict[str, Any] | None] = {
    "default": None,
    "sidecar": {
        "mode": "sidecar",
        "replicaCount": 3,
        "image": {"repository": "registry.example.com/zambda-guard", "tag": "0.1.0"},
        "function": {
            "name": "labs",
            "image": {"repository": "registry.example.com/labs-fn", "tag": "2.4.1"},
            "command": ["node"],
            "args": ["dist/server.js"],
            "port": 8081,
            "env": [{"name": "HOST", "value": "127.0.0.1"}, {"name": "PORT", "value": "8081"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "livenessProbe": {"exec": {"command": ["/bin/true"]}},
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
        },
        "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
        "config": {
            "project_id": "4a5b8c2e-0000-4000-8000-000000000000",
            "auth": {"issuers": [
                {
                    "issuer": "https://auth.zapehr.com/",
                    "audiences": ["https://api.zapehr.com"],
                    "algorithms": ["RS256"],
                    "jwks_url": "https://auth.zapehr.com/.well-known/jwks.json",
                },
                HMAC_ISSUER,
            ]},
        },
        "hmacSecrets": [{"env": "ZG_HMAC_INTERNAL", "secretName": "internal-issuer", "key": "secret"}],
        "env": [{"name": "RUST_LOG", "value": "info"}],
        "networkPolicy": {"proxyFrom": [{"namespaceSelector": {"matchLabels": {"team": "labs"}}}]},
    },
    "standalone": {
        "mode": "standalone",
        "config": {"upstream": {"address": "10.20.30.40:8080", "read_timeout_ms": 60000}},
        "service": {"type": "ClusterIP", "port": 8080},
    },
    "existing-configmap": {
        "policies": {"existingConfigMap": "team-policies"},
    },
    "observability": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "zambda-guard"}},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
    },
    "embedded": {"mode": "embedded", "prometheusRule": {"enabled": True}},
    # HTTPS in and out, as at the edge: the serving certificate from a Secret,
    # the backend verified against a CA bundle from a ConfigMap.
    "edge-tls": {
        "mode": "standalone",
        "tls": {"enabled": True, "secretName": "zambda-guard-tls"},
        "config": {
            "listen": "0.0.0.0:8443",
            "upstream": {"address": "10.20.30.40:8443", "tls": True, "sni": "labs.internal.example.com"},
        },
        "upstreamCA": {"configMapName": "internal-ca-bundle", "key": "bundle.pem"},
        "serviceMonitor": {"enabled": True},
    },
    # Standalone with the decision service for ingress-nginx, its port
    # admitted from the controller's namespace only.
    "standalone-authz": {
        "mode": "standalone",
        "config": {"upstream": {"address": "10.20.30.40:8080"}},
        "authz": {"enabled": True},
        "networkPolicy": {"authzFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        ]},
        "serviceMonitor": {"enabled": True},
    },
    # The sidecar kept in step with an Oystehr project: the first sync as an
    # init container, the loop beside the proxy; policies from several
    # ConfigMaps; a JWKS file mounted for an issuer; monitoring on.
    "sync-sidecar": {
        "config": {
            "project_id": "4a5b8c2e-0000-4000-8000-000000000000",
            "auth": {"issuers": [
                {
                    "issuer": "https://auth.example.com/",
                    "audiences": ["https://api.example.com"],
                    "algorithms": ["RS256"],
                    "jwks_url": "https://auth.example.com/.well-known/jwks.json",
                },
                {
                    "issuer": "https://internal.example.com/",
                    "audiences": ["zambda-guard"],
                    "algorithms": ["RS256"],
                    "jwks_file": "/etc/zambda-guard/keys/jwks.json",
                },
            ]},
            "oystehr": {"issuer": "https://auth.example.com/", "interval_seconds": 30},
        },
        "sync": {"enabled": True, "credentials": {"secretName": "oystehr-m2m"}},
        "policies": {"extraConfigMaps": ["team-policies-a", "team-policies-b"]},
        "extraVolumes": [{"name": "keys", "configMap": {"name": "internal-jwks"}}],
        "extraVolumeMounts": [{"name": "keys", "mountPath": "/etc/zambda-guard/keys", "readOnly": True}],
        "extraEnv": [{"name": "RUST_LOG", "value": "info"}],
        "initContainers": [{"name": "wait", "image": "busybox:1.36", "command": ["true"]}],
        "extraContainers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.0"}],
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
    # Standalone proxies reading a shared volume a CronJob keeps in step.
    "sync-cronjob": {
        "mode": "standalone",
        "config": {
            "upstream": {"address": "10.20.30.40:8080"},
            "oystehr": {"issuer": "https://auth.example.com/", "project_id": "4a5b8c2e-0000-4000-8000-000000000000"},
        },
        "sync": {"enabled": True, "mode": "cronjob", "credentials": {"secretName": "oystehr-m2m"},
                 "cronJob": {"claimName": "oystehr-policies"}},
    },
    # The sidecar behind HTTPS, and TLS to a function that serves it on
    # loopback, verified against a CA from a Secret.
    "sidecar-tls": {
        "tls": {"enabled": True, "secretName": "zambda-guard-tls"},
        "config": {"upstream": {"tls": True}},
        "upstreamCA": {"secretName": "function-ca"},
    },
}
