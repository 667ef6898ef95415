#!/usr/bin/env bash
# What traces cost: one zambda-guard (threads: 1) in front of the fixed
# nginx backend under the comparison's load (`wrk -t1 -c64`, RS256 token
# repeated, every request allowed, the default `log.decisions: denied`), in
# these variants, alternating within each round:
#   base     --base PATH: a build without telemetry, for "costs nothing"
#   off      this build, no telemetry configured
#   on-1     telemetry.sample_ratio 1.0 (every request: 3 spans)
#   on-0.01  telemetry.sample_ratio 0.01
# The spans go over OTLP/HTTP to the backend nginx, which answers every
# export with 200 (a collector that accepts everything at once); the
# batch exporter runs on its own thread on the same two cores.
# Prints requests per second (median of the rounds), p50/p99 latency, and
# the proxy's own CPU time per request.
#
# Usage: bench/telemetry.sh --zg PATH [--base PATH] [--rounds 3]
#                           [--duration 10] [--warmup 2] [--keep]
# Needs nginx, wrk and a release build of examples/sign_tokens; loopback only.
set -euo pipefail

ROUNDS=3
DURATION=10
WARMUP=2
KEEP=0
ZG=""
BASE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --zg) ZG="$(realpath "$2")"; shift 2 ;;
    --base) BASE="$(realpath "$2")"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$ZG" ] || { echo "--zg PATH is required" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
SIGN="$ROOT/target/release/examples/sign_tokens"
[ -x "$SIGN" ] || { echo "missing $SIGN (cargo build --release --example sign_tokens)" >&2; exit 1; }
bench_workdir zg-telemetry

take_ports P_BACKEND
backend_conf "$WORK/backend" "$P_BACKEND"
"$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" 2>"$WORK/backend/stderr.log" &
PIDS+=($!)
TOKEN="$("$SIGN" --count 1 --issuer "$ISSUER" --audience "$AUDIENCE" --subject "$SUBJECT" --ttl 7200)"
static_lua "$WORK/exec.lua" "$PATH_EXEC" "Bearer $TOKEN"
cat >>"$WORK/exec.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.1f %.1f %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
EOF

VARIANTS=(off on-1 on-0.01)
[ -n "$BASE" ] && VARIANTS=(base "${VARIANTS[@]}")
declare -A PORT
for v in "${VARIANTS[@]}"; do
  take_ports P P_ADMIN
  PORT[$v]=$P
  zg_config "$WORK/$v" "$P" "$P_ADMIN" "$P_BACKEND"
  binary="$ZG"
  case "$v" in
    base) binary="$BASE" ;;
    on-*) printf 'telemetry:\n  otlp_endpoint: http://127.0.0.1:%s\n  sample_ratio: %s\n' \
            "$P_BACKEND" "${v#on-}" >>"$WORK/$v/config.yaml" ;;
  esac
  "$binary" run --config "$WORK/$v/config.yaml" >"$WORK/$v/out.log" 2>&1 &
  PIDS+=($!)
  echo $! >"$WORK/$v/pid"
  wait_ready "http://127.0.0.1:$P_ADMIN/readyz" || true
done

TICK=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    url="http://127.0.0.1:${PORT[$v]}"
    wrk -t1 -c64 -d"${WARMUP}s" -s "$WORK/exec.lua" "$url" >/dev/null
    pid=$(cat "$WORK/$v/pid")
    before=$(cpu_ticks "$pid")
    line=$(wrk -t1 -c64 -d"${DURATION}s" -s "$WORK/exec.lua" "$url" | grep '^RESULT')
    after=$(cpu_ticks "$pid")
    read -r _ requests micros p50 p99 bad <<<"$line"
    [ "$bad" = 0 ] || echo "$v: $bad non-2xx answers" >&2
    awk -v v="$v" -v r="$round" -v n="$requests" -v us="$micros" -v p50="$p50" -v p99="$p99" \
        -v cpu=$((after - before)) -v tick="$TICK" 'BEGIN {
      printf "%s %d %.0f %.2f %.2f %.2f\n", v, r, n / (us / 1e6), p50 / 1000, p99 / 1000, cpu / tick * 1e6 / n
    }' >>"$WORK/results.txt"
  done
done

echo "variant   req/s (median)  p50 ms  p99 ms  CPU us/req   rounds (req/s)"
for v in "${VARIANTS[@]}"; do
  grep "^$v " "$WORK/results.txt" | sort -k3,3n | awk -v v="$v" -v n="$ROUNDS" '
    { rps[NR] = $3; p50[NR] = $4; p99[NR] = $5; cpu[NR] = $6; all = all " " $3 }
    END { m = int((n + 1) / 2); printf "%-9s %14d %7.2f %7.2f %11.1f  %s\n", v, rps[m], p50[m], p99[m], cpu[m], all }'
done
