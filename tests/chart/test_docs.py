"""The chart README documents every value and what a user must know; the
Dockerfile builds the image the chart expects."""

from __future__ import annotations

import re

import yaml

import values_table
from chartlib import CHART_DIR, REPO

README = (CHART_DIR / "README.md").read_text()
VALUES_TEXT = (CHART_DIR / "values.yaml").read_text()


def table_rows() -> set[str]:
    start = README.index(values_table.START)
    end = README.index(values_table.END)
    return set(re.findall(r"^\| `([^`]+)` \|", README[start:end], flags=re.M))


def leaf_paths(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaf_paths(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_values_table_is_current():
    assert values_table.readme_with_table(README, VALUES_TEXT) == README, (
        "the README's values table is out of date: run python3 tests/chart/values_table.py")


def test_every_value_is_documented():
    rows = table_rows()
    values = yaml.safe_load(VALUES_TEXT)
    undocumented = []
    for path in leaf_paths(values):
        parts = path.split(".")
        if not any(".".join(parts[:i]) in rows for i in range(1, len(parts) + 1)):
            undocumented.append(path)
    assert undocumented == [], "values without a `# --` comment in values.yaml"
    for row in rows:
        values_table.lookup(values, row)  # every row names a real value (KeyError otherwise)


def test_readme_covers_what_users_need():
    for needle in (
        "## Sidecar mode", "## Standalone mode", "mode: standalone", "`embedded`",
        "Bind your function to 127.0.0.1", "127.0.0.1",
        "reloads without a restart", "..data", "subPath",
        '{{- include "zambda-guard.container" $zg | nindent 8 }}',
        "hmacSecrets", "terminationGracePeriodSeconds", "Dockerfile",
        "ZambdaGuardPolicyReloadFailing", "ZambdaGuardJwksStale", "ZambdaGuardDenyRateHigh",
        "ZambdaGuard5xxRateHigh", "ZambdaGuardUpstreamLatencyHigh", "telemetry.otlpEndpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT", "grafana_dashboard", "tests/chart/run.sh",
        "## TLS", "secretName: labs-zambda-guard-tls", "cert-manager", "appProtocol: https",
        "backend-protocol: HTTPS", "upstreamCA:", "config.upstream.ca_file",
        "a rotated CA reaches the pods", "ZG_UPDATE_GOLDEN",
    ):
        assert needle in README, needle


def test_dockerfile():
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile, flags=re.M | re.I)
    assert len(stages) >= 2, "multi-stage build"
    assert stages[0][0].startswith("rust:") and "bookworm" in stages[0][0]
    assert "ARG RUST_VERSION=1.95" in dockerfile
    assert re.search(r"apt-get install[^\n]*cmake", dockerfile), "pingora's zlib-ng needs cmake"
    assert re.search(r"cargo build[^\n]*--locked[^\n]*--profile dist", dockerfile)
    runtime = dockerfile[dockerfile.rindex("\nFROM "):]
    assert "debian12" in runtime.split("\n")[1] or "slim" in runtime.split("\n")[1]
    assert "/usr/local/bin/zambda-guard" in runtime
    assert re.search(r"^USER 65532(:65532)?$", runtime, flags=re.M)
    assert 'ENTRYPOINT ["zambda-guard"]' in runtime
    assert 'CMD ["run", "--config", "/etc/zambda-guard/config.yaml"]' in runtime
    # The chart's securityContext names the image's user.
    values = yaml.safe_load(VALUES_TEXT)
    assert values["securityContext"]["runAsUser"] == 65532
    # What the image copies exists.
    for source in re.findall(r"^COPY (?:--chown=\S+ )?(?!--from)(\S+) ", runtime, flags=re.M):
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which is missing"


def test_dockerignore():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"target", ".git", "helm"} <= ignored
    # Nothing the build needs is excluded.
    for needed in ("src", "Cargo.toml", "Cargo.lock", "config.yaml", "policies"):
        assert needed not in ignored
