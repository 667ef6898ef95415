"""TLS values: `tls` (HTTPS on the proxy port, from an existing
kubernetes.io/tls Secret) and `upstreamCA` (the CA the upstream is verified
against, from an existing Secret or ConfigMap). Each is mounted as a
directory, never with subPath, so a renewal reaches the pod; the rendered
config points at the mounted files; the Service says HTTPS; probes and
metrics stay on the plain-HTTP admin port. Values that do not fit together
fail the render. Without them the chart renders byte for byte what it did
before they existed (fixtures/golden)."""

from __future__ import annotations

import os

import helm_python as helm
import pytest

from chartlib import (
    CHECKSUM_ANNOTATION,
    HERE,
    PROXY_CONTAINER,
    TLS_DIR,
    UPSTREAM_CA_DIR,
    VALUE_SETS,
    container_named,
    deep_merge,
    mounted_volumes,
    port_number,
)

GOLDEN = HERE / "fixtures" / "golden"
TLS = {"tls": {"enabled": True, "secretName": "zg-cert"}}
UPSTREAM_CA = {
    "config": {"upstream": {"tls": True, "sni": "labs.internal.example.com"}},
    "upstreamCA": {"secretName": "labs-ca", "key": "root.pem"},
}
STANDALONE = {"mode": "standalone", "config": {"upstream": {"address": "10.20.30.40:8443"}}}
MODES = {"sidecar": {}, "standalone": STANDALONE}


def with_modes(*values):
    merged = {}
    for v in values:
        merged = deep_merge(merged, v)
    return merged


