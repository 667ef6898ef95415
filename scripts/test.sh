#!/usr/bin/env bash
# Runs every test of zambda-guard:
#   1. the Rust unit and end-to-end tests (cargo nextest, or cargo test);
#   2. the example policy tests, with `zambda-guard test`;
#   3. the fuzz targets over their kept corpora and crash reproducers;
#   4. the Oystehr SDK end-to-end test (Node, npm);
#   5. the Helm chart tests (Python, pip).
# Installs the npm and Python packages it needs. Needs cmake (pingora's
# zlib-ng build), a C compiler, Node >= 18 with npm, Python 3 with pip, and
# nginx (Debian's nginx-light: the decision service is tested behind it).
# SKIP_FUZZ=1 skips step 3 (its first build takes about 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi

bin="$PWD/target/debug/zambda-guard"
echo "== policy tests"
"$bin" test --config config.yaml policies
"$bin" test --config examples/oystehr-project/config.yaml examples/oystehr-project

if [ -z "${SKIP_FUZZ:-}" ]; then
  echo "== fuzz regressions"
  ./scripts/fuzz-regress.sh
fi

echo "== Oystehr SDK"
ZAMBDA_GUARD_BIN="$bin" bash tests/sdk/run.sh

echo "== Helm chart"
ZAMBDA_GUARD_BIN="$bin" bash tests/chart/run.sh
