#!/usr/bin/env bash
# zambda-guard side by side with the proxies users would pick instead.
#
# One fixed backend (nginx answering a fixed JSON body), then each system
# in turn under the same load, several rounds, alternating:
#   a  nginx        plain reverse proxy, no auth, upstream keep-alive
#   b  haproxy      http_auth_bearer + jwt_verify (RS256) + iss/aud/exp
#                   checks + a map of allowed Zambdas per subject
#   c  zg RS256     zambda-guard enforcing RS256 on `execute`, one token
#                   repeated (verified once, then cache hits)
#   d  zg fresh     zambda-guard, a fresh token per request (a pool of
#                   --tokens distinct tokens, a token cache of 1000, so
#                   nearly every request is a signature check)
#   e  zg public    zambda-guard serving a public Zambda (`execute-public`)
#   f  pingora      a bare pingora proxy (examples/bare_pingora.rs): same
#                   build, allocator and runtime settings, no auth, nothing
#                   else — the floor under zambda-guard
#   g  zg local     as c, with `forward_authorization: false`: the verified
#                   token is not passed on, so c − g is what forwarding the
#                   ~650-byte header costs and g − e is authentication and
#                   authorization alone
# Every proxy runs one worker thread; the load is `wrk -t1 -c64`, keep-alive,
# a small JSON POST body with a bearer token. zambda-guard runs with the
# default `log.decisions: denied` (all measured requests are allowed, so no
# log lines). Prints one table (median of the rounds) and the goal ratios.
#
# Usage: bench/compare.sh [--rounds 3] [--duration 10] [--warmup 2]
#                         [--connections 64] [--tokens 20000]
#                         [--quick] [--no-build] [--keep]
#   --quick     build with `--release` instead of `--profile dist` (fat LTO)
#   --no-build  use the zambda-guard binary already built for the profile
#   --keep      keep the work directory (configs, logs, raw wrk output)
#   --zg PATH   measure this zambda-guard binary (implies --no-build for it)
#   --systems "nginx pingora haproxy zg-rs256 zg-local zg-fresh zg-public"  a subset, in order
# Loopback only; every load is bounded by --duration. The defaults take
# about five minutes after the build.
set -euo pipefail

ROUNDS=3
DURATION=10
WARMUP=2
CONNECTIONS=64
TOKENS=20000
PROFILE=dist
BUILD=1
KEEP=0
ZG=""
SYSTEMS=(nginx pingora haproxy zg-rs256 zg-local zg-fresh zg-public)
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --tokens) TOKENS="$2"; shift 2 ;;
    --quick) PROFILE=release; shift ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --zg) ZG="$(realpath "$2")"; shift 2 ;;
    --systems) read -r -a SYSTEMS <<<"$2"; shift 2 ;;
    -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_workdir zg-compare
log() { echo "[compare] $*" >&2; }

# --- tools -------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  log "installing from Debian: ${need[*]}"
  apt-get update -qq
  pkgs=()
  for p in "${need[@]}"; do
    if [ "$p" = nginx ]; then
      if apt-cache show nginx-light >/dev/null 2>&1; then pkgs+=(nginx-light); else pkgs+=(nginx); fi
    else
      pkgs+=("$p")
    fi
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
# jwt_verify needs HAProxy >= 2.5
HAPROXY_VERSION="$(haproxy -v | awk 'NR == 1 {print $3}')"
if ! printf '2.5\n%s\n' "${HAPROXY_VERSION%%-*}" | sort -V -C; then
  echo "HAProxy $HAPROXY_VERSION has no jwt_verify (needs >= 2.5)" >&2
  exit 1
fi

# --- build -------------------------------------------------------------------
cd "$ROOT"
if [ "$BUILD" = 1 ]; then
  log "building zambda-guard and the bare pingora proxy (--profile $PROFILE), the token signer (--release)"
  [ -n "$ZG" ] || cargo build --quiet --profile "$PROFILE" --bin zambda-guard
  cargo build --quiet --profile "$PROFILE" --example bare_pingora
  cargo build --quiet --release --example sign_tokens
