#!/usr/bin/env bash
# Runs every test of zambda-guard: the Rust unit and end-to-end tests, and
# the Helm chart tests. Installs the Python packages the chart tests need.
# Needs cmake (pingora's zlib-ng build) and Python 3 with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi

ZAMBDA_GUARD_BIN="$PWD/target/debug/zambda-guard" bash tests/chart/run.sh
