"""Every values set renders with real Helm, lints clean, and yields manifests
that are valid against the Kubernetes schemas of a current release.

kubernetes-validate ships no schemas for CRDs, so the Prometheus Operator
objects (ServiceMonitor, PrometheusRule) are checked in test_monitoring.py;
here they are only allowed through by name.
"""

from __future__ import annotations

import re

import helm_python as helm
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from chartlib import CHART_DIR, VALUE_SETS

KUBE_VERSION = latest_version()
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

# What each values set must produce, and nothing else.
EXPECTED_KINDS = {
    "default": ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                "Service", "ServiceAccount"],
    "sidecar": ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                "Service", "ServiceAccount"],
    "standalone": ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                   "Service", "ServiceAccount"],
    "existing-configmap": ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                           "Service", "ServiceAccount"],
    "observability": ["ConfigMap", "ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                      "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Service", "Service",
                      "ServiceAccount", "ServiceMonitor"],
    "embedded": ["ConfigMap", "ConfigMap", "PrometheusRule"],
    "edge-tls": ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                 "Service", "Service", "ServiceAccount", "ServiceMonitor"],
    "standalone-authz": ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                         "Service", "Service", "ServiceAccount", "ServiceMonitor"],
    "sidecar-tls": ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                    "Service", "ServiceAccount"],
    "sync-sidecar": ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                     "PrometheusRule", "Service", "Service", "ServiceAccount", "ServiceMonitor"],
    "sync-cronjob": ["ConfigMap", "ConfigMap", "CronJob", "Deployment", "NetworkPolicy",
                     "PodDisruptionBudget", "Service", "ServiceAccount"],
}


def test_every_values_set_has_expected_kinds():
    assert set(EXPECTED_KINDS) == set(VALUE_SETS)


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_renders_the_expected_objects(render, case):
    rendered = render(VALUE_SETS[case])
    assert rendered.kinds() == EXPECTED_KINDS[case]


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_manifests_are_valid_kubernetes(render, case):
    rendered = render(VALUE_SETS[case])
    assert rendered.docs, "nothing rendered"
    checked = 0
    for doc, source in zip(rendered.docs, rendered.sources):
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{source}: {doc['kind']} {doc['metadata']['name']} is invalid "
                        f"for Kubernetes {KUBE_VERSION} at {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError as err:
            pytest.fail(f"{source}: no Kubernetes schema for {doc['apiVersion']} {doc['kind']}: {err.message}")
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_names_and_namespaces(render, case):
    rendered = render(VALUE_SETS[case], name="a" * 53)  # the longest release name Helm allows
    for doc in rendered.docs:
        meta = doc["metadata"]
        pattern = DNS_LABEL if doc["kind"] in ("Service", "Deployment") else DNS_SUBDOMAIN
        limit = 63 if doc["kind"] in ("Service", "Deployment") else 253
        assert pattern.match(meta["name"]) and len(meta["name"]) <= limit, (doc["kind"], meta["name"])
        assert meta["namespace"] == "apps"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert meta["labels"]["app.kubernetes.io/instance"] == "a" * 53
    names = [(d["kind"], d["metadata"]["name"]) for d in rendered.docs]
    assert len(names) == len(set(names)), f"duplicate objects: {names}"


def test_kube_validate_catches_a_broken_manifest(render):
    """The validation above can fail: a Deployment with a wrong type is refused."""
    deployment = render().deployment()
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    del deployment["spec"]["replicas"]
    deployment["spec"]["template"]["spec"]["containers"][0]["bogus"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def _lint_problems(values):
    report = helm.lint(str(CHART_DIR), values, strict=True, namespace="apps", kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    return report, problems


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_lint_is_clean(case):
    report, problems = _lint_problems(VALUE_SETS[case])
    assert report["total_charts_linted"] == 1
    assert problems == []


def test_lint_reports_schema_violations():
    """Lint is not a rubber stamp: values that break the schema are reported."""
    _, problems = _lint_problems({"mode": "daemonset"})
    assert problems, "lint accepted mode=daemonset"
