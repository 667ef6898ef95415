"""The decision-only service switch (`authz.*`, standalone mode): it renders
`authz_listen` and `authz` into config.yaml, a container port named `authz`,
the same port on the Service and a NetworkPolicy rule of its own; the
rendered config passes `zambda-guard check`. Values that would run it where
it makes no sense, or expose it outside the cluster, fail the render. With
the switch off nothing changes (the goldens in test_tls.py); with it on the
output is pinned by fixtures/golden/standalone-authz.txt."""

from __future__ import annotations

import re

import helm_python as helm
import pytest
import yaml

from chartlib import CHART_DIR, NAMESPACE, RELEASE, VALUE_SETS, deep_merge, port_number
from test_check import TLS_OBJECTS, materialize, run_check
from test_tls import assert_golden

STANDALONE = {"mode": "standalone", "config": {"upstream": {"address": "10.20.30.40:8080"}}}
ON = deep_merge(STANDALONE, {"authz": {"enabled": True}})
IDENTITY_HEADERS = ["X-Zambda-Id", "X-Zambda-Name", "X-Zambda-Actor", "X-Zambda-Roles", "X-Oystehr-Request-Id"]
README = (CHART_DIR / "README.md").read_text()


def authz_ports(rendered):
    container = [p for p in rendered.container().get("ports", []) if p["name"] == "authz"]
    service = [p for p in rendered.one("Service", f"{RELEASE}-zambda-guard")["spec"]["ports"] if p["name"] == "authz"]
    return container, service


# --- off: nothing of it is rendered ----------------------------------------

@pytest.mark.parametrize("case", ["default", "standalone", "sidecar"])
def test_off_renders_no_decision_service(render, case):
    rendered = render(VALUE_SETS[case])
    config = rendered.config()
    assert "authz_listen" not in config and "authz" not in config
    assert authz_ports(rendered) == ([], [])
    policy = rendered.one("NetworkPolicy")["spec"]
    assert len(policy["ingress"]) == 2
    assert "decision service" not in rendered.notes


# --- on ---------------------------------------------------------------------

def test_on_renders_the_config_keys(render):
    config = render(ON).config()
    assert config["authz_listen"] == "0.0.0.0:9191"
    assert config["authz"] == {"source": "original_url"}
    # The proxy keeps serving next to it.
    assert config["listen"] == "0.0.0.0:8080"


def test_the_listen_host_is_that_of_config_listen(render):
    values = deep_merge(ON, {"config": {"listen": "[::]:8000"}, "authz": {"port": 7000}})
    config = render(values).config()
    assert config["authz_listen"] == "[::]:7000"


@pytest.mark.parametrize("source", ["original_url", "original_uri", "forwarded", "request"])
def test_every_source_is_rendered(render, source):
    assert render(deep_merge(ON, {"authz": {"source": source}})).config()["authz"] == {"source": source}


def test_path_prefix_with_source_request(render):
    values = deep_merge(ON, {"authz": {"source": "request", "pathPrefix": "/authz"}})
    assert render(values).config()["authz"] == {"source": "request", "path_prefix": "/authz"}


def test_port_on_container_and_service(render):
    rendered = render(deep_merge(ON, {"authz": {"port": 9292}}))
    [container], [service] = authz_ports(rendered)
    assert container == {"name": "authz", "containerPort": 9292, "protocol": "TCP"}
    assert service["port"] == 9292 and service["appProtocol"] == "http"
    assert port_number(rendered.container(), service["targetPort"]) == 9292
    # The proxy port is still the Service's first port, unchanged.
    first = rendered.one("Service", f"{RELEASE}-zambda-guard")["spec"]["ports"][0]
    assert (first["name"], first["targetPort"]) == ("http", "proxy")


