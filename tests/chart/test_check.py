"""The config.yaml the chart renders, with the chart's policies (and, with
the TLS values, the test certificates where the pod would mount them), passes
`zambda-guard check`. The binary comes from ZAMBDA_GUARD_BIN, else
<repo>/target/debug/zambda-guard; without it these tests fail (they do not
skip): a chart whose config the product refuses is broken."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from chartlib import CONFIG_DIR, HERE, POLICIES_DIR, REPO, VALUE_SETS, mounted_volumes

DEFAULT_BIN = REPO / "target" / "debug" / "zambda-guard"
HMAC_SECRET = "x" * 48  # zambda-guard wants at least 32 bytes
CERTS = HERE / "fixtures" / "tls"  # test-only certificates: see the README there


def cert(name: str) -> str:
    return (CERTS / name).read_text()


# What the cluster would hold for the "edge-tls" and "sidecar-tls" value sets:
# a cert-manager style Secret (tls.crt, tls.key, ca.crt), and the CA of the
# backend's certificate in a ConfigMap (under a key of its own) or a Secret.
TLS_OBJECTS = {
    ("Secret", "zambda-guard-tls"): {"tls.crt": cert("tls.crt"), "tls.key": cert("tls.key"), "ca.crt": cert("ca.crt")},
    ("ConfigMap", "internal-ca-bundle"): {"bundle.pem": cert("ca.crt"), "other.pem": "not read"},
    ("Secret", "function-ca"): {"ca.crt": cert("ca.crt")},
}


def binary() -> Path:
    path = Path(os.environ.get("ZAMBDA_GUARD_BIN") or DEFAULT_BIN)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"zambda-guard binary not found at {path}: build it first (`cargo build` in {REPO}) "
            "or point ZAMBDA_GUARD_BIN at it. The chart's rendered config must pass `zambda-guard check`.",
            pytrace=False,
        )
    return path


def materialize(rendered, root: Path, objects: dict[tuple[str, str], dict[str, str]] | None = None) -> Path:
    """Write what zambda-guard's container would see, under `root`: every
    ConfigMap or Secret volume it mounts becomes the directory at its
    mountPath, as the kubelet would fill it (all keys, or only `items`, each
    at its path). The chart's own ConfigMaps come from the render; other
    objects from `objects`, (kind, name) -> {key: content}. Every path in the
    config that lies under a mount point is moved under `root`. Returns the
    config file's path."""
    objects = dict(objects or {})
    for config_map in rendered.of_kind("ConfigMap"):
        objects[("ConfigMap", config_map["metadata"]["name"])] = config_map["data"]
    mounts = mounted_volumes(rendered.pod_spec(), rendered.container())
    for mount_path, (mount, volume) in mounts.items():
        assert "subPath" not in mount, mount
        directory = root / mount_path.lstrip("/")
        if "configMap" in volume:
            sources = [(("ConfigMap", volume["configMap"]["name"]), volume["configMap"].get("items"))]
        elif "secret" in volume:
            sources = [(("Secret", volume["secret"]["secretName"]), volume["secret"].get("items"))]
        elif "projected" in volume:
            sources = [(("ConfigMap", p["configMap"]["name"]), p["configMap"].get("items"))
                       for p in volume["projected"]["sources"]]
        elif "emptyDir" in volume or "persistentVolumeClaim" in volume:
            directory.mkdir(parents=True)  # what the sync writes into: empty at first
            continue
        else:
            continue
        files = {}
        for source, items in sources:
            assert source in objects, f"the pod mounts {source}, which the test did not provide"
            data = objects[source]
            files.update({i["path"]: data[i["key"]] for i in items} if items else data)
        directory.mkdir(parents=True)
        for name, content in files.items():
            (directory / name).write_text(content)

    def moved(value):
        if isinstance(value, dict):
            return {k: moved(v) for k, v in value.items()}
        if isinstance(value, list):
            return [moved(v) for v in value]
        if isinstance(value, str) and any(value == m or value.startswith(m + "/") for m in mounts):
            return str(root / value.lstrip("/"))
        return value

    config = moved(rendered.config())
    path = root / CONFIG_DIR.lstrip("/") / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_check(config: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ZG_HMAC_INTERNAL=HMAC_SECRET)
    return subprocess.run([str(binary()), "check", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("case", ["default", "sidecar", "standalone", "standalone-authz", "edge-tls", "sidecar-tls"])
def test_rendered_config_and_policies_pass_check(render, tmp_path, case):
    config = materialize(render(VALUE_SETS[case]), tmp_path, TLS_OBJECTS)
    result = run_check(config)
    assert result.returncode == 0, (
        f"`zambda-guard check` refused the chart's {case} config (exit {result.returncode}):\n"
        f"--- config.yaml\n{config.read_text()}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def test_check_refuses_a_broken_policy_set(render, tmp_path):
    """The check above can fail: the same config with a policy file naming an
    undefined role is refused with exit code 2."""
    config = materialize(render(), tmp_path)
    (tmp_path / POLICIES_DIR.lstrip("/") / "broken.yaml").write_text(
        "actors:\n  - subject: someone@clients\n    roles: [no-such-role]\n")
    result = run_check(config)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)


def test_tls_config_points_at_the_files_check_reads(render, tmp_path):
    """zambda-guard check loads the certificate and key where the chart
    mounted the Secret, and the CA where it mounted the ConfigMap's key: a
    Secret whose key does not match its certificate is refused."""
    rendered = render(VALUE_SETS["edge-tls"])
    config = rendered.config()
    assert config["tls"]["cert_file"].startswith("/etc/zambda-guard/")
    assert config["upstream"]["ca_file"].startswith("/etc/zambda-guard/")
    mismatched = dict(TLS_OBJECTS)
    mismatched[("Secret", "zambda-guard-tls")] = {"tls.crt": cert("ca.crt"), "tls.key": cert("tls.key")}
    result = run_check(materialize(rendered, tmp_path, mismatched))
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "does not match the certificate" in result.stdout + result.stderr


def test_upstream_ca_is_read_from_the_mounted_key(render, tmp_path):
    """Only the chosen key of the ConfigMap is mounted, as ca.crt; a bundle
    that is not PEM is refused by check, so the file is really read."""
    broken = dict(TLS_OBJECTS)
    broken[("ConfigMap", "internal-ca-bundle")] = {"bundle.pem": "no certificate here\n"}
    result = run_check(materialize(render(VALUE_SETS["edge-tls"]), tmp_path, broken))
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "upstream.ca_file" in result.stdout + result.stderr
