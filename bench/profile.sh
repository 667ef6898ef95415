#!/usr/bin/env bash
# Where zambda-guard's time goes per request: one zambda-guard (threads: 1)
# in front of the fixed nginx backend, under the comparison's load
# (`wrk -t1 -c64`, RS256 token repeated), sampled with `perf record -e
# cpu-clock` (hardware counters are not available in this VM), then the
# same load under `strace -c` to count system calls per request.
#
# Usage: bench/profile.sh [--zg PATH] [--seconds 5] [--route execute|execute-public]
#                         [--callgrind]
#   --zg PATH     the binary (default target/dist/zambda-guard, else
#                 target/release/zambda-guard)
#   --callgrind   also count instructions per request under valgrind's
#                 callgrind (4 s of wrk -t1 -c4 after a warm-up), for
#                 zambda-guard and, when it was built with the same
#                 profile, the bare pingora proxy (examples/bare_pingora.rs)
#                 on the same load; then zambda-guard's own request phases
#   --keep DIR    copy the callgrind dumps into DIR (for callgrind_annotate)
#   --cg-connections N  wrk connections under callgrind (default 4); with 1
#                 every request takes the same path, so counts repeat to
#                 within ~1 % and small changes can be compared
#   --only-callgrind    skip the perf and strace parts
# Prints: kernel / zambda-guard / libc shares, the top symbols, the
# inclusive share of each proxy phase, and system calls per request.
# Needs perf, strace (and valgrind for --callgrind); loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
ZG=""
SECONDS_=5
ROUTE=execute
CALLGRIND=0
KEEP=""
CG_CONNECTIONS=4
ONLY_CALLGRIND=0
while [ $# -gt 0 ]; do
  case "$1" in
    --zg) ZG="$(realpath "$2")"; shift 2 ;;
    --seconds) SECONDS_="$2"; shift 2 ;;
    --route) ROUTE="$2"; shift 2 ;;
    --callgrind) CALLGRIND=1; shift ;;
    --keep) KEEP="$2"; shift 2 ;;
    --cg-connections) CG_CONNECTIONS="$2"; shift 2 ;;
    --only-callgrind) ONLY_CALLGRIND=1; CALLGRIND=1; shift ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
if [ -z "$ZG" ]; then
  ZG="$ROOT/target/dist/zambda-guard"
  [ -x "$ZG" ] || ZG="$ROOT/target/release/zambda-guard"
fi
SIGN="$ROOT/target/release/examples/sign_tokens"
[ -x "$SIGN" ] || cargo build --quiet --release --example sign_tokens
for tool in perf strace wrk nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "missing $tool" >&2; exit 1; }
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