def test_with_https_on_the_proxy_port(render, tmp_path):
    """tls.enabled makes the proxy port HTTPS; the decision port stays plain
    HTTP (zambda-guard serves it without TLS), and check accepts both."""
    values = deep_merge(VALUE_SETS["edge-tls"], {"authz": {"enabled": True}})
    rendered = render(values)
    ports = {p["name"]: p for p in rendered.one("Service", f"{RELEASE}-zambda-guard")["spec"]["ports"]}
    assert (ports["https"]["port"], ports["https"]["appProtocol"]) == (443, "https")
    assert (ports["authz"]["port"], ports["authz"]["appProtocol"]) == (9191, "http")
    assert "tls" in rendered.config() and rendered.config()["authz_listen"] == "0.0.0.0:9191"
    result = run_check(materialize(rendered, tmp_path, TLS_OBJECTS))
    assert result.returncode == 0, (result.stdout, result.stderr)


def test_switch_rolls_the_pods(render):
    """The config changes, so does its checksum on the pod template."""
    assert render(ON).checksum() != render(STANDALONE).checksum()


def test_network_policy_admits_authz_from_its_own_peers(render):
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    values = deep_merge(ON, {"networkPolicy": {"authzFrom": peers, "proxyFrom": [{"podSelector": {}}]}})
    rules = render(values).one("NetworkPolicy")["spec"]["ingress"]
    by_port = {r["ports"][0]["port"]: r for r in rules}
    assert sorted(by_port) == [8080, 9191, 9901]
    assert by_port[9191]["from"] == peers
    assert by_port[8080]["from"] == [{"podSelector": {}}]
    assert "from" not in by_port[9901]


def test_metrics_stay_on_the_admin_port(render):
    rendered = render(VALUE_SETS["standalone-authz"])
    metrics = rendered.one("Service", f"{RELEASE}-zambda-guard-metrics")["spec"]["ports"]
    assert [p["targetPort"] for p in metrics] == ["admin"]
    assert rendered.one("ServiceMonitor")["spec"]["endpoints"][0]["port"] == "admin"
    probes = rendered.container()
    assert probes["readinessProbe"]["httpGet"]["port"] == "admin"


def test_notes_show_the_annotations_and_warn_without_peers(render):
    notes = render(ON).notes
    url = f"http://{RELEASE}-zambda-guard.{NAMESPACE}.svc.cluster.local:9191/"
    assert f"nginx.ingress.kubernetes.io/auth-url: {url}" in notes
    assert "auth-response-headers: " + ",".join(IDENTITY_HEADERS) in notes
    assert "WARNING: networkPolicy.authzFrom is empty" in notes
    assert "WARNING" not in render(VALUE_SETS["standalone-authz"]).notes


def test_rendered_output_is_pinned(render):
    assert_golden("standalone-authz", render(VALUE_SETS["standalone-authz"]).text())


# --- zambda-guard check -----------------------------------------------------

@pytest.mark.parametrize("values", [
    {"authz": {"source": "original_uri", "port": 9000}},
    {"authz": {"source": "forwarded"}},
    {"authz": {"source": "request", "pathPrefix": "/authz"}},
])
def test_check_accepts_every_source(render, tmp_path, values):
    config = materialize(render(deep_merge(ON, values)), tmp_path)
    result = run_check(config)
    assert result.returncode == 0, (result.stdout, result.stderr, config.read_text())


def test_check_reads_the_rendered_authz_keys(render, tmp_path):
    """The check above can fail on these keys: the rendered config without
    `authz.source` (which the product requires with `authz_listen`) is refused."""
    config = materialize(render(ON), tmp_path)
    data = yaml.safe_load(config.read_text())
    del data["authz"]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    result = run_check(config)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "authz.source" in result.stdout + result.stderr


# --- refused values ---------------------------------------------------------

