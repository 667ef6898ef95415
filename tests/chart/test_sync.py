"""`sync.enabled`: the first sync as an init container and the loop beside
the proxy (or a CronJob on a shared volume), writing a directory the proxy
reads read-only beside the ConfigMap policies; credentials only in the sync
containers; a stale-sync alert. And, in every mode, what lets the proxy pod
mount whatever the config names: several policy ConfigMaps through one
projected volume, extra volumes, mounts, env and containers."""

from __future__ import annotations

import helm_python as helm
import pytest

from chartlib import (
    CONFIG_DIR,
    POLICIES_DIR,
    PROXY_CONTAINER,
    REPO,
    VALUE_SETS,
    container_named,
    deep_merge,
    mounted_volumes,
)
from test_check import materialize, run_check

SYNC_DIR = "/etc/zambda-guard/oystehr"
SIDECAR = VALUE_SETS["sync-sidecar"]
CRONJOB = VALUE_SETS["sync-cronjob"]

# What the cluster would hold for the sync value sets.
OBJECTS = {
    ("ConfigMap", "team-policies-a"): {
        "staff.yaml": "actors:\n  - subject: auth0|dr-rivera\n    issuer: https://auth.example.com/\n",
    },
    ("ConfigMap", "team-policies-b"): {"more.yaml": "zambdas:\n  - name: team-b-report\n"},
    ("ConfigMap", "internal-jwks"): {"jwks.json": (REPO / "tests/fixtures/keys/jwks.json").read_text()},
}


def env_names(container):
    return [e["name"] for e in container.get("env", [])]


def test_the_first_sync_runs_before_the_proxy_and_the_loop_beside_it(render):
    rendered = render(SIDECAR)
    pod = rendered.pod_spec()
    init = pod["initContainers"]
    # the user's init containers first, then the first sync
    assert [c["name"] for c in init] == ["wait", "zambda-guard-sync-init"]
    first = init[-1]
    assert first["args"] == ["sync", "--config", f"{CONFIG_DIR}/config.yaml", "--once"]
    loop = container_named(pod, "zambda-guard-sync")
    assert loop["args"] == ["sync", "--config", f"{CONFIG_DIR}/config.yaml"]
    assert loop["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "sync-admin"}
    assert loop["ports"] == [{"name": "sync-admin", "containerPort": 9902, "protocol": "TCP"}]
    assert "restartPolicy" not in first  # a plain init container: it must finish first
    names = sorted(c["name"] for c in pod["containers"])
    assert names == sorted([PROXY_CONTAINER, "function", "zambda-guard-sync", "log-shipper"])


def test_the_proxy_reads_the_synced_directory_read_only_and_holds_no_credentials(render):
    rendered = render(SIDECAR)
    pod = rendered.pod_spec()
    proxy = rendered.container()
    mounts = mounted_volumes(pod, proxy)
    mount, volume = mounts[SYNC_DIR]
    assert mount["readOnly"] is True
    assert "emptyDir" in volume
    assert not any("OYSTEHR" in n for n in env_names(proxy))
    for sync in (pod["initContainers"][-1], container_named(pod, "zambda-guard-sync")):
        sync_mounts = mounted_volumes(pod, sync)
        assert sync_mounts[SYNC_DIR][1] is volume or sync_mounts[SYNC_DIR][1] == volume
        assert not sync_mounts[SYNC_DIR][0].get("readOnly")
        assert sync_mounts[POLICIES_DIR][0]["readOnly"] is True
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in sync["env"]}
        assert env == {
            "OYSTEHR_CLIENT_ID": {"name": "oystehr-m2m", "key": "client-id"},
            "OYSTEHR_CLIENT_SECRET": {"name": "oystehr-m2m", "key": "client-secret"},
        }
        assert sync["securityContext"]["readOnlyRootFilesystem"] is True
        assert sync["securityContext"]["runAsNonRoot"] is True
        assert sync["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_the_config_names_both_directories_and_the_sync_section(render):
    config = render(SIDECAR).config()
    assert config["policies"]["dir"] == [POLICIES_DIR, SYNC_DIR]
    assert config["oystehr"]["dir"] == SYNC_DIR
    assert config["oystehr"]["admin_listen"] == "0.0.0.0:9902"
    assert config["oystehr"]["issuer"] == "https://auth.example.com/"
    # without sync, one directory as before
    assert render().config()["policies"]["dir"] == POLICIES_DIR


def test_variable_names_follow_the_config(render):
    values = deep_merge(SIDECAR, {"config": {"oystehr": {"client_id_env": "ID", "client_secret_env": "SECRET"}},
                                  "sync": {"credentials": {"clientSecretKey": "password"}}})
    loop = render(values).container("zambda-guard-sync")
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in loop["env"]}
    assert env == {"ID": "client-id", "SECRET": "password"}


