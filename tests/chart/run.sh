#!/usr/bin/env bash
# Chart tests: install the pinned Python packages, then run pytest on tests/chart.
# Extra arguments go to pytest (e.g. -k check). Exits with pytest's exit code.
#
# The `zambda-guard check` test needs the binary: ZAMBDA_GUARD_BIN, or
# <repo>/target/debug/zambda-guard (`cargo build` first).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -r "$here/requirements.txt"

exec "$python" -m pytest -p no:cacheprovider "$here" "$@"
