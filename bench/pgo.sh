#!/usr/bin/env bash
# Profile-guided optimisation (PGO) of the `dist` build of zambda-guard.
#
# Four steps, all from this checkout:
#   gen    instrumented build: RUSTFLAGS=-Cprofile-generate, --profile dist,
#          in a target directory of its own (a full build: RUSTFLAGS change
#          every crate's fingerprint)
#   train  the instrumented binary under the comparison's loads (see
#          bench/compare.sh): one nginx backend, zambda-guard configured by
#          zg_config (bench/lib.sh), `wrk -t1 -c64` for a few seconds each on
#            execute, one RS256 token repeated (token cache hits)
#            execute, a fresh token per request (signature checks)
#            execute, token not forwarded (forward_authorization: false)
#            execute-public
#            refusals: a Zambda the caller may not invoke, no token, a bad
#            signature
#          then SIGINT, so each process writes its .profraw on exit
#   merge  llvm-profdata merge (the toolchain's own, from the llvm-tools
#          component) into one .profdata
#   use    the PGO build: RUSTFLAGS=-Cprofile-use, --profile dist, in a
#          second target directory; the binary is copied to OUT/zambda-guard
#
# The script finds the checkout from its own location: keep it in bench/.
#
# Usage: bench/pgo.sh [--out DIR] [--seconds N] [--steps "gen train merge use"]
#                     [--gen-target-dir DIR] [--use-target-dir DIR]
#                     [--profraw-dir DIR] [--profdata FILE] [--warn-missing]
#   --out DIR          where the PGO binary goes (default target/pgo)
#   --seconds N        seconds of load per training phase (default 3; seven
#                      phases, so about 20 s of load in all)
#   --steps LIST       a subset of the steps, in order (default all four)
#   --gen-target-dir   target directory of the instrumented build
#                      (default target/pgo-gen)
#   --use-target-dir   target directory of the PGO build (default target/pgo-use)
#   --profraw-dir      where the instrumented binary writes its profiles
#                      (default OUT/profraw; emptied before training)
#   --profdata FILE    the merged profile (default OUT/merged.profdata)
#   --warn-missing     pass -pgo-warn-missing-function to LLVM in the use
#                      build (lists functions the training never reached)
# Environment: NICE (default 10) is the niceness of the cargo builds;
# CARGO_FLAGS are extra flags for both builds (e.g. --locked).
# Needs: cargo, rustup's llvm-tools component (`rustup component add
# llvm-tools`), nginx, wrk, curl. Loopback only; every load is bounded by
# --seconds; the builds take as long as two `dist` builds.
set -euo pipefail

SECONDS_PER_PHASE=3
STEPS="gen train merge use"
OUT=""
GEN_TARGET=""
USE_TARGET=""
PROFRAW=""
PROFDATA=""
WARN_MISSING=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --seconds) SECONDS_PER_PHASE="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --gen-target-dir) GEN_TARGET="$2"; shift 2 ;;
    --use-target-dir) USE_TARGET="$2"; shift 2 ;;
    --profraw-dir) PROFRAW="$2"; shift 2 ;;
    --profdata) PROFDATA="$2"; shift 2 ;;
    --warn-missing) WARN_MISSING=1; shift ;;
    -h|--help) sed -n '2,45p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
