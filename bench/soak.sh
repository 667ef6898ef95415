#!/usr/bin/env bash
# Soak run: zambda-guard under steady load for a long time while its
# policies, keys, backend and process change under it, then a report that
# accounts for every request.
#
# The load is wrk (bench/soak/mix.lua): allowed, denied, public and
# bad-token calls, over kept-alive and fresh connections, every request
# traced by its own request id. The driver (bench/soak/driver.py) meanwhile,
# at randomised intervals, flips a Zambda's permission by rewriting a
# policy file, swaps a ConfigMap-style `..data` directory, sends SIGHUP,
# rotates the JWKS signing key (publish new, re-sign tokens, remove old),
# restarts the backend, and hands the sockets to a new process with
# SIGQUIT; at the end it drains the proxy with SIGTERM. The checker
# (bench/soak/check.py) judges every request against the policy state of
# its time and the backend's access log, and writes report.md.
#
# Usage: bench/soak.sh [--minutes 30] [--zg PATH] [--keep] [--seed N]
#                      [--threads 2] [--connections 32] [--pace 1.0]
#   --minutes N      how long the load runs (the drain and report follow)
#   --zg PATH        the zambda-guard binary (default: build and use
#                    target/release/zambda-guard)
#   --keep           keep the work directory (traces, logs, report)
#   --seed N         the driver's random seed (printed in the report)
#   --threads, --connections   the wrk load
#   --pace F         multiplies every mean interval between events (0.5:
#                    twice as many)
# Exit code: 0 when the report finds no unexplained failure, 1 otherwise.
# Needs wrk, nginx, openssl and python3 (stdlib only). Loopback only.
set -euo pipefail

COMMAND="bench/soak.sh $*"
MINUTES=30
ZG=""
KEEP=0
SEED=""
THREADS=2
CONNECTIONS=32
PACE=1.0
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --zg) ZG="$(realpath "$2")"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --seed) SEED="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --pace) PACE="$2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
log() { echo "[soak] $*" >&2; }

need=()
for tool in wrk nginx openssl python3; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "missing: ${need[*]} (Debian: apt-get install wrk nginx-light openssl python3)" >&2
  exit 2
fi
export PATH="$PATH:/usr/sbin"

if [ -z "$ZG" ]; then
  log "building zambda-guard (release)"
  (cd "$ROOT" && cargo build --release --bin zambda-guard)
  ZG="$ROOT/target/release/zambda-guard"
fi

WORK="$(mktemp -d /tmp/zg-soak.XXXXXX)"
cleanup() {
  if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

take_ports PROXY_PORT ADMIN_PORT BACKEND_PORT JWKS_PORT

# The recording backend: every request it receives, with the identity the
# proxy forwarded, goes to its access log.
nginx_conf "$WORK/backend" <<EOF
  log_format soak '\$msec \$http_x_oystehr_request_id \$http_x_zambda_name \$http_x_zambda_actor \$request_method \$request_uri';
  server {
    listen 127.0.0.1:$BACKEND_PORT;
    # unbuffered: a line buffered when the backend is stopped would be lost
    access_log $WORK/backend/access.log soak;
    location / {
      default_type application/json;
      return 200 '{"status":200,"output":{"echo":true}}';
    }
  }
EOF

cat >"$WORK/config.yaml" <<EOF
listen: 127.0.0.1:$PROXY_PORT
admin_listen: 127.0.0.1:$ADMIN_PORT
threads: 2
upstream:
  address: 127.0.0.1:$BACKEND_PORT
  connect_timeout_ms: 1000
  read_timeout_ms: 10000
auth:
  issuers:
    - issuer: https://issuer.soak/
      audiences: [https://api.soak]
      algorithms: [RS256]
      jwks_url: http://127.0.0.1:$JWKS_PORT/jwks.json
      jwks_refresh_seconds: 60
      jwks_min_refetch_seconds: 5
policies:
  dir: [policies/files, policies/configmap]
  watch: true
log:
  decisions: all
  format: json
shutdown:
  grace_period_seconds: 2
  drain_timeout_seconds: 20
  upgrade_sock: $WORK/upgrade.sock
EOF

log "work directory: $WORK; $MINUTES min of load, then the drain"
set +e
python3 "$ROOT/bench/soak/driver.py" --work "$WORK" --zg "$ZG" --lua "$ROOT/bench/soak/mix.lua" \
  --minutes "$MINUTES" --pace "$PACE" ${SEED:+--seed "$SEED"} \
  --threads "$THREADS" --connections "$CONNECTIONS" \
  --proxy-port "$PROXY_PORT" --admin-port "$ADMIN_PORT" \
  --backend-port "$BACKEND_PORT" --jwks-port "$JWKS_PORT"
driven=$?
python3 "$ROOT/bench/soak/check.py" "$WORK" --command "$COMMAND"
checked=$?
set -e
if [ "$driven" != 0 ]; then
  log "the driver failed (exit $driven); see $WORK"
  KEEP=1
  exit 1
fi
[ "$checked" = 0 ] || KEEP=1
exit "$checked"
