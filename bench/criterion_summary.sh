#!/usr/bin/env bash
# Prints the median of every criterion benchmark last run (from
# target/criterion/*/new/estimates.json), one per line, for
# docs/BENCHMARKS.md. Run `cargo bench --bench decide --bench authn
# --bench route --bench policy_load` first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
find "$ROOT/target/criterion" -path '*/new/estimates.json' | sort | while read -r f; do
  id=$(jq -r '.full_id // empty' "$(dirname "$f")/benchmark.json" 2>/dev/null || true)
  [ -n "$id" ] || id="${f#"$ROOT"/target/criterion/}"
  jq -r --arg id "$id" '.median.point_estimate as $ns
    | (if $ns >= 1e9 then "\($ns / 1e9 * 1000 | round / 1000) s"
       elif $ns >= 1e6 then "\($ns / 1e6 * 10 | round / 10) ms"
       elif $ns >= 1e3 then "\($ns / 1e3 * 100 | round / 100) µs"
       else "\($ns | round) ns" end) as $t
    | "\($id)\t\($t)"' "$f"
done | column -t -s $'\t'