cd "$ROOT"
abs() { mkdir -p "$(dirname "$1")"; echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
OUT="$(abs "${OUT:-$ROOT/target/pgo}")"
GEN_TARGET="$(abs "${GEN_TARGET:-$ROOT/target/pgo-gen}")"
USE_TARGET="$(abs "${USE_TARGET:-$ROOT/target/pgo-use}")"
PROFRAW="$(abs "${PROFRAW:-$OUT/profraw}")"
PROFDATA="$(abs "${PROFDATA:-$OUT/merged.profdata}")"
mkdir -p "$OUT"
log() { echo "[pgo] $*" >&2; }
step() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# read -a leaves CARGO_EXTRA empty when CARGO_FLAGS is
read -r -a CARGO_EXTRA <<<"${CARGO_FLAGS:-}"
timed_build() { # LABEL RUSTFLAGS TARGET_DIR
  local start=$SECONDS
  log "$1 build (RUSTFLAGS=$2, --target-dir $3)"
  RUSTFLAGS="$2" nice -n "${NICE:-10}" cargo build --quiet ${CARGO_EXTRA[@]+"${CARGO_EXTRA[@]}"} \
    --profile dist --bin zambda-guard --target-dir "$3"
  log "$1 build: $((SECONDS - start)) s"
}

# llvm-profdata must read what this rustc's LLVM writes: take the toolchain's.
HOST="$(rustc -vV | awk '/^host:/ {print $2}')"
PROFDATA_TOOL="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if step merge; then
  [ -x "$PROFDATA_TOOL" ] || { echo "no $PROFDATA_TOOL: rustup component add llvm-tools" >&2; exit 1; }
  RUSTC_LLVM="$(rustc -vV | awk '/^LLVM version:/ {print $3}')"
  TOOL_LLVM="$("$PROFDATA_TOOL" --version | awk '/LLVM version/ {print $3}')"
  case "$TOOL_LLVM" in
    "$RUSTC_LLVM"*) ;;
    *) echo "llvm-profdata is LLVM $TOOL_LLVM, rustc is LLVM $RUSTC_LLVM" >&2; exit 1 ;;
  esac
fi

# --- gen: instrumented build ----------------------------------------------------
GEN_BIN="$GEN_TARGET/dist/zambda-guard"
if step gen; then
  timed_build instrumented "-Cprofile-generate=$PROFRAW" "$GEN_TARGET"
fi

