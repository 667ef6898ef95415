"""What matters about the workload: one pod holding both containers, a
Service that reaches only the proxy, policies mounted as a directory, a
checksum on the config only, a restricted security context, probes on the
admin port, a NetworkPolicy admitting the proxy and admin ports, and a
shutdown order that loses no request."""

from __future__ import annotations

import json
import tomllib

import helm_python as helm
import pytest
import yaml

from chartlib import (
    CHECKSUM_ANNOTATION,
    CONFIG_DIR,
    POLICIES_DIR,
    PROXY_CONTAINER,
    REPO,
    VALUE_SETS,
    container_named,
    port_number,
    sha256_hex,
)

WORKLOAD_CASES = ["default", "sidecar", "standalone", "existing-configmap", "observability"]


# --- pod layout -----------------------------------------------------------

@pytest.mark.parametrize("case", ["default", "sidecar"])
def test_sidecar_mode_runs_both_containers_in_one_pod(render, case):
    rendered = render(VALUE_SETS[case])
    assert len(rendered.of_kind("Deployment")) == 1
    pod = rendered.pod_spec()
    function_name = (VALUE_SETS[case] or {}).get("function", {}).get("name", "function")
    assert sorted(c["name"] for c in pod["containers"]) == sorted([PROXY_CONTAINER, function_name])
    assert "initContainers" not in pod  # not a native sidecar: it would outlive the function
    config = rendered.config()
    port = (VALUE_SETS[case] or {}).get("function", {}).get("port", 3000)
    assert config["upstream"]["address"] == f"127.0.0.1:{port}"
    # The function's port is not published on the pod.
    assert "ports" not in container_named(pod, function_name)


