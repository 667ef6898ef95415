#!/usr/bin/env bash
# Fuzz regression run for CI: builds the cargo-fuzz targets in fuzz/ and runs
# each one over its kept inputs only — the seed corpus fuzz/corpus/<target>/
# and the crash reproducers fuzz/regressions/<target>/ — then stops
# (libFuzzer -runs=0). It fails if any input crashes, panics, leaks or
# times out. A few minutes on a warm cache; the first build of the
# sanitizer-instrumented targets takes about 10 minutes on 2 cores.
#
# FUZZ_SECONDS=N additionally fuzzes each target for N seconds (one worker),
# starting from the kept inputs; new inputs go to a scratch directory, so
# the committed corpora never grow.
#
# Needs cargo-fuzz (installed here from crates.io when missing) and a C
# compiler; fuzzing uses nightly-only flags, enabled on the stable toolchain
# with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=(route_parse policy_load token)
cargo fuzz build --debug-assertions

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

status=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "$scratch/artifacts/$t" "fuzz/regressions/$t"
  if [ -n "${FUZZ_SECONDS:-}" ]; then
    run=(-max_total_time="$FUZZ_SECONDS" -workers=1 -jobs=1)
  else
    run=(-runs=0)
  fi
  echo "== $t: $(find "fuzz/corpus/$t" "fuzz/regressions/$t" -type f | wc -l) kept inputs"
  if ! (cd "$scratch" && cargo fuzz run --fuzz-dir "$OLDPWD/fuzz" --debug-assertions "$t" \
        "$scratch/$t" "$OLDPWD/fuzz/corpus/$t" "$OLDPWD/fuzz/regressions/$t" -- \
        "${run[@]}" -timeout=30 -rss_limit_mb=2048 \
        -artifact_prefix="$scratch/artifacts/$t/"); then
    echo "fuzz-regress: $t FAILED; reproducers:" >&2
    ls -l "$scratch/artifacts/$t" >&2 || true
    mkdir -p "fuzz/artifacts/$t"
    cp "$scratch/artifacts/$t"/* "fuzz/artifacts/$t/" 2>/dev/null || true
    status=1
  fi
done
exit $status