# --- train: the comparison's loads on the instrumented binary --------------------
if step train; then
  [ -x "$GEN_BIN" ] || { echo "missing $GEN_BIN (run the gen step)" >&2; exit 1; }
  for tool in wrk curl; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
  NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
  [ -x "$NGINX" ] || { echo "missing nginx" >&2; exit 1; }
  SIGN="$ROOT/target/release/examples/sign_tokens"
  [ -x "$SIGN" ] || nice -n "${NICE:-10}" cargo build --quiet --release --example sign_tokens
  # Build scripts and proc macros of the gen build are instrumented too and
  # write profiles while it runs: only the training's profiles count.
  rm -rf "$PROFRAW"
  mkdir -p "$PROFRAW"

  bench_workdir zg-pgo
  take_ports P_BACKEND P_ZG P_ZG_ADMIN P_FRESH P_FRESH_ADMIN P_LOCAL P_LOCAL_ADMIN
  backend_conf "$WORK/backend" "$P_BACKEND"
  zg_config "$WORK/zg" "$P_ZG" "$P_ZG_ADMIN" "$P_BACKEND" 100000
  zg_config "$WORK/zg-fresh" "$P_FRESH" "$P_FRESH_ADMIN" "$P_BACKEND" 1000
  zg_config "$WORK/zg-local" "$P_LOCAL" "$P_LOCAL_ADMIN" "$P_BACKEND" 100000 false

  log "signing 1 + 4000 RS256 tokens"
  TOKEN="$("$SIGN" --count 1 --issuer "$ISSUER" --audience "$AUDIENCE" --subject "$SUBJECT" --ttl 7200)"
  "$SIGN" --count 4000 --issuer "$ISSUER" --audience "$AUDIENCE" --subject "$SUBJECT" \
    --ttl 7200 >"$WORK/tokens.txt"
  BAD_TOKEN="$(bad_signature "$TOKEN")"

  static_lua "$WORK/exec.lua" "$PATH_EXEC" "Bearer $TOKEN"
  static_lua "$WORK/public.lua" "$PATH_PUBLIC" "Bearer $TOKEN"
  static_lua "$WORK/other.lua" "/v1/zambda/other-fn/execute" "Bearer $TOKEN"
  static_lua "$WORK/none.lua" "$PATH_EXEC"
  static_lua "$WORK/badsig.lua" "$PATH_EXEC" "Bearer $BAD_TOKEN"
  fresh_tokens_lua "$WORK/fresh.lua" "$WORK/tokens.txt" "$PATH_EXEC"

  "$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" 2>"$WORK/backend/stderr.log" &
  PIDS+=($!)
  ZG_PIDS=()
  for z in zg zg-fresh zg-local; do
    (cd "$WORK/$z" && exec "$GEN_BIN" run --config "$WORK/$z/config.yaml") >"$WORK/$z/out.log" 2>&1 &
    ZG_PIDS+=($!)
    PIDS+=($!)
  done
  for admin in "$P_ZG_ADMIN" "$P_FRESH_ADMIN" "$P_LOCAL_ADMIN"; do
    wait_ready "http://127.0.0.1:$admin/readyz" 200 ||
      { echo "zambda-guard not ready on admin port $admin (logs in $WORK)" >&2; KEEP=1; exit 1; }
  done
  # the loads must take the paths they are meant to train
  AUTH=(-H "Authorization: Bearer $TOKEN")
  expect_status "execute" 200 "http://127.0.0.1:$P_ZG$PATH_EXEC" "${AUTH[@]}"
  expect_status "execute-public" 200 "http://127.0.0.1:$P_ZG$PATH_PUBLIC" "${AUTH[@]}"
  expect_status "token not forwarded" 200 "http://127.0.0.1:$P_LOCAL$PATH_EXEC" "${AUTH[@]}"
  expect_status "fresh token" 200 "http://127.0.0.1:$P_FRESH$PATH_EXEC" \
    -H "Authorization: Bearer $(sed -n 7p "$WORK/tokens.txt")"
  expect_status "no token" 401 "http://127.0.0.1:$P_ZG$PATH_EXEC"
  expect_status "bad signature" 401 "http://127.0.0.1:$P_ZG$PATH_EXEC" -H "Authorization: Bearer $BAD_TOKEN"

  train() { # LABEL SCRIPT URL
    local out
    out=$(wrk -t1 -c64 -d"${SECONDS_PER_PHASE}s" -s "$WORK/$2.lua" "$3" 2>&1 || true)
    log "train $1: $(echo "$out" | awk '/Requests\/sec/ {print $2 " req/s"} /Non-2xx/ {print "(" $NF " non-2xx)"}' | tr '\n' ' ')"
  }
  log "training: 7 phases of wrk -t1 -c64 -d${SECONDS_PER_PHASE}s"
  train "execute, repeated token" exec "http://127.0.0.1:$P_ZG$PATH_EXEC"
  train "execute, fresh tokens" fresh "http://127.0.0.1:$P_FRESH$PATH_EXEC"
  train "execute, token not forwarded" exec "http://127.0.0.1:$P_LOCAL$PATH_EXEC"
  train "execute-public" public "http://127.0.0.1:$P_ZG$PATH_PUBLIC"
  train "refused: other Zambda" other "http://127.0.0.1:$P_ZG/v1/zambda/other-fn/execute"
  train "refused: no token" none "http://127.0.0.1:$P_ZG$PATH_EXEC"
  train "refused: bad signature" badsig "http://127.0.0.1:$P_ZG$PATH_EXEC"

  # SIGINT is a fast shutdown; main returns and the profile is written at exit
  for pid in "${ZG_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${ZG_PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "zambda-guard $pid did not stop on SIGINT within 10 s" >&2
      KEEP=1
      exit 1
    fi
    wait "$pid" 2>/dev/null || true
  done
  n=$(find "$PROFRAW" -name '*.profraw' | wc -l)
  [ "$n" -gt 0 ] || { echo "no .profraw written in $PROFRAW" >&2; KEEP=1; exit 1; }
  log "training wrote $n profile(s), $(du -sh "$PROFRAW" | cut -f1), in $PROFRAW"
fi

# --- merge ------------------------------------------------------------------------------
if step merge; then
  "$PROFDATA_TOOL" merge -o "$PROFDATA" "$PROFRAW"
  log "merged: $PROFDATA ($(du -h "$PROFDATA" | cut -f1))"
fi

# --- use: the PGO build ---------------------------------------------------------------
if step use; then
  [ -s "$PROFDATA" ] || { echo "missing $PROFDATA (run the merge step)" >&2; exit 1; }
  flags="-Cprofile-use=$PROFDATA"
  [ "$WARN_MISSING" = 0 ] || flags="$flags -Cllvm-args=-pgo-warn-missing-function"
  timed_build PGO "$flags" "$USE_TARGET"
  install -m 0755 "$USE_TARGET/dist/zambda-guard" "$OUT/zambda-guard"
  log "PGO binary: $OUT/zambda-guard"
fi