@pytest.mark.parametrize("case", ["sync-sidecar", "sync-cronjob"])
def test_the_rendered_config_passes_check(render, tmp_path, case):
    config = materialize(render(VALUE_SETS[case]), tmp_path, OBJECTS)
    result = run_check(config)
    assert result.returncode == 0, (result.stdout, result.stderr, config.read_text())
    assert "oystehr sync: project 4a5b8c2e-0000-4000-8000-000000000000" in result.stdout
    if case == "sync-sidecar":
        # every projected ConfigMap and the mounted key file were read: an
        # empty key set there is refused
        assert (tmp_path / POLICIES_DIR.lstrip("/") / "more.yaml").is_file()
        (tmp_path / "etc/zambda-guard/keys/jwks.json").write_text('{"keys": []}')
        result = run_check(config)
        assert result.returncode == 2 and "jwks.json: the key set is empty" in result.stderr, result


def test_the_projected_policies_hold_every_configmap(render):
    rendered = render(SIDECAR)
    _, volume = mounted_volumes(rendered.pod_spec(), rendered.container())[POLICIES_DIR]
    names = [s["configMap"]["name"] for s in volume["projected"]["sources"]]
    assert names == ["demo-zambda-guard-policies", "team-policies-a", "team-policies-b"]
    # and with an existing ConfigMap instead of the chart's
    values = deep_merge(SIDECAR, {"policies": {"existingConfigMap": "mine"}})
    rendered = render(values)
    _, volume = mounted_volumes(rendered.pod_spec(), rendered.container())[POLICIES_DIR]
    assert [s["configMap"]["name"] for s in volume["projected"]["sources"]][0] == "mine"


@pytest.mark.parametrize("mode", ["sidecar", "standalone"])
def test_extra_mounts_env_and_containers_reach_the_proxy_pod_without_sync(render, mode):
    values = {k: v for k, v in SIDECAR.items() if k not in ("sync",)}
    values = deep_merge(values, {"config": {"oystehr": None}})
    values["config"] = {k: v for k, v in values["config"].items() if k != "oystehr"}
    if mode == "standalone":
        values = deep_merge(values, {"mode": "standalone", "config": {"upstream": {"address": "10.0.0.1:80"}}})
    rendered = render(values)
    pod = rendered.pod_spec()
    proxy = rendered.container()
    mount, volume = mounted_volumes(pod, proxy)["/etc/zambda-guard/keys"]
    assert volume == {"name": "keys", "configMap": {"name": "internal-jwks"}}
    assert {"name": "RUST_LOG", "value": "info"} in proxy["env"]
    assert [c["name"] for c in pod["initContainers"]] == ["wait"]
    assert "log-shipper" in [c["name"] for c in pod["containers"]]
    assert SYNC_DIR not in mounted_volumes(pod, proxy)


def test_embedded_container_takes_the_extra_mounts(render):
    values = {"mode": "embedded", "extraVolumeMounts": [{"name": "keys", "mountPath": "/keys"}],
              "extraEnv": [{"name": "A", "value": "b"}]}
    rendered = render(values)
    assert rendered.of_kind("Deployment") == []


