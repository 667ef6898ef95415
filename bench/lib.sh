# Shared by the scripts in bench/ (sourced, not run): free loopback ports,
# nginx configs (the fixed backend among them), a zambda-guard instance
# configured for the benchmark's tokens and policies, the wrk scripts (one
# request, fresh tokens), waiting for readiness, sanity checks, CPU time of
# a process, and the median of a column.
# Expects ROOT (the repository) to be set.

ISSUER=https://issuer.bench/
AUDIENCE=https://api.bench
SUBJECT=bench@clients
PATH_EXEC=/v1/zambda/bench-fn/execute
PATH_PUBLIC=/v1/zambda/bench-public/execute-public
BODY='{"input":{"patient":"p-1","items":[1,2,3]}}'
KEYS="$ROOT/tests/fixtures/keys"

# bench_workdir NAME: sets WORK to a new directory /tmp/NAME.XXXXXX and
# PIDS to an empty list; on exit, every process in PIDS is stopped and
# waited for, and WORK removed (kept, and named, when KEEP=1).
bench_workdir() {
  WORK="$(mktemp -d "/tmp/$1.XXXXXX")"
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}

# take_ports NAME...: sets each variable to a loopback port free at the time
# of asking, none handed out twice in this run (so not in a subshell: call
# it directly). Below the ephemeral range, so that no outgoing connection (of
# this run or of anything else on the machine) can hold the port when a
# server binds it.
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
used_ports=" "
take_ports() {
  local name p
  for name in "$@"; do
    while :; do
      p=$(( 10000 + RANDOM % (EPHEMERAL_LOW - 10000) ))
      case "$used_ports" in *" $p "*) continue ;; esac
      if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        used_ports="$used_ports$p "
        printf -v "$name" '%s' "$p"
        break
      fi
    done
  done
}

# nginx_conf DIR: writes DIR/nginx.conf for one nginx worker whose files all
# stay in DIR; the rest of the `http` block is read from stdin.
nginx_conf() {
  mkdir -p "$1"
  {
    cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
EOF
    cat
    echo "}"
  } >"$1/nginx.conf"
}

# backend_conf DIR PORT: the fixed backend every system proxies to, nginx
# answering every request with the same small JSON body.
backend_conf() {
  nginx_conf "$1" <<EOF
  server {
    listen 127.0.0.1:$2;
    location / {
      default_type application/json;
      return 200 '{"status":200,"output":{"echo":true,"result":"ok"}}';
    }
  }
EOF
}

# zg_config DIR PORT ADMIN_PORT BACKEND_PORT [CACHE_ENTRIES] [FORWARD_AUTHORIZATION]:
# one zambda-guard instance (one worker thread) enforcing RS256 tokens of the
# benchmark's issuer, with bench-fn callable by $SUBJECT and bench-public
# public.
zg_config() {
  mkdir -p "$1/policies"
  cat >"$1/policies/bench.yaml" <<EOF
zambdas:
  - id: 6f1c2f0e-0b7a-4b8e-9d59-3c2a1d0e5f01
    name: bench-fn
  - id: 7a2d3e1f-1c8b-4c9f-8e6a-4d3b2e1f6a02
    name: bench-public
    type: public
roles:
  - name: bench-callers
    access_policy:
      rule:
        - action: Zambda:InvokeFunction
          resource: [Zambda:Function:bench-fn]
          effect: Allow
actors:
  - subject: "$SUBJECT"
    roles: [bench-callers]
EOF
  cat >"$1/config.yaml" <<EOF
listen: 127.0.0.1:$2
admin_listen: 127.0.0.1:$3
threads: 1
upstream:
  address: 127.0.0.1:$4
auth:
  issuers:
    - issuer: $ISSUER
      audiences: [$AUDIENCE]
      algorithms: [RS256]
      public_key_pem_file: $KEYS/rsa1-public.pem
  token_cache_entries: ${5:-100000}
  forward_authorization: ${6:-true}
policies:
  dir: policies
  watch: false
shutdown:
  upgrade_sock: $1/upgrade.sock
EOF
}

# static_lua FILE PATH [AUTHORIZATION]: a wrk script that POSTs $BODY as
# JSON to PATH, with that Authorization header when one is given.
static_lua() {
  {
    echo 'wrk.method = "POST"'
    echo "wrk.path = \"$2\""
    echo "wrk.body = '$BODY'"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    [ -z "${3:-}" ] || echo "wrk.headers[\"Authorization\"] = \"$3\""
  } >"$1"
}

# fresh_tokens_lua FILE TOKENS PATH: a wrk script that POSTs $BODY to PATH
# with the next token of the file TOKENS (one per line) on every request.
fresh_tokens_lua() {
  cat >"$1" <<EOF
local tokens = {}
for line in io.lines("$2") do tokens[#tokens + 1] = line end
local i = 0
local body = '$BODY'
request = function()
  i = i % #tokens + 1
  return wrk.format("POST", "$3",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[i] }, body)
end
EOF
}

# cpu_ticks_split PID: "user system" CPU time in clock ticks of PID and its
# live children (nginx's worker).
cpu_ticks_split() {
  local u=0 y=0 p a b
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    read -r a b <<<"$(awk '{sub(/^.*\) /, ""); print $12, $13}' "/proc/$p/stat")"
    u=$(( u + a )); y=$(( y + b ))
  done
  echo "$u $y"
}

# cpu_ticks PID: the same, user and system together.
cpu_ticks() {
  local u y
  read -r u y <<<"$(cpu_ticks_split "$1")"
  echo $(( u + y ))
}

# median: the median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# wait_ready URL [TRIES]: polls URL every 0.1 s, at most TRIES times (100),
# until it answers with a 2xx; fails when it never does.
wait_ready() {
  local try
  for try in $(seq 1 "${2:-100}"); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# expect_status NAME WANT URL [curl args...]: POSTs $BODY as JSON to URL and
# exits (keeping WORK) unless the answer's status is WANT; the body is left
# in $WORK/check.body.
expect_status() {
  local name="$1" want="$2" url="$3" got
  shift 3
  got=$(curl -sS -o "$WORK/check.body" -w '%{http_code}' -X POST -H 'content-type: application/json' \
    --data "$BODY" "$@" "$url")
  if [ "$got" != "$want" ]; then
    echo "sanity check failed: $name: HTTP $got, expected $want: $(head -c 300 "$WORK/check.body")" >&2
    KEEP=1
    exit 1
  fi
}

# bad_signature TOKEN: the token with one character changed well inside its
# signature.
bad_signature() {
  local c r
  c="${1: -20:1}"; [ "$c" = A ] && r=B || r=A
  echo "${1:0:${#1}-20}$r${1: -19}"
}
