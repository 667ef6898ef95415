"""The named templates other charts include: the README's example of adding
zambda-guard to another chart's pods (fixtures/labs-function) renders, is
valid Kubernetes, and gives that pod what the chart's own sidecar mode gives,
the TLS mounts included."""

from __future__ import annotations

import shutil

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from chartlib import (
    CHART_DIR,
    CHECKSUM_ANNOTATION,
    HERE,
    POLICIES_DIR,
    TLS_DIR,
    UPSTREAM_CA_DIR,
    container_named,
    mounted_volumes,
    parse_manifests,
    port_number,
    render_text,
)

FIXTURE = HERE / "fixtures" / "labs-function"


@pytest.fixture(scope="module")
def parent_chart(tmp_path_factory):
    root = tmp_path_factory.mktemp("parent")
    shutil.copytree(FIXTURE, root / "labs-function")
    shutil.copytree(CHART_DIR, root / "labs-function" / "charts" / "zambda-guard")
    with helm.Chart.load(str(root / "labs-function")) as chart:
        yield chart


@pytest.fixture(scope="module")
def rendered(parent_chart):
    return parse_manifests(parent_chart.render(name="shop", namespace="apps", is_install=True))


def test_subchart_renders_only_its_configmaps(rendered):
    from_subchart = sorted((d["kind"], d["metadata"]["name"]) for d, s in zip(rendered.docs, rendered.sources)
                           if "/charts/zambda-guard/" in s)
    assert from_subchart == [("ConfigMap", "shop-zambda-guard-config"), ("ConfigMap", "shop-zambda-guard-policies")]


def test_parent_pod_gets_the_sidecar(rendered):
    deployment = rendered.one("Deployment", "shop-labs")
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["labs", "zambda-guard"]
    proxy = container_named(pod, "zambda-guard")
    assert proxy["image"] == "zambda-guard:0.1.0"
    assert port_number(proxy, proxy["readinessProbe"]["httpGet"]["port"]) == 9901
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/healthz"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in proxy["volumeMounts"]:
        assert "subPath" not in mount
        assert mount["name"] in volumes
    policies = next(m for m in proxy["volumeMounts"] if m["mountPath"] == POLICIES_DIR)
    assert volumes[policies["name"]]["configMap"]["name"] == "shop-zambda-guard-policies"
    # The config the subchart rendered points at the parent's function.
    config_map = rendered.one("ConfigMap", "shop-zambda-guard-config")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["upstream"]["address"] == "127.0.0.1:3000"
    assert config["auth"]["issuers"][0]["issuer"] == "https://auth.zapehr.com/"
    # Checksum and shutdown helpers work from the parent too.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations[CHECKSUM_ANNOTATION]) == 64
    labs = container_named(pod, "labs")
    proxy_done = proxy["lifecycle"]["preStop"]["sleep"]["seconds"] + 5 + 25
    assert labs["lifecycle"]["preStop"]["sleep"]["seconds"] > proxy_done
    assert pod["terminationGracePeriodSeconds"] > labs["lifecycle"]["preStop"]["sleep"]["seconds"]
    service = rendered.one("Service", "shop-labs")
    assert port_number(proxy, service["spec"]["ports"][0]["targetPort"]) == 8080


def test_parent_manifests_are_valid_kubernetes(rendered):
    for doc in rendered.docs:
        kubernetes_validate.validate(doc, latest_version(), strict=True)
    assert rendered.one("Deployment", "shop-labs")


def test_readme_example_matches_the_fixture():
    """The README shows the same includes the fixture proves."""
    readme = (CHART_DIR / "README.md").read_text()
    template = (FIXTURE / "templates" / "deployment.yaml").read_text()
    for line in (
        '{{- $zg := index .Subcharts "zambda-guard" }}',
        '{{- include "zambda-guard.container" $zg | nindent 8 }}',
        '{{- include "zambda-guard.volumes" $zg | nindent 8 }}',
        '{{- include "zambda-guard.podAnnotations" $zg | nindent 8 }}',
        'terminationGracePeriodSeconds: {{ include "zambda-guard.terminationGracePeriodSeconds" $zg }}',
        'seconds: {{ include "zambda-guard.functionPreStopSeconds" $zg }}',
        '{{- toYaml $zg.Values.function.securityContext | nindent 12 }}',
    ):
        assert line in template, line
        assert line in readme, line


def test_parent_renders_byte_for_byte_as_before(rendered):
    """Without the TLS values the named templates give what they gave before
    those values existed (see test_tls.py for regenerating the file)."""
    expected = (HERE / "fixtures" / "golden" / "parent.txt").read_text()
    assert render_text(rendered.raw) == expected


def test_parent_pod_gets_the_tls_mounts(parent_chart):
    rendered = parse_manifests(parent_chart.render({"zambda-guard": {
        "tls": {"enabled": True, "secretName": "labs-tls"},
        "config": {"upstream": {"tls": True}},
        "upstreamCA": {"configMapName": "labs-ca-bundle", "key": "bundle.pem"},
    }}, name="shop", namespace="apps", is_install=True))
    pod = rendered.one("Deployment", "shop-labs")["spec"]["template"]["spec"]
    mounts = mounted_volumes(pod, container_named(pod, "zambda-guard"))
    tls_mount, tls_volume = mounts[TLS_DIR]
    assert tls_volume["secret"] == {"secretName": "labs-tls"}
    ca_mount, ca_volume = mounts[UPSTREAM_CA_DIR]
    assert ca_volume["configMap"] == {"name": "labs-ca-bundle", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
    for mount in (tls_mount, ca_mount):
        assert mount["readOnly"] is True and "subPath" not in mount
    assert "volumeMounts" not in container_named(pod, "labs")
    config = yaml.safe_load(rendered.one("ConfigMap", "shop-zambda-guard-config")["data"]["config.yaml"])
    assert config["tls"] == {"cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key"}
    assert config["upstream"] == {"address": "127.0.0.1:3000", "tls": True, "ca_file": f"{UPSTREAM_CA_DIR}/ca.crt"}
    for doc in rendered.docs:
        kubernetes_validate.validate(doc, latest_version(), strict=True)
