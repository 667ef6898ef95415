#!/usr/bin/env bash
# The engine's floor: per-request cost of the bare pingora proxy
# (examples/bare_pingora.rs) with three experimental changes inside
# pingora-core 0.9.1, and what a larger upstream request head costs.
#
# Assumes a scratch copy of the repository whose Cargo.toml carries
#   [patch.crates-io]
#   pingora-core = { path = "vendor-exp/pingora-core-0.9.1" }
# and whose vendored pingora-core reads PINGORA_EXP (comma-separated,
# read once into statics) to switch each change on:
#   coalesce    an HTTP/1 upstream request with a Content-Length body: the
#               head is held back and sent with the first body bytes, one
#               write instead of two
#   addr        pooled-connection reuse compares the peer address recorded
#               at connect time instead of calling getpeername
#   noidletask  no idle-watch task per released pooled connection;
#               liveness and idle timeout checked when it is reused
#   all         the three together
# With PINGORA_EXP unset the patched build behaves as stock pingora (the
# "base" variant). Build first (one build measures every variant):
#   cargo build --release --example bare_pingora --example sign_tokens
#
# Usage: bench/engine_floor.sh [--bare PATH] [--rounds 3] [--duration 5]
#                        [--variants "base coalesce addr noidletask all"]
#                        [--skip strace,callgrind,ab,token] [--perf]
#                        [--token-rounds N]
# Sections, each skippable:
#   strace     system calls per request (strace -c -f while wrk -t1 -c64
#              runs) and TCP segments per request (nstat), per variant,
#              bare pingora and nginx's plain proxy
#   callgrind  user-space instructions per request (wrk -t1 -c4; the
#              marginal cost between a 2 s and a 6 s window, which removes
#              the per-window cost of wrk's new connections)
#   ab         req/s and CPU us/request (user + system from /proc/PID/stat)
#              in alternating rounds of wrk -t1 -c64
#   token      bare pingora and nginx's plain proxy with and without a
#              ~590-byte Authorization header, alternating rounds
#              (--token-rounds, default 2 x --rounds), and TCP segments
# --perf adds `perf record -e cpu-clock -g` of bare pingora with and without
# the header: the symbols whose CPU time per request grows.
# Loopback only; every load is bounded by --duration. Needs wrk, nginx,
# strace, valgrind (nstat and perf optional); about 10 minutes with the
# defaults. CPU time and req/s move with the machine's load; instructions,
# system calls and segments per request do not.
set -euo pipefail

# The repository (a patched copy of it, see above) holding this script.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BARE="$ROOT/target/release/examples/bare_pingora"
ROUNDS=3
DURATION=5
VARIANTS=(base coalesce addr noidletask all)
SKIP=""
PERF=0
TOKEN_ROUNDS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bare) BARE="$(realpath "$2")"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --variants) read -r -a VARIANTS <<<"$2"; shift 2 ;;
    --skip) SKIP="$2"; shift 2 ;;
    --perf) PERF=1; shift ;;
    --token-rounds) TOKEN_ROUNDS="$2"; shift 2 ;;
    -h|--help) sed -n '2,44p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
