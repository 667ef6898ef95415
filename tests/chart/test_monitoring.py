"""The Prometheus Operator objects and the Grafana dashboard. kubernetes-validate
has no CRD schemas, so the ServiceMonitor and PrometheusRule are checked here,
field by field, against what the operator (monitoring.coreos.com/v1) accepts."""

from __future__ import annotations

import json
import re

import pytest

from chartlib import VALUE_SETS

# The product's metrics (SPEC §6); histograms also expose _bucket/_sum/_count.
METRICS = {
    "zambda_guard_requests_total", "zambda_guard_request_duration_seconds",
    "zambda_guard_decision_duration_seconds", "zambda_guard_upstream_responses_total",
    "zambda_guard_policy_reloads_total", "zambda_guard_policy_generation",
    "zambda_guard_policy_last_reload_success", "zambda_guard_policy_rules",
    "zambda_guard_policy_last_reload_timestamp_seconds", "zambda_guard_jwks_refresh_total",
    "zambda_guard_jwks_keys", "zambda_guard_jwks_last_success_timestamp_seconds",
    "zambda_guard_token_cache_hits_total", "zambda_guard_token_cache_misses_total",
    "zambda_guard_build_info", "zambda_guard_rate_limited_total",
    "zambda_guard_tls_certificate_reloads_total",
    "zambda_guard_tls_certificate_not_after_timestamp_seconds",
    "zambda_guard_upstream_duration_seconds",
}
METRIC_REF = re.compile(r"\bzambda_guard_[a-z_]+")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
ALERTS = {"ZambdaGuardPolicyReloadFailing", "ZambdaGuardJwksStale", "ZambdaGuardDenyRateHigh",
          "ZambdaGuard5xxRateHigh", "ZambdaGuardCertificateExpiringSoon",
          "ZambdaGuardUpstreamLatencyHigh"}


def metric_names(expr: str) -> set[str]:
    names = set()
    for ref in METRIC_REF.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if ref.endswith(suffix) and ref[: -len(suffix)] in METRICS:
                ref = ref[: -len(suffix)]
        names.add(ref)
    return names


def assert_balanced(expr: str):
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    in_string = False
    for ch in expr:
        if ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            assert stack and stack.pop() == pairs[ch], f"unbalanced {ch!r} in {expr!r}"
    assert not stack and not in_string, f"unbalanced expression {expr!r}"


def assert_promql_sane(expr: str):
    assert_balanced(expr)
    assert "{{" not in expr and "}}" not in expr, f"unrendered template in {expr!r}"
    assert "{," not in expr and ",}" not in expr, f"empty matcher in {expr!r}"
    used = metric_names(expr)
    assert used, f"no zambda-guard metric in {expr!r}"
    assert used <= METRICS, f"unknown metrics {used - METRICS} in {expr!r}"


@pytest.fixture(scope="module")
def observability(render):
    return render(VALUE_SETS["observability"])


def test_service_monitor(observability):
    monitor = observability.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels",
                         "podTargetLabels", "sampleLimit"}
    assert spec["namespaceSelector"] == {"matchNames": ["apps"]}
    # It selects exactly the metrics Service, whose port it names.
    services = [s for s in observability.of_kind("Service")
                if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in services] == ["demo-zambda-guard-metrics"]
    metrics_service = services[0]
    [endpoint] = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings",
                             "metricRelabelings", "honorLabels"}
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
    [port] = [p for p in metrics_service["spec"]["ports"] if p["name"] == endpoint["port"]]
    proxy = observability.container()
    admin = [p for p in proxy["ports"] if p["name"] == port["targetPort"]]
    assert admin and admin[0]["containerPort"] == 9901
    # The metrics Service is not the way in: the main Service still reaches the proxy only.
    main = observability.one("Service", "demo-zambda-guard")
    assert [p["targetPort"] for p in main["spec"]["ports"]] == ["proxy"]