def test_sidecar_function_settings_reach_the_container(render):
    values = VALUE_SETS["sidecar"]
    function = render(values).container("labs")
    assert function["image"] == "registry.example.com/labs-fn:2.4.1"
    assert function["command"] == ["node"]
    assert function["args"] == ["dist/server.js"]
    assert {"name": "PORT", "value": "8081"} in function["env"]
    assert function["livenessProbe"] == {"exec": {"command": ["/bin/true"]}}
    assert function["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}]


def test_standalone_mode_runs_only_the_proxy(render):
    rendered = render(VALUE_SETS["standalone"])
    pod = rendered.pod_spec()
    assert [c["name"] for c in pod["containers"]] == [PROXY_CONTAINER]
    assert rendered.config()["upstream"] == {"address": "10.20.30.40:8080", "read_timeout_ms": 60000}


def test_default_image_tag_is_the_crate_version(chart, render):
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    crate_version = cargo["package"]["version"]
    assert chart.metadata["appVersion"] == crate_version
    assert render().container()["image"] == f"zambda-guard:{crate_version}"
    digest = "sha256:" + "ab" * 32
    pinned = render({"image": {"repository": "r.example.com/zg", "digest": digest}})
    assert pinned.container()["image"] == f"r.example.com/zg@{digest}"


# --- the Service ----------------------------------------------------------

@pytest.mark.parametrize("case", ["default", "sidecar", "standalone", "observability"])
def test_service_reaches_only_the_proxy_port(render, case):
    rendered = render(VALUE_SETS[case])
    service = [s for s in rendered.of_kind("Service")
               if s["metadata"]["labels"].get("app.kubernetes.io/component") == "proxy"]
    assert len(service) == 1
    spec = service[0]["spec"]
    assert len(spec["ports"]) == 1
    proxy = rendered.container()
    target = port_number(proxy, spec["ports"][0]["targetPort"])
    assert target == int(rendered.config()["listen"].rsplit(":", 1)[1])
    admin = int(rendered.config()["admin_listen"].rsplit(":", 1)[1])
    assert target != admin
    # The selector picks the pods, and only through labels the pods carry.
    pod_labels = rendered.deployment()["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= pod_labels.items()


def test_ports_follow_the_configured_listen_addresses(render):
    rendered = render({"config": {"listen": "0.0.0.0:9000", "admin_listen": "0.0.0.0:9100"}})
    proxy = rendered.container()
    assert port_number(proxy, "proxy") == 9000
    assert port_number(proxy, "admin") == 9100
    policy = rendered.one("NetworkPolicy")
    assert sorted(p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]) == [9000, 9100]
    annotations = rendered.deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9100"


# --- configuration and policies --------------------------------------------

@pytest.mark.parametrize("case", WORKLOAD_CASES)
def test_policies_are_mounted_as_a_directory_without_subpath(render, case):
    rendered = render(VALUE_SETS[case])
    pod = rendered.pod_spec()
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            assert "subPath" not in mount and "subPathExpr" not in mount, (container["name"], mount)
    mounts = {m["mountPath"]: m for m in rendered.container()["volumeMounts"]}
    policies_volume = {v["name"]: v for v in pod["volumes"]}[mounts[POLICIES_DIR]["name"]]
    expected = (VALUE_SETS[case] or {}).get("policies", {}).get("existingConfigMap") or "demo-zambda-guard-policies"
    assert policies_volume["configMap"]["name"] == expected
    assert "items" not in policies_volume["configMap"]  # every key of the ConfigMap is a file
    assert rendered.config()["policies"]["dir"] == POLICIES_DIR
    config_volume = {v["name"]: v for v in pod["volumes"]}[mounts[CONFIG_DIR]["name"]]
    assert config_volume["configMap"]["name"] == rendered.config_map("-config")["metadata"]["name"]
    assert rendered.container()["args"] == ["run", "--config", f"{CONFIG_DIR}/config.yaml"]


def test_policy_files_from_values(render):
    rendered = render({"policies": {"files": {
        "example.yaml": None,
        "labs.yaml": "zambdas:\n  - id: labs\n    name: labs\n",
        "catalog.json": {"zambdas": [{"id": "z1", "name": "one", "type": "public"}]},
        "roles.yml": {"roles": [{"name": "r", "access_policy": {"rule": []}}]},
    }}})
    data = rendered.config_map("-policies")["data"]
    assert sorted(data) == ["catalog.json", "labs.yaml", "roles.yml"]
    assert data["labs.yaml"] == "zambdas:\n  - id: labs\n    name: labs\n"
    assert json.loads(data["catalog.json"]) == {"zambdas": [{"id": "z1", "name": "one", "type": "public"}]}
    assert yaml.safe_load(data["roles.yml"]) == {"roles": [{"name": "r", "access_policy": {"rule": []}}]}


def test_existing_configmap_replaces_the_chart_policies(render):
    rendered = render(VALUE_SETS["existing-configmap"])
    names = [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap")]
    assert names == ["demo-zambda-guard-config"]
    assert "team-policies" in rendered.notes


def test_checksum_is_derived_from_the_config_only(render):
    base = render()
    checksum = base.checksum()
    text = base.config_yaml_text()
    assert checksum in (sha256_hex(text), sha256_hex(text.rstrip("\n")))
    annotations = base.deployment()["spec"]["template"]["metadata"]["annotations"]
    assert [k for k in annotations if k.startswith("checksum/")] == [CHECKSUM_ANNOTATION]

    new_policies = render({"policies": {"files": {"more.yaml": "actors: []\n"}}})
    assert new_policies.config_map("-policies")["data"] != base.config_map("-policies")["data"]
    assert new_policies.checksum() == checksum, "a policy change must not restart the pods"
    assert render({"policies": {"existingConfigMap": "other"}}).checksum() == checksum

    assert render({"config": {"log": {"decisions": "all"}}}).checksum() != checksum
    assert render({"config": {"shutdown": {"drain_timeout_seconds": 20}}}).checksum() != checksum
    assert render({"function": {"port": 3001}}).checksum() != checksum  # upstream moved


def test_chart_sets_policies_dir_and_sidecar_upstream(render):
    config = render({"config": {"upstream": {"read_timeout_ms": 5000}}}).config()
    assert config["policies"] == {"dir": POLICIES_DIR, "watch": True}
    assert config["upstream"] == {"address": "127.0.0.1:3000", "read_timeout_ms": 5000}
    assert config["auth"]["issuers"][0]["issuer"] == "https://auth.example.com/"
    assert config["shutdown"] == {"grace_period_seconds": 5, "drain_timeout_seconds": 25}


@pytest.mark.parametrize("values, message", [
    ({"mode": "standalone"}, "missing property 'upstream'"),  # caught by the schema
    ({"mode": "standalone", "config": {"upstream": {"tls": True}}}, "missing property 'address'"),
    ({"mode": "standalone", "config": {"upstream": {"address": "127.0.0.1:3000"}}}, "loopback"),
    ({"config": {"upstream": {"address": "10.0.0.1:80"}}}, "remove config.upstream.address"),
    ({"config": {"auth": {"issuers": [VALUE_SETS["sidecar"]["config"]["auth"]["issuers"][1]]}}},
     "no hmacSecrets entry has env: ZG_HMAC_INTERNAL"),
])
def test_inconsistent_values_fail_the_render(render, values, message):
    with pytest.raises(helm.HelmError) as err:
        render(values)
    assert message in str(err.value)


def test_hmac_secret_comes_from_a_secret(render):
    proxy = render(VALUE_SETS["sidecar"]).container()
    env = {e["name"]: e for e in proxy["env"]}
    assert env["ZG_HMAC_INTERNAL"] == {
        "name": "ZG_HMAC_INTERNAL",
        "valueFrom": {"secretKeyRef": {"name": "internal-issuer", "key": "secret"}},
    }
    assert env["RUST_LOG"] == {"name": "RUST_LOG", "value": "info"}
    config = render(VALUE_SETS["sidecar"]).config()
    assert config["auth"]["issuers"][1]["hmac_secret_env"] == "ZG_HMAC_INTERNAL"
    assert "secret" not in render(VALUE_SETS["sidecar"]).config_yaml_text().replace("hmac_secret_env", "")


def test_telemetry_values_become_otel_environment_variables(render):
    proxy = render({"telemetry": {
        "otlpEndpoint": "http://otel-collector.observability:4318",
        "serviceName": "labs-guard",
        "resourceAttributes": "deployment.environment=prod",
    }}).container()
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert env["OTEL_SERVICE_NAME"] == "labs-guard"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment=prod"
    # Off by default: no OTEL_ variable at all.
    default = render().container()
    assert not [e for e in default.get("env", []) if e["name"].startswith("OTEL_")]


# --- security -------------------------------------------------------------

def _assert_restricted(container, pod):
    sc = container.get("securityContext", {})
    psc = pod.get("securityContext", {})
    name = container["name"]
    assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, name
    assert sc.get("allowPrivilegeEscalation") is False, name
    assert sc.get("readOnlyRootFilesystem") is True, name
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
    assert not sc.get("capabilities", {}).get("add"), name
    assert sc.get("privileged", False) is False, name
    seccomp = sc.get("seccompProfile") or psc.get("seccompProfile")
    assert seccomp == {"type": "RuntimeDefault"}, name
    assert sc.get("runAsUser", psc.get("runAsUser")) != 0, name


@pytest.mark.parametrize("case", WORKLOAD_CASES)
def test_restricted_security_context(render, case):
    rendered = render(VALUE_SETS[case])
    pod = rendered.pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    proxy = rendered.container()
    assert proxy["securityContext"]["runAsUser"] == 65532  # the image's user
    assert proxy["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        _assert_restricted(container, pod)
    # A read-only root needs a writable /tmp (the upgrade socket lives there).
    tmp = [m for m in proxy["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[tmp[0]["name"]]
    for obj in rendered.docs:
        if obj["kind"] == "ServiceAccount":
            assert obj["automountServiceAccountToken"] is False


# --- probes ---------------------------------------------------------------

@pytest.mark.parametrize("case", WORKLOAD_CASES)
def test_probes_use_the_admin_port(render, case):
    rendered = render(VALUE_SETS[case])
    proxy = rendered.container()
    admin = int(rendered.config()["admin_listen"].rsplit(":", 1)[1])
    proxy_port = int(rendered.config()["listen"].rsplit(":", 1)[1])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = proxy[probe]["httpGet"]
        assert http["path"] == path
        assert port_number(proxy, http["port"]) == admin
        assert port_number(proxy, http["port"]) != proxy_port


# --- network policy -------------------------------------------------------

@pytest.mark.parametrize("case", ["default", "sidecar", "standalone"])
def test_network_policy_admits_only_proxy_and_admin_ports(render, case):
    rendered = render(VALUE_SETS[case])
    policy = rendered.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    pod_labels = rendered.deployment()["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    ports = sorted(p["port"] for rule in policy["ingress"] for p in rule["ports"])
    assert ports == [8080, 9901]
    for rule in policy["ingress"]:
        assert rule["ports"], "a rule without ports would admit every port"
        assert all(p["protocol"] == "TCP" for p in rule["ports"])
    if case == "sidecar":
        function_port = VALUE_SETS["sidecar"]["function"]["port"]
        assert function_port not in ports
        proxy_rule = [r for r in policy["ingress"] if r["ports"][0]["port"] == 8080][0]
        assert proxy_rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "labs"}}}]


def test_network_policy_can_be_disabled(render):
    assert render({"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy") == []


# --- availability -----------------------------------------------------------

def test_pdb_and_replicas(render):
    rendered = render()
    assert rendered.deployment()["spec"]["replicas"] == 2
    pdb = rendered.one("PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": rendered.deployment()["spec"]["selector"]}
    assert render({"podDisruptionBudget": {"minAvailable": 1}}).one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert render({"podDisruptionBudget": {"enabled": False}}).of_kind("PodDisruptionBudget") == []


def test_hpa_takes_over_replicas(render):
    rendered = render(VALUE_SETS["observability"])
    assert "replicas" not in rendered.deployment()["spec"]
    hpa = rendered.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": rendered.deployment()["metadata"]["name"]}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    with pytest.raises(helm.HelmError, match="maxReplicas"):
        render({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}})


def test_resources_are_set(render):
    resources = render().container()["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_scrape_annotations(render):
    annotations = render().deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9901"
    assert annotations["prometheus.io/path"] == "/metrics"
    off = render({"metrics": {"podAnnotations": False}}).deployment()["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in off and CHECKSUM_ANNOTATION in off


# --- shutdown ordering ------------------------------------------------------

def _sleep(container):
    return container["lifecycle"]["preStop"]["sleep"]["seconds"]


@pytest.mark.parametrize("config_shutdown, pre_stop", [
    ({}, 5),
    ({"grace_period_seconds": 10, "drain_timeout_seconds": 60}, 5),
    ({"grace_period_seconds": 0, "drain_timeout_seconds": 5}, 0),
])
def test_shutdown_order_loses_no_request(render, config_shutdown, pre_stop):
    rendered = render({"config": {"shutdown": config_shutdown}, "shutdown": {"preStopSleepSeconds": pre_stop}})
    pod = rendered.pod_spec()
    proxy = rendered.container()
    function = container_named(pod, "function")
    grace = rendered.config()["shutdown"]["grace_period_seconds"]
    drain = rendered.config()["shutdown"]["drain_timeout_seconds"]
    proxy_pause = _sleep(proxy) if pre_stop else 0
    if pre_stop:
        assert proxy_pause == pre_stop
    else:
        assert "lifecycle" not in proxy
    proxy_done = proxy_pause + grace + drain
    # The function gets SIGTERM only after the proxy has drained ...
    assert _sleep(function) > proxy_done
    # ... and the pod's grace period covers all of it plus the function's exit.
    assert pod["terminationGracePeriodSeconds"] >= _sleep(function) + 10


def test_standalone_grace_period_covers_the_drain(render):
    pod = render(VALUE_SETS["standalone"]).pod_spec()
    assert pod["terminationGracePeriodSeconds"] > 5 + 5 + 25


def test_too_short_shutdown_settings_fail(render):
    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds"):
        render({"terminationGracePeriodSeconds": 30})
    with pytest.raises(helm.HelmError, match="preStopSleepSeconds"):
        render({"function": {"preStopSleepSeconds": 20}})
    ok = render({"terminationGracePeriodSeconds": 120, "function": {"preStopSleepSeconds": 60}})
    assert ok.pod_spec()["terminationGracePeriodSeconds"] == 120
    assert _sleep(container_named(ok.pod_spec(), "function")) == 60
