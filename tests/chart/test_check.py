"""The config.yaml the chart renders, with the chart's policies, passes
`zambda-guard check`. The binary comes from ZAMBDA_GUARD_BIN, else
<repo>/target/debug/zambda-guard; without it these tests fail (they do not
skip): a chart whose config the product refuses is broken."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from chartlib import REPO, VALUE_SETS

DEFAULT_BIN = REPO / "target" / "debug" / "zambda-guard"
HMAC_SECRET = "x" * 48  # zambda-guard wants at least 32 bytes


def binary() -> Path:
    path = Path(os.environ.get("ZAMBDA_GUARD_BIN") or DEFAULT_BIN)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"zambda-guard binary not found at {path}: build it first (`cargo build` in {REPO}) "
            "or point ZAMBDA_GUARD_BIN at it. The chart's rendered config must pass `zambda-guard check`.",
            pytrace=False,
        )
    return path


def materialize(rendered, root: Path) -> Path:
    """Write what a pod would see: config.yaml, and the policies directory the
    ConfigMap volume would hold. `policies.dir` is repointed at that directory."""
    config = rendered.config()
    policies = root / "policies"
    policies.mkdir()
    for name, content in rendered.config_map("-policies")["data"].items():
        (policies / name).write_text(content)
    config["policies"]["dir"] = str(policies)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_check(config: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ZG_HMAC_INTERNAL=HMAC_SECRET)
    return subprocess.run([str(binary()), "check", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("case", ["default", "sidecar", "standalone"])
def test_rendered_config_and_policies_pass_check(render, tmp_path, case):
    config = materialize(render(VALUE_SETS[case]), tmp_path)
    result = run_check(config)
    assert result.returncode == 0, (
        f"`zambda-guard check` refused the chart's {case} config (exit {result.returncode}):\n"
        f"--- config.yaml\n{config.read_text()}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def test_check_refuses_a_broken_policy_set(render, tmp_path):
    """The check above can fail: the same config with a policy file naming an
    undefined role is refused with exit code 2."""
    config = materialize(render(), tmp_path)
    (tmp_path / "policies" / "broken.yaml").write_text(
        "actors:\n  - subject: someone@clients\n    roles: [no-such-role]\n")
    result = run_check(config)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