SCHEMA_REFUSALS = {
    "sidecar mode": ({"authz": {"enabled": True}}, ["/mode", "/authz/enabled"]),
    "embedded mode": ({"mode": "embedded", "authz": {"enabled": True}}, ["/mode", "/authz/enabled"]),
    "unknown source": (deep_merge(ON, {"authz": {"source": "x_forwarded"}}), ["/authz/source"]),
    "port out of range": (deep_merge(ON, {"authz": {"port": 70000}}), ["/authz/port"]),
    "port as a string": (deep_merge(ON, {"authz": {"port": "9191"}}), ["/authz/port"]),
    "prefix without a slash": (
        deep_merge(ON, {"authz": {"source": "request", "pathPrefix": "authz"}}), ["/authz/pathPrefix"]),
    "unknown authz key": (deep_merge(ON, {"authz": {"listen": "0.0.0.0:9191"}}), ["listen"]),
    "authz_listen set in config": (deep_merge(STANDALONE, {"config": {"authz_listen": "0.0.0.0:9191"}}),
                                   ["authz_listen"]),
    "authzFrom not a list": (deep_merge(ON, {"networkPolicy": {"authzFrom": {"podSelector": {}}}}),
                             ["/networkPolicy/authzFrom"]),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_REFUSALS))
def test_schema_refuses(render, case):
    values, wheres = SCHEMA_REFUSALS[case]
    with pytest.raises(helm.HelmValuesError) as err:
        render(values)
    for where in wheres:
        assert where in str(err.value), str(err.value)


def test_sidecar_refusal_is_about_the_switch(render):
    """Without the switch, the same sidecar values render: the refusal above
    comes from authz.enabled, not from something else in them."""
    assert "authz_listen" not in render({"authz": {"enabled": False, "source": "request"}}).config()


@pytest.mark.parametrize("values, message", [
    ({"authz": {"port": 8080}}, "authz.port 8080 is already the proxy port"),
    ({"authz": {"port": 9901}}, "authz.port 9901 is already the proxy port (config.listen) or the admin port"),
    ({"service": {"port": 9191}}, "authz.port 9191 is also the Service's proxy port (service.port)"),
    ({"authz": {"pathPrefix": "/authz"}}, "authz.pathPrefix applies only to authz.source=request (it is original_url)"),
    ({"service": {"type": "LoadBalancer"}}, "service.type LoadBalancer would open it outside the cluster"),
    ({"service": {"type": "NodePort"}}, "service.type NodePort would open it outside the cluster"),
])
def test_render_refuses(render, values, message):
    with pytest.raises(helm.HelmRenderError) as err:
        render(deep_merge(ON, values))
    assert message in str(err.value)


def test_public_service_types_render_without_the_switch(render):
    """The service.type refusal is the switch's: a LoadBalancer alone renders."""
    rendered = render(deep_merge(STANDALONE, {"service": {"type": "LoadBalancer"}}))
    assert rendered.one("Service")["spec"]["type"] == "LoadBalancer"


# --- README -----------------------------------------------------------------

def test_readme_shows_the_ingress_nginx_annotations():
    section = README[README.index("### Decision service for ingress-nginx"):README.index("## Configuration")]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, flags=re.S)]
    [ingress] = [b for b in blocks if b.get("kind") == "Ingress"]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-url"] == (
        "http://<release>-zambda-guard.<namespace>.svc.cluster.local:9191/")
    assert notes["nginx.ingress.kubernetes.io/auth-method"] == "GET"
    assert notes["nginx.ingress.kubernetes.io/auth-response-headers"].split(",") == IDENTITY_HEADERS
    # The values block of the section renders and names the default port.
    [values] = [b for b in blocks if b.get("mode") == "standalone"]
    assert values["authz"]["port"] == 9191
    for needle in ("X-Original-URL", "X-Original-Method", "Keep the decision port private",
                   "networkPolicy.authzFrom", "`ClusterIP`"):
        assert needle in section, needle


def test_readme_values_block_renders(render):
    section = README[README.index("### Decision service for ingress-nginx"):README.index("## Configuration")]
    [values] = [b for b in (yaml.safe_load(x) for x in re.findall(r"```yaml\n(.*?)```", section, flags=re.S))
                if b.get("mode") == "standalone"]
    rendered = render(values)
    assert rendered.config()["authz"] == {"source": "original_url"}
    assert rendered.one("NetworkPolicy")["spec"]["ingress"][2]["from"] == values["networkPolicy"]["authzFrom"]