def test_prometheus_rule(observability):
    rule = observability.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [group] = rule["spec"]["groups"]
    assert set(group) == {"name", "rules"}
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == ALERTS
    for name, alert in alerts.items():
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert isinstance(alert["expr"], str)
        assert_promql_sane(alert["expr"])
        assert DURATION.match(alert["for"]), name
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        # Series are scoped to this release.
        assert 'namespace="apps"' in alert["expr"] and 'pod=~"demo-zambda-guard-.+"' in alert["expr"], name
        # Alertmanager templates are passed through, not eaten by Helm.
        assert "{{ $labels." in alert["annotations"]["description"], name
    assert metric_names(alerts["ZambdaGuardPolicyReloadFailing"]["expr"]) == {"zambda_guard_policy_last_reload_success"}
    assert "zambda_guard_jwks_last_success_timestamp_seconds" in metric_names(alerts["ZambdaGuardJwksStale"]["expr"])
    assert 'decision=~"deny|unauthenticated"' in alerts["ZambdaGuardDenyRateHigh"]["expr"]
    assert 'class=~"5xx|error"' in alerts["ZambdaGuard5xxRateHigh"]["expr"]
    assert "> 0.25" in alerts["ZambdaGuardDenyRateHigh"]["expr"]
    latency = alerts["ZambdaGuardUpstreamLatencyHigh"]
    assert metric_names(latency["expr"]) == {"zambda_guard_upstream_duration_seconds"}
    assert "histogram_quantile(0.99," in latency["expr"] and ") > 5\n" in latency["expr"]
    assert "> 0.1" in latency["expr"], "quiet below the minimum request rate"
    expiry = alerts["ZambdaGuardCertificateExpiringSoon"]
    assert metric_names(expiry["expr"]) == {"zambda_guard_tls_certificate_not_after_timestamp_seconds"}
    assert "- time() < 1209600" in expiry["expr"]
    assert "under 14 days" in expiry["annotations"]["description"]


def test_prometheus_rule_settings(render):
    rule = render({"prometheusRule": {
        "enabled": True, "selector": 'job="zg"', "severity": "critical", "denyRatio": 0.5,
        "additionalRules": [{"alert": "Extra", "expr": "vector(1)"}],
    }}).one("PrometheusRule")
    rules = rule["spec"]["groups"][0]["rules"]
    assert rules[-1] == {"alert": "Extra", "expr": "vector(1)"}
    for alert in rules[:-1]:
        assert 'job="zg"' in alert["expr"] and "namespace=" not in alert["expr"]
        assert alert["labels"]["severity"] == "critical"
    assert "> 0.5" in rules[2]["expr"]


def test_embedded_mode_rules_select_by_namespace(render):
    rule = render(VALUE_SETS["embedded"]).one("PrometheusRule")
    for alert in rule["spec"]["groups"][0]["rules"]:
        assert_promql_sane(alert["expr"])
        assert 'namespace="apps"' in alert["expr"] and "pod=~" not in alert["expr"]


def test_grafana_dashboard(observability):
    config_map = observability.config_map("-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "zambda-guard"}
    dashboard = json.loads(config_map["data"]["zambda-guard.json"])
    assert dashboard["title"] == "zambda-guard" and dashboard["uid"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = {}
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert_promql_sane(target["expr"])
            assert target["datasource"]["uid"] == "${datasource}"
            exprs.setdefault(panel["title"], []).append(target["expr"])
    titles = " | ".join(exprs).lower()
    assert "request rate by decision" in titles
    by_decision = exprs["Request rate by decision"]
    assert any("by (decision)" in e and "zambda_guard_requests_total" in e for e in by_decision)
    latency = next(v for k, v in exprs.items() if k.lower().startswith("latency"))
    quantiles = sorted(float(re.search(r"histogram_quantile\(([0-9.]+)", e).group(1)) for e in latency)
    assert quantiles == [0.5, 0.95, 0.99]
    assert all("zambda_guard_request_duration_seconds_bucket" in e for e in latency)
    all_exprs = " ".join(e for v in exprs.values() for e in v)
    assert "zambda_guard_policy_reloads_total" in all_exprs
    assert "time() - max by (issuer) (zambda_guard_jwks_last_success_timestamp_seconds" in all_exprs
    upstream = exprs["Upstream latency (p50, p95, p99)"]
    quantiles = sorted(float(re.search(r"histogram_quantile\(([0-9.]+)", e).group(1)) for e in upstream)
    assert quantiles == [0.5, 0.95, 0.99]
    assert all("zambda_guard_upstream_duration_seconds_bucket" in e and "by (upstream, le)" in e
               for e in upstream)
    process = exprs["Process memory and CPU"]
    assert any(e.startswith("max by (pod) (process_resident_memory_bytes{") for e in process)
    # Only zambda-guard's own processes: joined on a series only it exports.
    assert all("and on (namespace, pod, instance) zambda_guard_build_info{" in e for e in process)
    grid = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(grid) == len(set(grid)), "panels overlap"


def test_dashboard_namespace_override(render):
    config_map = render({"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}).config_map("-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"


def test_monitoring_objects_are_optional(render):
    kinds = render().kinds()
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds
    assert all(not c["metadata"]["name"].endswith("-dashboard") for c in render().of_kind("ConfigMap"))