def test_cronjob_writes_the_shared_volume_the_proxy_reads(render):
    rendered = render(CRONJOB)
    job = rendered.one("CronJob")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    template = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["restartPolicy"] == "Never"
    assert template["automountServiceAccountToken"] is False
    (sync,) = template["containers"]
    assert sync["args"][-1] == "--once"
    volumes = {v["name"]: v for v in template["volumes"]}
    assert volumes["zambda-guard-oystehr"]["persistentVolumeClaim"] == {"claimName": "oystehr-policies"}
    assert "readOnly" not in volumes["zambda-guard-oystehr"]["persistentVolumeClaim"]
    pod = rendered.pod_spec()
    assert "initContainers" not in pod
    assert [c["name"] for c in pod["containers"]] == [PROXY_CONTAINER]
    mount, volume = mounted_volumes(pod, rendered.container())[SYNC_DIR]
    assert mount["readOnly"] is True
    assert volume["persistentVolumeClaim"] == {"claimName": "oystehr-policies", "readOnly": True}


def test_monitoring_scrapes_the_loop_and_alerts_on_a_stale_sync(render):
    rendered = render(SIDECAR)
    monitor = rendered.one("ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["admin", "sync-admin"]
    service = [s for s in rendered.of_kind("Service") if s["metadata"]["name"].endswith("-metrics")][0]
    assert "sync-admin" in [p["name"] for p in service["spec"]["ports"]]
    policy = rendered.one("NetworkPolicy")
    admin_ports = [p["port"] for p in policy["spec"]["ingress"][1]["ports"]]
    assert 9902 in admin_ports
    rules = {r["alert"]: r for r in rendered.one("PrometheusRule")["spec"]["groups"][0]["rules"]}
    stale = rules["ZambdaGuardSyncStale"]
    assert "zambda_guard_sync_last_success_timestamp_seconds" in stale["expr"]
    assert "> 150" in stale["expr"]  # five intervals of 30 s
    values = deep_merge(SIDECAR, {"prometheusRule": {"syncStaleSeconds": 600}})
    rules = {r["alert"]: r for r in render(values).one("PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert "> 600" in rules["ZambdaGuardSyncStale"]["expr"]
    # no sync, no alert
    rules = render(VALUE_SETS["observability"]).one("PrometheusRule")["spec"]["groups"][0]["rules"]
    assert "ZambdaGuardSyncStale" not in [r["alert"] for r in rules]


@pytest.mark.parametrize("values, message", [
    ({"sync": {"enabled": True, "credentials": {"secretName": "s"}}}, "config.oystehr.issuer"),
    ({"sync": {"enabled": True, "credentials": {"secretName": "s"}},
      "config": {"oystehr": {"issuer": "https://auth.example.com/"}}}, "project_id"),
    ({"sync": {"enabled": True}, "config": {"project_id": "p", "oystehr": {"issuer": "https://auth.example.com/"}}},
     "sync.credentials.secretName"),
    ({"config": {"oystehr": {"issuer": "https://auth.example.com/"}}}, "sync.enabled"),
    ({"sync": {"enabled": True, "mode": "cronjob", "credentials": {"secretName": "s"}},
      "config": {"project_id": "p", "oystehr": {"issuer": "https://auth.example.com/"}}}, "mode=standalone"),
    (deep_merge(CRONJOB, {"sync": {"cronJob": {"claimName": ""}}}), "claimName"),
    (deep_merge(SIDECAR, {"sync": {"adminPort": 9901}}), "sync.adminPort"),
])
def test_what_sync_needs_is_checked_at_render(render, values, message):
    with pytest.raises(helm.HelmRenderError) as failure:
        render(values)
    assert message in str(failure.value)


@pytest.mark.parametrize("values", [
    {"config": {"oystehr": {"dir": "/elsewhere"}}},
    {"config": {"oystehr": {"admin_listen": "0.0.0.0:1"}}},
    {"config": {"oystehr": {"file": "x.test.json"}}},
    {"sync": {"mode": "sometimes"}},
])
def test_the_schema_refuses_what_the_chart_sets_or_cannot_be(render, values):
    with pytest.raises(helm.HelmValuesError):
        render(values)
