"""values.schema.json makes bad values fail at render time, before anything
reaches a cluster, with a message naming the offending key."""

from __future__ import annotations

import json

import helm_python as helm
import pytest

from chartlib import CHART_DIR, VALUE_SETS

BAD_VALUES = {
    "unknown top-level key": ({"replicas": 3}, "replicas"),
    "unknown mode": ({"mode": "daemonset"}, "/mode"),
    "replicaCount as a string": ({"replicaCount": "two"}, "/replicaCount"),
    "unknown config key": ({"config": {"listen_addr": "0.0.0.0:8080"}}, "listen_addr"),
    "unknown nested config key": ({"config": {"upstream": {"adress": "10.0.0.1:80"}}}, "adress"),
    "listen without a port": ({"config": {"listen": "0.0.0.0"}}, "/config/listen"),
    "bad enforcement": ({"config": {"enforcement": "audit"}}, "/config/enforcement"),
    "cors typo": ({"config": {"cors": {"allowed_origins": [], "max_age": 5}}}, "max_age"),
    "issuer without audiences": (
        {"config": {"auth": {"issuers": [{"issuer": "https://a.example.com/", "jwks_url": "https://a.example.com/k"}]}}},
        "audiences",
    ),
    "no issuers": ({"config": {"auth": {"issuers": []}}}, "/config/auth/issuers"),
    "algorithm none": (
        {"config": {"auth": {"issuers": [{"issuer": "i", "audiences": ["a"], "algorithms": ["none"]}]}}},
        "algorithms",
    ),
    "policies.dir is the chart's": ({"config": {"policies": {"dir": "/elsewhere"}}}, "dir"),
    "hidden policy file": ({"policies": {"files": {".hidden.yaml": "zambdas: []"}}}, "'.hidden.yaml' does not match"),
    "policy file without extension": ({"policies": {"files": {"catalog": "zambdas: []"}}}, "'catalog' does not match"),
    "policy file as a list": ({"policies": {"files": {"a.yaml": ["x"]}}}, "/policies/files"),
    "hmac secret without key": ({"hmacSecrets": [{"env": "ZG_HMAC", "secretName": "s"}]}, "key"),
    "hmac env name with a dash": (
        {"hmacSecrets": [{"env": "ZG-HMAC", "secretName": "s", "key": "k"}]}, "/hmacSecrets/0/env"),
    "function port out of range": ({"function": {"port": 70000}}, "/function/port"),
    "function port as a string": ({"function": {"port": "3000"}}, "/function/port"),
    "image tag with a colon": ({"image": {"tag": "a:b"}}, "/image/tag"),
    "bad digest": ({"image": {"digest": "md5:abc"}}, "/image/digest"),
    "bad pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "service type": ({"service": {"type": "ExternalName"}}, "/service/type"),
    "negative preStop": ({"shutdown": {"preStopSleepSeconds": -1}}, "/shutdown/preStopSleepSeconds"),
    "probe typo": ({"probes": {"liveness": {"periodSecond": 5}}}, "periodSecond"),
    "serviceMonitor interval": ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval"),
    "telemetry endpoint without a scheme": (
        {"telemetry": {"otlpEndpoint": "otel-collector:4318"}}, "/telemetry/otlpEndpoint"),
    "telemetry typo": ({"telemetry": {"endpoint": "http://c:4318"}}, "endpoint"),
    "sample ratio above 1": ({"config": {"telemetry": {"sample_ratio": 2}}}, "/config/telemetry/sample_ratio"),
    "deny ratio above 1": ({"prometheusRule": {"denyRatio": 5}}, "/prometheusRule/denyRatio"),
    "sidecar without a function image": ({"function": {"image": None}}, "image"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_violations_fail_the_render(render, case):
    values, where = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError) as err:
        render(values)
    message = str(err.value)
    assert "schema" in message or "zambda-guard" in message
    assert where in message, message


@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_good_values_pass_the_schema(chart, case):
    chart.validate_schema(chart.merge_values(VALUE_SETS[case]))


def test_defaults_pass_the_schema(chart):
    chart.validate_schema(chart.values)


def test_schema_is_closed(chart):
    """Every object the chart owns rejects unknown keys, so typos fail."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    open_objects = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        props = node.get("properties")
        if props is not None and node.get("additionalProperties") is not False:
            open_objects.append(path)
        for key, child in (props or {}).items():
            walk(child, f"{path}.{key}")

    walk(schema, "")
    assert open_objects == []


def test_every_default_value_is_described_by_the_schema(chart):
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    missing = [key for key in chart.values if key not in schema["properties"]]
    assert missing == []