def assert_golden(name: str, text: str) -> None:
    """`text` is fixtures/golden/<name>.txt, byte for byte. ZG_UPDATE_GOLDEN=1
    rewrites the file instead: do that only for a change that is meant to
    change what the defaults render, and say so in the commit."""
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("ZG_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    expected = path.read_text()
    assert text == expected, (
        f"default values no longer render what {path.relative_to(HERE)} holds; "
        "diff the two (or regenerate with ZG_UPDATE_GOLDEN=1 if the change is intended)")


# --- backward compatibility -------------------------------------------------

@pytest.mark.parametrize("case", ["default", "standalone", "embedded"])
def test_default_values_render_byte_for_byte_as_before(render, case):
    assert_golden(case, render(VALUE_SETS[case]).text())


@pytest.mark.parametrize("case", ["default", "standalone"])
def test_tls_off_leaves_the_pod_and_service_as_they_were(render, case):
    rendered = render(VALUE_SETS[case])
    mounts = mounted_volumes(rendered.pod_spec(), rendered.container())
    assert TLS_DIR not in mounts and UPSTREAM_CA_DIR not in mounts
    assert "tls" not in rendered.config()
    assert "ca_file" not in rendered.config().get("upstream", {})
    port = rendered.one("Service")["spec"]["ports"][0]
    assert (port["name"], port["appProtocol"]) == ("http", "http")
    assert port["port"] == (VALUE_SETS[case] or {}).get("service", {}).get("port", 80)


# --- HTTPS on the proxy port ------------------------------------------------

@pytest.mark.parametrize("mode", sorted(MODES))
def test_tls_secret_is_mounted_as_a_directory_and_configured(render, mode):
    rendered = render(with_modes(MODES[mode], TLS))
    pod = rendered.pod_spec()
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            assert "subPath" not in mount and "subPathExpr" not in mount, (container["name"], mount)
    mounts = mounted_volumes(pod, rendered.container())
    mount, volume = mounts[TLS_DIR]
    assert mount["readOnly"] is True
    # The whole Secret: every key is a file, and the kubelet's `..data` swap
    # on renewal is seen in the directory.
    assert volume["secret"] == {"secretName": "zg-cert"}
    config = rendered.config()
    assert config["tls"] == {"cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key"}
    for path in config["tls"].values():
        assert os.path.dirname(path) == mount["mountPath"]
    # Only zambda-guard holds the private key.
    holders = [c["name"] for c in pod["containers"]
               if any(m["name"] == mount["name"] for m in c.get("volumeMounts", []))]
    assert holders == [PROXY_CONTAINER]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_tls_service_port_is_https(render, mode):
    rendered = render(with_modes(MODES[mode], TLS))
    ports = rendered.one("Service")["spec"]["ports"]
    assert ports == [{"name": "https", "port": 443, "targetPort": "proxy", "protocol": "TCP",
                      "appProtocol": "https"}]
    assert port_number(rendered.container(), "proxy") == 8080
    explicit = render(with_modes(MODES[mode], TLS, {"service": {"port": 8443}}))
    assert explicit.one("Service")["spec"]["ports"][0]["port"] == 8443
    assert "port-forward svc/demo-zambda-guard 8443:443" in rendered.notes
    assert "https://" in rendered.notes and "http://127.0.0.1" not in rendered.notes


def test_tls_keeps_probes_and_metrics_on_the_plain_http_admin_port(render):
    rendered = render(VALUE_SETS["edge-tls"])
    proxy = rendered.container()
    for probe in ("livenessProbe", "readinessProbe"):
        http = proxy[probe]["httpGet"]
        assert http.get("scheme", "HTTP") == "HTTP"
        assert port_number(proxy, http["port"]) == 9901
    annotations = rendered.deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9901"
    metrics = rendered.one("Service", "demo-zambda-guard-metrics")["spec"]["ports"]
    assert [(p["name"], p["appProtocol"]) for p in metrics] == [("admin", "http")]
    assert rendered.one("ServiceMonitor")["spec"]["endpoints"][0].get("scheme", "http") == "http"
    # The NetworkPolicy follows the proxy port wherever it listens.
    policy = rendered.one("NetworkPolicy")["spec"]
    assert sorted(p["port"] for rule in policy["ingress"] for p in rule["ports"]) == [8443, 9901]


def test_turning_tls_on_rolls_the_pods(render):
    def checksum(values):
        return render(values).deployment()["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]
    assert checksum(TLS) != checksum(None)


def test_tls_without_a_secret_name_fails_the_render(render):
    for values in ({"tls": {"enabled": True}}, {"tls": {"enabled": True, "secretName": ""}}):
        with pytest.raises(helm.HelmValuesError) as err:
            render(values)
        assert "/tls/secretName" in str(err.value), str(err.value)
    # A secret name alone turns nothing on.
    assert "tls" not in render({"tls": {"secretName": "zg-cert"}}).config()


# --- the upstream's CA --------------------------------------------------------

@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("source", ["secret", "configMap"])
def test_upstream_ca_is_mounted_and_configured(render, mode, source):
    ca = ({"secretName": "labs-ca", "key": "root.pem"} if source == "secret"
          else {"configMapName": "labs-ca", "key": "root.pem"})
    rendered = render(with_modes(MODES[mode], UPSTREAM_CA, {"upstreamCA": {"secretName": "", **ca}}))
    mount, volume = mounted_volumes(rendered.pod_spec(), rendered.container())[UPSTREAM_CA_DIR]
    assert mount["readOnly"] is True and "subPath" not in mount
    items = [{"key": "root.pem", "path": "ca.crt"}]
    if source == "secret":
        assert volume["secret"] == {"secretName": "labs-ca", "items": items}
    else:
        assert volume["configMap"] == {"name": "labs-ca", "items": items}
    upstream = rendered.config()["upstream"]
    assert upstream["ca_file"] == f"{UPSTREAM_CA_DIR}/ca.crt"
    assert upstream["tls"] is True and upstream["sni"] == "labs.internal.example.com"
    assert "zambda-guard-tls" not in [v["name"] for v in rendered.pod_spec()["volumes"]]


def test_upstream_ca_key_defaults_to_ca_crt(render):
    rendered = render({"config": {"upstream": {"tls": True}}, "upstreamCA": {"secretName": "labs-ca"}})
    _, volume = mounted_volumes(rendered.pod_spec(), rendered.container())[UPSTREAM_CA_DIR]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_upstream_tls_without_a_ca_uses_the_system_roots(render):
    rendered = render({"config": {"upstream": {"tls": True, "sni": "fn.local"}}})
    assert rendered.config()["upstream"] == {"address": "127.0.0.1:3000", "tls": True, "sni": "fn.local"}
    assert UPSTREAM_CA_DIR not in mounted_volumes(rendered.pod_spec(), rendered.container())


@pytest.mark.parametrize("values, message", [
    ({"upstreamCA": {"secretName": "labs-ca"}}, "it needs config.upstream.tls: true"),
    ({"config": {"upstream": {"tls": True}}, "upstreamCA": {"secretName": "a", "configMapName": "b"}},
     "set secretName (a) or configMapName (b), not both"),
    ({"config": {"upstream": {"tls": True, "ca_file": "/ca.pem"}}, "upstreamCA": {"secretName": "a"}},
     "remove config.upstream.ca_file"),
    ({"config": {"upstream": {"tls": True, "insecure_skip_verify": True}}, "upstreamCA": {"secretName": "a"}},
     "contradicts config.upstream.insecure_skip_verify"),
    ({**TLS, "config": {"tls": {"cert_file": "/c.pem", "key_file": "/k.pem"}}}, "remove config.tls"),
])
def test_inconsistent_tls_values_fail_the_render(render, values, message):
    with pytest.raises(helm.HelmError) as err:
        render(values)
    assert message in str(err.value)


@pytest.mark.parametrize("values, where", [
    ({"tls": {"enabled": "yes"}}, "/tls/enabled"),
    ({"tls": {"enabled": True, "secretName": "Not_A_Name"}}, "/tls/secretName"),
    ({"tls": {"secret": "zg-cert"}}, "secret"),
    ({"upstreamCA": {"key": "a/b"}}, "/upstreamCA/key"),
    ({"upstreamCA": {"configMap": "x"}}, "configMap"),
    ({"service": {"port": "443"}}, "/service/port"),
])
def test_tls_schema_violations(render, values, where):
    with pytest.raises(helm.HelmValuesError) as err:
        render(values)
    assert where in str(err.value), str(err.value)


def test_function_container_sees_neither_tls_volume(render):
    rendered = render(VALUE_SETS["sidecar-tls"])
    function = container_named(rendered.pod_spec(), "function")
    assert "volumeMounts" not in function
