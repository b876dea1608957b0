#!/usr/bin/env bash
# signet against its peers, in one run on this machine, with the ratios:
#   - the crypto floor (aws-lc-rs and ring directly) and signet's in-process
#     signing and verification (criterion: `cargo bench --bench peers`);
#   - jose (Node), PyJWT and jwcrypto (Python) verifying signet's tokens from
#     its JWKS, and signing with keys of the same kind (tests/interop/*/bench.*);
#   - the running server: POST /v1/tokens, and GET /.well-known/jwks.json
#     against nginx serving the same bytes as a static file (wrk).
#
# Needs the interop clients (tests/interop/setup.sh) and wrk; installs nginx
# and wrk with apt if they are missing. Prints a Markdown table for the
# README. WRK_SECONDS (default 6) and PEER_SECONDS (default 2) set the
# durations.
set -euo pipefail
cd "$(dirname "$0")/.."
wrk_seconds=${WRK_SECONDS:-6}
peer_seconds=${PEER_SECONDS:-2}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi
[ -x tests/interop/python/.venv/bin/python ] && [ -d tests/interop/node/node_modules ] || tests/interop/setup.sh

echo "== criterion: floors and signet in-process" >&2
SIGNET_PEERS_INPUT=$work/input.json cargo bench --bench peers -- --noplot >&2
python3 - "$work/input.json" "$peer_seconds" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["seconds"] = float(sys.argv[2])
json.dump(spec, open(sys.argv[1], "w"))
PY

echo "== jose, PyJWT, jwcrypto" >&2
node tests/interop/node/bench.mjs "$work/input.json" > "$work/peers.jsonl"
tests/interop/python/.venv/bin/python tests/interop/python/bench.py "$work/input.json" >> "$work/peers.jsonl"

echo "== the running server, and nginx" >&2
cargo build --release --quiet
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
public=$(free_port); admin=$(free_port); static=$(free_port)
token=bench-admin-token-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
master=$(openssl rand -base64 32)
start_signet() { # worker threads ("" for the default: one per core)
  local home=$work/home-${1:-default}
  mkdir -p "$home"
  cp -r "$work/home-default/keys" "$home/" 2>/dev/null || true
  {
    [ -n "$1" ] && printf '[server]\nworker_threads = %s\n' "$1"
    printf '[purposes.access_token]\nalgorithms = ["EdDSA", "RS256", "ES256"]\n'
  } > "$home/signet.toml"
  (cd "$home" && SIGNET_MASTER_KEYS=$master SIGNET_ADMIN_TOKENS="bench:signer:$token" \
    exec "$OLDPWD/target/release/signet" serve --public-addr "127.0.0.1:$public" --admin-addr "127.0.0.1:$admin" \
    > "$home/serve.log" 2>&1) &
  signet_pid=$!
  pids+=($signet_pid)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$public/readyz" >/dev/null && return
    sleep 0.1
  done
  cat "$home/serve.log" >&2
  exit 1
}
stop_signet() {
  kill "$signet_pid"
  wait "$signet_pid" 2>/dev/null || true
}
start_signet ""

wrk_run() { # name, then wrk arguments; appends "name rps p99_ms" to wrk.txt
  local name=$1; shift
  local out
  out=$(wrk -t1 -c32 -d"${wrk_seconds}s" --latency "$@")
  echo "$out" >&2
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$name: some responses were errors; the figure would be meaningless" >&2
    exit 1
  fi
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}')
  echo "$name $rps $p99" >> "$work/wrk.txt"
}
for alg in EdDSA RS256 ES256; do
  ALG=$alg TOKEN=$token wrk_run "sign-$alg" -s benches/peers/sign.lua "http://127.0.0.1:$admin/v1/tokens"
done
wrk_run jwks-signet "http://127.0.0.1:$public/.well-known/jwks.json"

# nginx serves the same bytes as a static file (with an ETag), with one
# worker and with one per core (signet runs a worker thread per core).
mkdir -p "$work/www/.well-known"
curl -sf "http://127.0.0.1:$public/.well-known/jwks.json" > "$work/www/.well-known/jwks.json"
# nginx's workers run as an unprivileged user: let them read the file.
chmod -R a+rX "$work"
for workers in 1 auto; do
  conf=$work/nginx-$workers
  mkdir -p "$conf"
  cat > "$conf/nginx.conf" <<CONF
worker_processes $workers;
pid $conf/nginx.pid;
error_log $conf/error.log;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  types { application/json json; }
  client_body_temp_path $conf;
  proxy_temp_path $conf;
  fastcgi_temp_path $conf;
  uwsgi_temp_path $conf;
  scgi_temp_path $conf;
  server {
    listen 127.0.0.1:$static;
    root $work/www;
  }
}
CONF
  nginx -c "$conf/nginx.conf" &
  nginx_pid=$!
  pids+=($nginx_pid)
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$static/.well-known/jwks.json" >/dev/null && break
    sleep 0.1
  done
  wrk_run "jwks-nginx-$workers" "http://127.0.0.1:$static/.well-known/jwks.json"
  kill "$nginx_pid"
  wait "$nginx_pid" 2>/dev/null || true
done

# signet with one runtime worker, like nginx with one worker.
stop_signet
start_signet 1
wrk_run jwks-signet-1 "http://127.0.0.1:$public/.well-known/jwks.json"
stop_signet

python3 benches/peers/table.py "$work" target/criterion