WORK="$(mktemp -d /tmp/zg-profile.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP"
    cp "$WORK"/*.out.* "$KEEP"/ 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
take_ports P_BACKEND P_ZG P_ADMIN
backend_conf "$WORK/backend" "$P_BACKEND"
zg_config "$WORK/zg" "$P_ZG" "$P_ADMIN" "$P_BACKEND"
TOKEN="$("$SIGN" --count 1 --issuer "$ISSUER" --audience "$AUDIENCE" --subject "$SUBJECT" --ttl 7200)"
if [ "$ROUTE" = execute ]; then ZPATH=$PATH_EXEC; else ZPATH=$PATH_PUBLIC; fi
static_lua "$WORK/load.lua" "$ZPATH" "Bearer $TOKEN"
cat >>"$WORK/load.lua" <<'EOF'
done = function(summary) io.write(string.format("REQUESTS %d\n", summary.requests)) end
EOF

"$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" 2>/dev/null &
PIDS+=($!)
start_zg() {
  "$@" "$ZG" run --config "$WORK/zg/config.yaml" >"$WORK/zg/out.log" 2>&1 &
  ZG_PID=$!
  PIDS+=($ZG_PID)
  wait_ready "http://127.0.0.1:$P_ADMIN/readyz" 300 && return
  echo "zambda-guard not ready" >&2; cat "$WORK/zg/out.log" >&2; exit 1
}
start_zg
URL="http://127.0.0.1:$P_ZG$ZPATH"
if [ "$ONLY_CALLGRIND" = 0 ]; then
wrk -t1 -c64 -d2s -s "$WORK/load.lua" "$URL" >/dev/null

echo "== perf: $ZG, $ZPATH, wrk -t1 -c64, ${SECONDS_}s sampled"
wrk -t1 -c64 -d"$((SECONDS_ + 2))s" -s "$WORK/load.lua" "$URL" >"$WORK/wrk-perf.txt" &
WRK=$!
sleep 1
perf record -q -e cpu-clock -F 1999 -g -p "$ZG_PID" -o "$WORK/perf.data" -- sleep "$SECONDS_" 2>/dev/null
wait "$WRK"
report() { perf report -i "$WORK/perf.data" --stdio -g none "$@" 2>/dev/null | grep -v '^#' | grep -v '^$' || true; }
echo "-- share of samples by binary"
report --no-children --sort dso | head -5 || true
echo "-- top symbols (self)"
report --no-children --sort symbol | head -25 | cut -c1-120 || true
echo "-- inclusive share of request phases (call graphs from frame-pointer-less code are partial)"
report --children --sort symbol |
  grep -E 'zambda_guard::|sendto|recvfrom|epoll_wait|_mi_|malloc|tokio::runtime::scheduler' | head -25 | cut -c1-120 || true

echo "== strace -c: system calls per request (3 s window)"
requests() { curl -fsS "http://127.0.0.1:$P_ADMIN/metrics" | awk '/^zambda_guard_requests_total/ {s += $2} END {print s + 0}'; }
wrk -t1 -c64 -d5s -s "$WORK/load.lua" "$URL" >"$WORK/wrk-strace.txt" &
WRK=$!
sleep 1
R0=$(requests)
timeout 3 strace -c -f -p "$ZG_PID" -o "$WORK/strace.txt" 2>/dev/null || true
R1=$(requests)
wait "$WRK"
awk -v n="$((R1 - R0))" 'BEGIN {printf "%-16s %10s %12s\n", "syscall", "calls", "per request"}
  $1 ~ /^[0-9.]+$/ && $NF != "total" {calls = ($5 ~ /^[0-9]+$/ && NF == 6) ? $4 : $4; printf "%-16s %10d %12.2f\n", $NF, calls, calls / n}' \
  "$WORK/strace.txt"
echo "($((R1 - R0)) requests in the window; strace slows the proxy, the counts per request are what matter)"
fi

if [ "$CALLGRIND" = 1 ]; then
  command -v valgrind >/dev/null || { echo "missing valgrind" >&2; exit 1; }
  kill "$ZG_PID"; wait "$ZG_PID" 2>/dev/null || true
  # Counts only the load: counters zeroed after a warm-up, dumped after
  # 4 s of wrk -t1 -cN, divided by the requests wrk completed.
  per_request() { # NAME OUT PID URL: prints instructions per request
    wrk -t1 -c"$CG_CONNECTIONS" -d1s -s "$WORK/load.lua" "$4" >/dev/null
    callgrind_control -z "$3" >/dev/null 2>&1
    n=$(wrk -t1 -c"$CG_CONNECTIONS" -d4s -s "$WORK/load.lua" "$4" | awk '/^REQUESTS/ {print $2}')
    callgrind_control -d "$3" >/dev/null 2>&1
    dump=$(ls -t "$2".* | head -1)
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    printf '%-28s %9d requests %12d instructions per request\n' "$1" "$n" "$((total / n))"
    DUMP=$dump N=$n
  }
  echo "== callgrind: instructions per request (wrk -t1 -c$CG_CONNECTIONS, 4 s after a 1 s warm-up)"
  start_zg valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out"
  per_request "zambda-guard $ROUTE" "$WORK/callgrind.out" "$ZG_PID" "$URL"
  ZG_DUMP=$DUMP ZG_N=$N
  kill -INT "$ZG_PID"; wait "$ZG_PID" 2>/dev/null || true
  BARE="$(dirname "$ZG")/examples/bare_pingora"
  if [ -x "$BARE" ]; then
    valgrind --tool=callgrind --callgrind-out-file="$WORK/bare.out" \
      "$BARE" "127.0.0.1:$P_ZG" "127.0.0.1:$P_BACKEND" >"$WORK/bare.log" 2>&1 &
    BARE_PID=$!
    PIDS+=($BARE_PID)
    for _ in $(seq 1 300); do curl -fsS -o /dev/null -X POST "$URL" 2>/dev/null && break; sleep 0.1; done
    per_request "bare pingora (same load)" "$WORK/bare.out" "$BARE_PID" "$URL"
    kill -INT "$BARE_PID"; wait "$BARE_PID" 2>/dev/null || true
  else
    echo "(no $BARE: build it with the same profile to compare)"
  fi
  echo "-- zambda-guard's phases, inclusive instructions per request"
  callgrind_annotate --inclusive=yes "$ZG_DUMP" 2>/dev/null |
    grep -E 'zambda_guard::|insert_header|pingora_timeout::Timeout|sha2::|with_label_values' | head -24 |
    awk -v n="$ZG_N" '{gsub(",", "", $1); name = $0; sub(/^[^?]*\?\?\?:/, "", name); sub(/ \[.*$/, "", name);
      printf "%9d  %s\n", $1 / n, substr(name, 1, 110)}' || true
fi