skipped() { case ",$SKIP," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_workdir zg-engine-floor
for tool in wrk strace valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || { echo "missing nginx" >&2; exit 1; }
[ -x "$BARE" ] || { echo "missing $BARE (build it first, see --help)" >&2; exit 1; }
flags() { # variant -> PINGORA_EXP value
  case "$1" in base) echo "" ;; all) echo "coalesce,addr,noidletask" ;; *) echo "$1" ;; esac
}
log() { echo "[engine-floor] $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- backend, nginx plain proxy, load scripts -----------------------------------
take_ports P_BACKEND P_NGINX P_NGINX_CG
backend_conf "$WORK/backend" "$P_BACKEND"
nginx_proxy_block() { # port
  cat <<EOF
  upstream backend {
    server 127.0.0.1:$P_BACKEND;
    keepalive 128;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$1;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOF
}
nginx_proxy_block "$P_NGINX" | nginx_conf "$WORK/nginx"
# the same proxy without a master process, for callgrind
nginx_proxy_block "$P_NGINX_CG" | nginx_conf "$WORK/nginx-cg"
sed -i '1i master_process off;' "$WORK/nginx-cg/nginx.conf"

SIGN="$ROOT/target/release/examples/sign_tokens"
if [ -x "$SIGN" ]; then
  TOKEN="$("$SIGN" --count 1 --issuer "$ISSUER" --audience "$AUDIENCE" --subject "$SUBJECT" --ttl 7200)"
else # any token68 string of the same size will do: the proxies forward it as is
  TOKEN="$(head -c 480 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
fi
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d\n", summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout))
end
EOF
load_script() { # name with_token(0|1)
  {
    echo "wrk.method = \"POST\""
    echo "wrk.path = \"$PATH_EXEC\""
    echo "wrk.body = '$BODY'"
    echo "wrk.headers[\"Content-Type\"] = \"application/json\""
    [ "$2" = 1 ] && echo "wrk.headers[\"Authorization\"] = \"Bearer $TOKEN\""
    cat "$WORK/report.lua"
  } >"$WORK/$1.lua"
}
load_script tok 1
load_script notok 0
HDR_BYTES=$(( ${#TOKEN} + 24 )) # "Authorization: Bearer " + token + CRLF

"$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" 2>"$WORK/backend/stderr.log" &
PIDS+=($!)
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/stderr.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

wait_port() { # port
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on 127.0.0.1:$1 (logs in $WORK)" >&2; KEEP=1; exit 1
}
check200() { # url [curl args]
  local url="$1"; shift
  local got
  got=$(curl -sS -o "$WORK/check.body" -w '%{http_code}' -X POST -H 'content-type: application/json' \
    --data "$BODY" "$@" "$url")
  [ "$got" = 200 ] && grep -q '"result":"ok"' "$WORK/check.body" ||
    { echo "sanity check failed: $url: HTTP $got" >&2; KEEP=1; exit 1; }
}
# run_wrk CONNS SECONDS SCRIPT URL: prints "requests seconds"; fails on errors
run_wrk() {
  local out line n us bad errs
  out=$(wrk -t1 -c"$1" -d"${2}s" -s "$WORK/$3.lua" "$4" 2>&1 || true)
  line=$(grep '^RESULT' <<<"$out" || true)
  [ -n "$line" ] || { echo "wrk failed: $out" >&2; exit 1; }
  read -r _ n us bad errs <<<"$line"
  if [ "$bad" != 0 ] || [ "$errs" != 0 ]; then
    echo "wrk: $bad non-2xx, $errs socket errors on $4" >&2; exit 1
  fi
  echo "$n $us"
}
TICKS=$(getconf CLK_TCK)

# --- one bare proxy per variant ------------------------------------------------------
declare -A PORT PID
for v in "${VARIANTS[@]}"; do
  take_ports VPORT
  PORT[$v]=$VPORT
  PINGORA_EXP="$(flags "$v")" "$BARE" "127.0.0.1:$VPORT" "127.0.0.1:$P_BACKEND" >"$WORK/bare-$v.log" 2>&1 &
  PID[$v]=$!
  PIDS+=(${PID[$v]})
done
wait_port "$P_BACKEND"; wait_port "$P_NGINX"
for v in "${VARIANTS[@]}"; do wait_port "${PORT[$v]}"; check200 "http://127.0.0.1:${PORT[$v]}$PATH_EXEC"; done
check200 "http://127.0.0.1:$P_NGINX$PATH_EXEC" -H "Authorization: Bearer $TOKEN"
echo "engine floor: bare pingora ($BARE) with PINGORA_EXP variants; $(nproc) CPUs, Linux $(uname -r), nginx $("$NGINX" -v 2>&1 | sed 's/.*\///')"
echo "load: POST ${#BODY} B body + Content-Type + Authorization (${HDR_BYTES} B header line) unless stated; load average at start: $(loadavg)"

# --- 1. system calls per request -------------------------------------------------------
strace_count() { # label pid url script: syscalls per request over a 3 s wrk -t1 -c64 run
  local out="$WORK/strace-$1.txt" spid n
  run_wrk 64 1 "$4" "$3" >/dev/null
  strace -c -f -p "$2" -o "$out" 2>/dev/null &
  spid=$!
  sleep 0.5
  read -r n _ <<<"$(run_wrk 64 3 "$4" "$3")"
  kill -INT "$spid"; wait "$spid" 2>/dev/null || true
  awk -v n="$n" -v l="$1" '$1 ~ /^[0-9.]+$/ && $NF != "total" && $4 / n >= 0.005 {
      s = s sprintf(" %s=%.2f", $NF, $4 / n); t += $4 }
    END {printf "%-34s %6.2f per request:%s  (%d requests)\n", l, t / n, s, n}' "$out"
}
# segments LABEL URL SCRIPT: TCP segments per request over 3 s of wrk -t1 -c64, from
# nstat (counters of this network namespace: every loopback hop of the exchange,
# client-proxy and proxy-backend; meaningful when nothing else uses TCP here)
segments() {
  local n
  command -v nstat >/dev/null || return 0
  export NSTAT_HISTORY="$WORK/nstat.history"
  run_wrk 64 1 "$3" "$2" >/dev/null
  nstat -n >/dev/null
  read -r n _ <<<"$(run_wrk 64 3 "$3" "$2")"
  nstat -z 2>/dev/null | awk -v n="$n" -v l="$1" '
    {v[$1] = $2} END {printf "%-34s %5.2f segments per request, %.2f carrying data, %.2f bare ACKs\n", l,
      v["TcpOutSegs"] / n, v["TcpExtTCPOrigDataSent"] / n, (v["TcpOutSegs"] - v["TcpExtTCPOrigDataSent"]) / n}'
}
if ! skipped strace; then
  echo
  echo "== system calls per request (strace -c -f, 3 s of wrk -t1 -c64; >= 0.005/request shown)"
  for v in "${VARIANTS[@]}"; do
    strace_count "pingora $v" "${PID[$v]}" "http://127.0.0.1:${PORT[$v]}$PATH_EXEC" tok
  done
  strace_count "pingora ${VARIANTS[0]}, no Authorization" "${PID[${VARIANTS[0]}]}" "http://127.0.0.1:${PORT[${VARIANTS[0]}]}$PATH_EXEC" notok
  strace_count "nginx plain proxy" "$(pgrep -P "$NGINX_PID" | head -1)" "http://127.0.0.1:$P_NGINX$PATH_EXEC" tok
  strace_count "nginx, no Authorization" "$(pgrep -P "$NGINX_PID" | head -1)" "http://127.0.0.1:$P_NGINX$PATH_EXEC" notok
  echo "-- TCP segments per request (nstat, 3 s of wrk -t1 -c64; all loopback hops: 4 is one segment per message)"
  for v in "${VARIANTS[@]}"; do segments "pingora $v" "http://127.0.0.1:${PORT[$v]}$PATH_EXEC" tok; done
  segments "nginx plain proxy" "http://127.0.0.1:$P_NGINX$PATH_EXEC" tok
fi

# --- 2. instructions per request ---------------------------------------------------------
# callgrind_per_request LABEL SCRIPT CMD...: starts CMD under callgrind on port $CG_PORT;
# after a 1 s warm-up, counts two windows of wrk -t1 -c4 (2 s and 6 s), counters
# zeroed before and dumped after each. Each window also carries a fixed cost
# (wrk's 4 new connections, accepted and closed); the difference of the two
# windows divided by the difference of their requests removes it:
#   marginal = (I6 - I2) / (n6 - n2)  and  average = I6 / n6
callgrind_window() { # pid out script seconds: prints "instructions requests"
  local n dump
  callgrind_control -z "$1" >/dev/null 2>&1
  read -r n _ <<<"$(run_wrk 4 "$4" "$3" "http://127.0.0.1:$CG_PORT$PATH_EXEC")"
  callgrind_control -d "$1" >/dev/null 2>&1
  sleep 0.3
  dump=$(ls -t "$2".* | head -1)
  echo "$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}') $n"
}
callgrind_per_request() {
  local label="$1" script="$2"; shift 2
  local out="$WORK/cg-${label// /_}.out" pid i2 n2 i6 n6
  out="${out//,/}"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"${out%.out}.log" 2>&1 &
  pid=$!
  PIDS+=($pid)
  for _ in $(seq 1 300); do curl -fsS -o /dev/null -X POST "http://127.0.0.1:$CG_PORT$PATH_EXEC" 2>/dev/null && break; sleep 0.1; done
  run_wrk 4 1 "$script" "http://127.0.0.1:$CG_PORT$PATH_EXEC" >/dev/null
  read -r i2 n2 <<<"$(callgrind_window "$pid" "$out" "$script" 2)"
  read -r i6 n6 <<<"$(callgrind_window "$pid" "$out" "$script" 6)"
  kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  printf '%-32s %10d marginal %10d average  (%d + %d requests)\n' "$label" \
    "$(( (i6 - i2) / (n6 - n2) ))" "$(( i6 / n6 ))" "$n2" "$n6"
}
if ! skipped callgrind; then
  echo
  echo "== instructions per request (callgrind, wrk -t1 -c4, windows of 2 s and 6 s after a 1 s warm-up; user space only)"
  take_ports CG_PORT
  for v in "${VARIANTS[@]}"; do
    PINGORA_EXP="$(flags "$v")" callgrind_per_request "pingora $v" tok \
      "$BARE" "127.0.0.1:$CG_PORT" "127.0.0.1:$P_BACKEND"
  done
  PINGORA_EXP="" callgrind_per_request "pingora base, no Authorization" notok \
    "$BARE" "127.0.0.1:$CG_PORT" "127.0.0.1:$P_BACKEND"
  CG_PORT=$P_NGINX_CG
  callgrind_per_request "nginx plain proxy" tok "$NGINX" -p "$WORK/nginx-cg" -c "$WORK/nginx-cg/nginx.conf"
  callgrind_per_request "nginx, no Authorization" notok "$NGINX" -p "$WORK/nginx-cg" -c "$WORK/nginx-cg/nginx.conf"
fi

# --- 3 and 4. req/s and CPU per request, alternating rounds ---------------------------------
# measure NAME PID URL SCRIPT ROUND: one warm-up second, then --duration seconds
measure() {
  local u0 s0 u1 s1 n us
  run_wrk 64 1 "$4" "$3" >/dev/null
  read -r u0 s0 <<<"$(cpu_ticks_split "$2")"
  read -r n us <<<"$(run_wrk 64 "$DURATION" "$4" "$3")"
  read -r u1 s1 <<<"$(cpu_ticks_split "$2")"
  # name round req/s cpu_us/req sys_us/req
  echo "$1 $5 $(awk -v n="$n" -v us="$us" -v u=$((u1 - u0)) -v y=$((s1 - s0)) -v hz="$TICKS" \
    'BEGIN {printf "%.0f %.2f %.2f", n / (us / 1e6), (u + y) / hz * 1e6 / n, y / hz * 1e6 / n}')" >>"$WORK/rounds.txt"
}
summary() { # names...: median req/s, CPU and system CPU us/req per name, and the rounds
  local s
  printf '%-26s %8s %11s %11s   %s\n' "" "req/s" "CPU us/req" "sys us/req" "rounds (req/s cpu/sys)"
  for s in "$@"; do
    printf '%-26s %8.0f %11.2f %11.2f  %s\n' "$s" \
      "$(awk -v s="$s" '$1 == s {print $3}' "$WORK/rounds.txt" | median)" \
      "$(awk -v s="$s" '$1 == s {print $4}' "$WORK/rounds.txt" | median)" \
      "$(awk -v s="$s" '$1 == s {print $5}' "$WORK/rounds.txt" | median)" \
      "$(awk -v s="$s" '$1 == s {printf " %s:%s/%s", $3, $4, $5}' "$WORK/rounds.txt")"
  done
}
# deltas NAME: per-round "with - without" CPU (and system CPU) us/req, and their median
deltas() {
  awk -v s="$1" '$1 == s "-notok" {a[$2] = $4; as[$2] = $5} $1 == s "-tok" {b[$2] = $4; bs[$2] = $5}
    END {for (r = 1; r in a; r++) printf "%.2f %.2f\n", b[r] - a[r], bs[r] - as[r]}' "$WORK/rounds.txt" >"$WORK/delta-$1.txt"
  printf '%-26s with - without, CPU us/req per round:%s (median %+.2f); system CPU: median %+.2f\n' "$1" \
    "$(awk '{printf " %+.2f", $1}' "$WORK/delta-$1.txt")" \
    "$(awk '{print $1}' "$WORK/delta-$1.txt" | median)" "$(awk '{print $2}' "$WORK/delta-$1.txt" | median)"
}
if ! skipped ab; then
  echo
  echo "== req/s and CPU us/request, wrk -t1 -c64 -d${DURATION}s, $ROUNDS alternating rounds (median; machine shared)"
  for r in $(seq 1 "$ROUNDS"); do
    for v in "${VARIANTS[@]}"; do measure "pingora-$v" "${PID[$v]}" "http://127.0.0.1:${PORT[$v]}$PATH_EXEC" tok "$r"; done
    log "round $r done, load average $(loadavg)"
  done
  names=(); for v in "${VARIANTS[@]}"; do names+=("pingora-$v"); done
  summary "${names[@]}"
fi
if ! skipped token; then
  echo
  TOKEN_ROUNDS=${TOKEN_ROUNDS:-$((2 * ROUNDS))}
  echo "== token size: with / without a ${HDR_BYTES}-byte Authorization header, wrk -t1 -c64 -d${DURATION}s, $TOKEN_ROUNDS alternating rounds"
  B=${VARIANTS[0]}
  for r in $(seq 1 "$TOKEN_ROUNDS"); do
    measure "pingora-$B-notok" "${PID[$B]}" "http://127.0.0.1:${PORT[$B]}$PATH_EXEC" notok "$r"
    measure "pingora-$B-tok" "${PID[$B]}" "http://127.0.0.1:${PORT[$B]}$PATH_EXEC" tok "$r"
    measure "nginx-notok" "$NGINX_PID" "http://127.0.0.1:$P_NGINX$PATH_EXEC" notok "$r"
    measure "nginx-tok" "$NGINX_PID" "http://127.0.0.1:$P_NGINX$PATH_EXEC" tok "$r"
    log "token round $r done, load average $(loadavg)"
  done
  summary "pingora-$B-notok" "pingora-$B-tok" "nginx-notok" "nginx-tok"
  if command -v nstat >/dev/null; then
    echo "-- TCP segments per request (nstat; client, proxy and backend hops together)"
    for sc in notok tok; do
      segments "pingora ${VARIANTS[0]} $sc" "http://127.0.0.1:${PORT[${VARIANTS[0]}]}$PATH_EXEC" "$sc"
      segments "nginx $sc" "http://127.0.0.1:$P_NGINX$PATH_EXEC" "$sc"
    done
  fi
  deltas "pingora-$B"
  deltas nginx
fi
# perf_per_request LABEL PID URL SCRIPT: CPU us per request by symbol (cpu-clock samples at 1999 Hz)
perf_per_request() {
  local n
  run_wrk 64 1 "$4" "$3" >/dev/null
  perf record -q -e cpu-clock -F 1999 -g -p "$2" -o "$WORK/perf-$1.data" -- sleep "$DURATION" 2>/dev/null &
  local ppid=$!
  read -r n _ <<<"$(run_wrk 64 "$DURATION" "$4" "$3")"
  wait "$ppid" || true
  # samples per symbol / 1999 Hz = CPU seconds; divided by the requests wrk completed
  perf report -i "$WORK/perf-$1.data" --stdio --no-children -n -g none --sort symbol 2>/dev/null |
    awk -v n="$n" '/^#/ || NF < 3 {next} {c = $2; s = $0; sub(/^ *[0-9.]+% +[0-9]+ +/, "", s); sub(/( +-)* *$/, "", s);
      printf "%s\t%.4f\n", s, c / 1999 * 1e6 / n}' >"$WORK/perf-$1.us"
  awk -F'\t' -v l="$1" '{t += $2} END {printf "%-34s %.2f us/request sampled\n", l, t}' "$WORK/perf-$1.us"
}
if [ "$PERF" = 1 ]; then
  command -v perf >/dev/null || { echo "missing perf" >&2; exit 1; }
  echo
  echo "== perf (cpu-clock, 1999 Hz, ${DURATION}s, wrk -t1 -c64): bare pingora ${VARIANTS[0]}, symbols whose us/request grow with the header"
  B=${VARIANTS[0]}
  perf_per_request notok "${PID[$B]}" "http://127.0.0.1:${PORT[$B]}$PATH_EXEC" notok
  perf_per_request tok "${PID[$B]}" "http://127.0.0.1:${PORT[$B]}$PATH_EXEC" tok
  awk -F'\t' 'NR == FNR {a[$1] = $2; next} {b[$1] = $2} END {for (k in b) printf "%+.3f\t%.3f\t%.3f\t%s\n", b[k] - a[k], a[k], b[k], k;
      for (k in a) if (!(k in b)) printf "%+.3f\t%.3f\t%.3f\t%s\n", -a[k], a[k], 0, k}' \
    "$WORK/perf-notok.us" "$WORK/perf-tok.us" | sort -t$'\t' -k1,1 -g -r | awk 'NR <= 15' |
    awk -F'\t' 'BEGIN {printf "%9s %9s %9s  %s\n", "delta us", "without", "with", "symbol"} {printf "%9s %9s %9s  %s\n", $1, $2, $3, substr($4, 1, 80)}'
fi
echo
echo "load average at end: $(loadavg)"