fi
BARE="$ROOT/target/$PROFILE/examples/bare_pingora"
[ -x "$BARE" ] || { echo "missing $BARE (run without --no-build)" >&2; exit 1; }
ZG="${ZG:-$ROOT/target/$PROFILE/zambda-guard}"
SIGN="$ROOT/target/release/examples/sign_tokens"
[ -x "$ZG" ] || { echo "missing $ZG (run without --no-build)" >&2; exit 1; }
[ -x "$SIGN" ] || { echo "missing $SIGN (run without --no-build)" >&2; exit 1; }

# --- ports (loopback; take_ports in bench/lib.sh) ---------------------------------
take_ports P_BACKEND P_NGINX P_HAPROXY P_ZG P_ZG_ADMIN P_ZG2 P_ZG2_ADMIN P_BARE P_ZG3 P_ZG3_ADMIN

# --- tokens --------------------------------------------------------------------
log "signing 1 + $TOKENS RS256 tokens"
TOKEN="$("$SIGN" --count 1 --issuer "$ISSUER" --audience "$AUDIENCE" --subject "$SUBJECT" --ttl 7200)"
"$SIGN" --count "$TOKENS" --issuer "$ISSUER" --audience "$AUDIENCE" --subject "$SUBJECT" \
  --ttl 7200 >"$WORK/tokens.txt"

# --- backend: nginx, a fixed JSON answer -----------------------------------------
backend_conf "$WORK/backend" "$P_BACKEND"

