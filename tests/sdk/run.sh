#!/usr/bin/env bash
# The Oystehr SDK end-to-end test: installs the pinned SDK (npm ci) and runs
# the node:test suite against the proxy binary. Set ZAMBDA_GUARD_BIN to test
# another build (default: <repo>/target/debug/zambda-guard). Needs Node >= 18
# and npm; the first run downloads the SDK from the npm registry.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
exec node --test