# --- a: nginx plain reverse proxy ----------------------------------------------
nginx_conf "$WORK/nginx" <<EOF
  upstream backend {
    server 127.0.0.1:$P_BACKEND;
    keepalive 128;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$P_NGINX;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOF

# --- b: HAProxy verifying the same JWTs ---------------------------------------------
mkdir -p "$WORK/haproxy"
# allowed Zambdas per subject: "<subject>/<zambda>" -> 1
printf '%s/bench-fn 1\n%s/other-fn 1\nsomeone@clients/bench-fn 1\n' "$SUBJECT" "$SUBJECT" \
  >"$WORK/haproxy/allowed.map"
cat >"$WORK/haproxy/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
  log stderr format raw local0 err
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 30s
  timeout http-keep-alive 120s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  http-request deny status 404 unless { path -m reg ^/v1/zambda/[A-Za-z0-9_-]+/execute\$ }
  http-request deny status 405 unless METH_POST
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny status 401 unless { var(txn.bearer) -m found }
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$KEYS/rsa1-public.pem") -m int 1 }
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request deny status 401 unless { var(txn.iss) -m str $ISSUER }
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request deny status 401 unless { var(txn.aud) -m str $AUDIENCE }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny status 401 unless { var(txn.exp),sub(txn.now) -m int gt 0 }
  http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
  http-request set-var(txn.zambda) path,field(4,/)
  http-request set-var(txn.key) var(txn.sub),concat(/,txn.zambda)
  http-request deny status 403 unless { var(txn.key),map($WORK/haproxy/allowed.map) -m found }
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:$P_BACKEND maxconn 1000
EOF

# --- c, d, e, g: zambda-guard (zg_config in bench/lib.sh) ----------------------------
zg_config "$WORK/zg" "$P_ZG" "$P_ZG_ADMIN" "$P_BACKEND" 100000
zg_config "$WORK/zg-fresh" "$P_ZG2" "$P_ZG2_ADMIN" "$P_BACKEND" 1000
zg_config "$WORK/zg-local" "$P_ZG3" "$P_ZG3_ADMIN" "$P_BACKEND" 100000 false

# --- wrk scripts -------------------------------------------------------------------
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.1f %.1f %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
EOF
wrk_static() { # name path
  static_lua "$WORK/$1.lua" "$2" "Bearer $TOKEN"
  cat "$WORK/report.lua" >>"$WORK/$1.lua"
}
wrk_static exec "$PATH_EXEC"
wrk_static public "$PATH_PUBLIC"
fresh_tokens_lua "$WORK/fresh.lua" "$WORK/tokens.txt" "$PATH_EXEC"
cat "$WORK/report.lua" >>"$WORK/fresh.lua"

# --- start everything ------------------------------------------------------------------
"$NGINX" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" 2>"$WORK/backend/stderr.log" &
PIDS+=($!)
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/stderr.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
haproxy -db -f "$WORK/haproxy/haproxy.cfg" >"$WORK/haproxy/out.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)
"$BARE" "127.0.0.1:$P_BARE" "127.0.0.1:$P_BACKEND" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=($BARE_PID)
"$ZG" run --config "$WORK/zg/config.yaml" >"$WORK/zg/out.log" 2>&1 &
ZG_PID=$!
PIDS+=($ZG_PID)
"$ZG" run --config "$WORK/zg-fresh/config.yaml" >"$WORK/zg-fresh/out.log" 2>&1 &
ZG2_PID=$!
PIDS+=($ZG2_PID)
"$ZG" run --config "$WORK/zg-local/config.yaml" >"$WORK/zg-local/out.log" 2>&1 &
ZG3_PID=$!
PIDS+=($ZG3_PID)

for admin in "$P_ZG_ADMIN" "$P_ZG2_ADMIN" "$P_ZG3_ADMIN"; do
  url="http://127.0.0.1:$admin/readyz"
  wait_ready "$url" || { echo "not ready: $url (logs in $WORK)" >&2; KEEP=1; exit 1; }
done
for p in "$P_BACKEND" "$P_NGINX" "$P_HAPROXY" "$P_BARE"; do
  up=0
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { up=1; break; }; sleep 0.1; done
  if [ "$up" = 0 ]; then
    echo "nothing listens on 127.0.0.1:$p (logs in $WORK)" >&2
    KEEP=1
    exit 1
  fi
done

TICKS=$(getconf CLK_TCK)
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
ZG_IDLE_RSS=$(rss_mb "$ZG_PID")

# --- sanity: each system answers 200 from the backend, and refuses what it must ----------
AUTH=(-H "Authorization: Bearer $TOKEN")
BAD_TOKEN="$(bad_signature "$TOKEN")"
expect_status "nginx" 200 "http://127.0.0.1:$P_NGINX$PATH_EXEC" "${AUTH[@]}"
expect_status "bare pingora" 200 "http://127.0.0.1:$P_BARE$PATH_EXEC" "${AUTH[@]}"
expect_status "haproxy" 200 "http://127.0.0.1:$P_HAPROXY$PATH_EXEC" "${AUTH[@]}"
expect_status "haproxy, bad signature" 401 "http://127.0.0.1:$P_HAPROXY$PATH_EXEC" -H "Authorization: Bearer $BAD_TOKEN"
expect_status "haproxy, no token" 401 "http://127.0.0.1:$P_HAPROXY$PATH_EXEC"
expect_status "haproxy, other zambda" 403 "http://127.0.0.1:$P_HAPROXY/v1/zambda/not-allowed/execute" "${AUTH[@]}"
expect_status "zg" 200 "http://127.0.0.1:$P_ZG$PATH_EXEC" "${AUTH[@]}"
expect_status "zg, bad signature" 401 "http://127.0.0.1:$P_ZG$PATH_EXEC" -H "Authorization: Bearer $BAD_TOKEN"
expect_status "zg, no token" 401 "http://127.0.0.1:$P_ZG$PATH_EXEC"
expect_status "zg public" 200 "http://127.0.0.1:$P_ZG$PATH_PUBLIC" "${AUTH[@]}"
expect_status "zg local" 200 "http://127.0.0.1:$P_ZG3$PATH_EXEC" "${AUTH[@]}"
expect_status "zg fresh" 200 "http://127.0.0.1:$P_ZG2$PATH_EXEC" -H "Authorization: Bearer $(sed -n 7p "$WORK/tokens.txt")"
grep -q '"result":"ok"' "$WORK/check.body" || { echo "backend body not passed through" >&2; exit 1; }

# --- the runs ---------------------------------------------------------------------------
declare -A URL SCRIPT LABEL SPID
SPID[nginx]=$NGINX_PID; SPID[pingora]=$BARE_PID; SPID[haproxy]=$HAPROXY_PID; SPID[zg-rs256]=$ZG_PID; SPID[zg-fresh]=$ZG2_PID; SPID[zg-public]=$ZG_PID; SPID[zg-local]=$ZG3_PID
URL[nginx]="http://127.0.0.1:$P_NGINX$PATH_EXEC";        SCRIPT[nginx]=exec
URL[haproxy]="http://127.0.0.1:$P_HAPROXY$PATH_EXEC";    SCRIPT[haproxy]=exec
URL[pingora]="http://127.0.0.1:$P_BARE$PATH_EXEC";       SCRIPT[pingora]=exec
URL[zg-rs256]="http://127.0.0.1:$P_ZG$PATH_EXEC";        SCRIPT[zg-rs256]=exec
URL[zg-fresh]="http://127.0.0.1:$P_ZG2$PATH_EXEC";       SCRIPT[zg-fresh]=fresh
URL[zg-public]="http://127.0.0.1:$P_ZG$PATH_PUBLIC";     SCRIPT[zg-public]=public
URL[zg-local]="http://127.0.0.1:$P_ZG3$PATH_EXEC";       SCRIPT[zg-local]=exec
LABEL[nginx]="a nginx plain proxy (no auth)"
LABEL[haproxy]="b HAProxy jwt_verify RS256 + map"
LABEL[zg-rs256]="c zambda-guard RS256, repeated token"
LABEL[zg-fresh]="d zambda-guard RS256, fresh token each"
LABEL[zg-public]="e zambda-guard execute-public"
LABEL[pingora]="f bare pingora proxy (no auth)"
LABEL[zg-local]="g zambda-guard RS256, token not forwarded"

log "load: wrk -t1 -c$CONNECTIONS -d${DURATION}s (after ${WARMUP}s warm-up), $ROUNDS rounds; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  for s in "${SYSTEMS[@]}"; do
    if [ "$WARMUP" -gt 0 ]; then
      wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/${SCRIPT[$s]}.lua" "${URL[$s]}" >/dev/null 2>&1 || true
    fi
    before=$(cpu_ticks "${SPID[$s]}")
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/${SCRIPT[$s]}.lua" "${URL[$s]}" \
      >"$WORK/wrk-$s-$round.txt" 2>&1 || true
    ticks=$(( $(cpu_ticks "${SPID[$s]}") - before ))
    line=$(grep '^RESULT' "$WORK/wrk-$s-$round.txt" || true)
    if [ -z "$line" ]; then
      echo "wrk failed for $s: $(cat "$WORK/wrk-$s-$round.txt")" >&2
      KEEP=1
      exit 1
    fi
    read -r _ n us p50 p99 bad errs <<<"$line"
    if [ "$bad" != 0 ] || [ "$errs" != 0 ]; then
      echo "$s round $round: $bad non-2xx answers, $errs socket errors (see $WORK)" >&2
      KEEP=1
      exit 1
    fi
    echo "$s $round $(awk -v n="$n" -v us="$us" -v t="$ticks" -v hz="$TICKS" -v p50="$p50" -v p99="$p99" \
      'BEGIN {printf "%.0f %s %s %.1f", n / (us / 1e6), p50, p99, t / hz * 1e6 / n}')" >>"$WORK/results.txt"
    log "round $round $s: $(tail -1 "$WORK/results.txt" | cut -d' ' -f3-) (req/s p50us p99us cpu_us/req)"
  done
done
ZG_LOADED_RSS=$(rss_mb "$ZG_PID")
FRESH_METRICS=$(curl -fsS "http://127.0.0.1:$P_ZG2_ADMIN/metrics" | grep -E '^zambda_guard_token_cache_(hits|misses)_total' || true)
FRESH_HITS=$(echo "$FRESH_METRICS" | awk '/hits/ {print $2}')
FRESH_MISSES=$(echo "$FRESH_METRICS" | awk '/misses/ {print $2}')

# --- the table ---------------------------------------------------------------------------
echo
echo "zambda-guard vs. alternatives: wrk -t1 -c$CONNECTIONS -d${DURATION}s, keep-alive, POST ${#BODY} B + bearer token; one worker each"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
echo "zambda-guard $("$ZG" --version | awk '{print $2}') (profile $PROFILE), nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), HAProxy $HAPROXY_VERSION; median of $ROUNDS rounds"
echo
printf '%-40s %10s %10s %10s %12s\n' "system" "req/s" "p50 ms" "p99 ms" "CPU us/req"
declare -A RPS P50 P99 CPU
for s in "${SYSTEMS[@]}"; do
  RPS[$s]=$(awk -v s="$s" '$1 == s {print $3}' "$WORK/results.txt" | median)
  P50[$s]=$(awk -v s="$s" '$1 == s {print $4}' "$WORK/results.txt" | median)
  P99[$s]=$(awk -v s="$s" '$1 == s {print $5}' "$WORK/results.txt" | median)
  CPU[$s]=$(awk -v s="$s" '$1 == s {print $6}' "$WORK/results.txt" | median)
  printf '%-40s %10.0f %10.2f %10.2f %12.1f\n' "${LABEL[$s]}" "${RPS[$s]}" "$(awk -v v="${P50[$s]}" 'BEGIN {print v / 1000}')" \
    "$(awk -v v="${P99[$s]}" 'BEGIN {print v / 1000}')" "${CPU[$s]}"
done
echo
ratio() { # a b: a / b, or "-" when either was not measured
  if [ -z "$1" ] || [ -z "$2" ]; then echo "-"; else awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; fi
}
goal() { # text value op goal
  local verdict="not measured"
  if [ "$2" != "-" ]; then
    verdict=$(awk -v v="$2" -v g="$4" -v op="$3" 'BEGIN {ok = (op == ">=") ? (v >= g) : (v <= g); print ok ? "met" : "NOT met"}')
  fi
  printf '%-52s %6s  (goal %s %s: %s)\n' "$1" "$2" "$3" "$4" "$verdict"
}
goal "req/s  zg RS256 / nginx plain proxy" "$(ratio "${RPS[zg-rs256]:-}" "${RPS[nginx]:-}")" ">=" 0.8
goal "req/s  zg RS256 / HAProxy jwt_verify" "$(ratio "${RPS[zg-rs256]:-}" "${RPS[haproxy]:-}")" ">=" 2
printf '%-52s %6s  (reported, no goal)\n' "req/s  zg fresh token / HAProxy jwt_verify" \
  "$(ratio "${RPS[zg-fresh]:-}" "${RPS[haproxy]:-}")"
goal "req/s  zg RS256 / zg public" "$(ratio "${RPS[zg-rs256]:-}" "${RPS[zg-public]:-}")" ">=" 0.95
goal "p99    zg RS256 / nginx plain proxy" "$(ratio "${P99[zg-rs256]:-}" "${P99[nginx]:-}")" "<=" 1.5
printf '%-52s %6s  (reported: authentication + authorization alone)\n' "req/s  zg RS256, token not forwarded / zg public" \
  "$(ratio "${RPS[zg-local]:-}" "${RPS[zg-public]:-}")"
printf '%-52s %6s  (reported: the floor pingora sets)\n' "req/s  bare pingora / nginx plain proxy" \
  "$(ratio "${RPS[pingora]:-}" "${RPS[nginx]:-}")"
printf '%-52s %6s  (reported: zambda-guard over pingora)\n' "req/s  zg public / bare pingora" \
  "$(ratio "${RPS[zg-public]:-}" "${RPS[pingora]:-}")"
echo
echo "zambda-guard RSS: ${ZG_IDLE_RSS} MB idle (after start, before any load; goal <= 30 MB), ${ZG_LOADED_RSS} MB after the runs"
echo "zg fresh-token run: token cache hits ${FRESH_HITS:-?}, misses ${FRESH_MISSES:-?} (a miss = a signature check)"
echo "CPU us/req: the proxy's own CPU time (user + system, all its threads) per request served"
echo "per-round results (system round req/s p50_us p99_us cpu_us/req):"
sed 's/^/  /' "$WORK/results.txt"
