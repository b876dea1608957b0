#!/usr/bin/env bash
# Signing through a PKCS#11 token (SoftHSM2) against signet's software keys,
# in one run on this machine, over HTTP (wrk against POST /v1/tokens):
#   - per algorithm: access_token's keys in the token, refresh_token's the
#     same algorithms in software (`signer = "software"`), same server;
#   - the session pool: signer.sessions = 1 against a pool of 4, with four
#     signatures allowed at once (server.signing_concurrency = 4).
#
# Needs softhsm2 and wrk (installed with apt if missing). Prints a Markdown
# table for the README. WRK_SECONDS (default 6) sets each run's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${WRK_SECONDS:-6}
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null 2>&1 || [ ! -e /usr/lib/softhsm/libsofthsm2.so ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk softhsm2 >/dev/null
fi
cargo build --release --quiet

export SOFTHSM2_CONF=$work/softhsm2.conf
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label bench --so-pin 12345678 --pin 87654321 >/dev/null
export SIGNET_PKCS11_PIN=87654321
export SIGNET_MASTER_KEYS
SIGNET_MASTER_KEYS=$(openssl rand -base64 32)
token=bench-admin-token-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
export SIGNET_ADMIN_TOKENS="bench:signer:$token"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
public=$(free_port); admin=$(free_port)

cat > "$work/signet.toml" <<TOML
[store]
path = "$work/keys"
[server]
signing_concurrency = 4
[signer]
kind = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "bench"
[purposes.access_token]
algorithms = ["EdDSA", "RS256", "PS256", "ES256"]
[purposes.refresh_token]
algorithms = ["EdDSA", "RS256", "PS256", "ES256"]
signer = "software"
TOML

start() { # sessions
  SIGNET_PKCS11_SESSIONS=$1 target/release/signet --config "$work/signet.toml" serve \
    --public-addr "127.0.0.1:$public" --admin-addr "127.0.0.1:$admin" > "$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$public/readyz" >/dev/null && return
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

rps() { # purpose alg -> requests per second
  local out
  out=$(PURPOSE=$1 ALG=$2 TOKEN=$token wrk -t2 -c16 -d"${seconds}s" -s benches/peers/sign.lua "http://127.0.0.1:$admin/v1/tokens")
  echo "$out" >&2
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$1 $2: some responses were errors; the figure would be meaningless" >&2
    exit 1
  fi
  echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}'
}

start 4
echo "| algorithm | software keys (req/s) | SoftHSM2, 4 sessions (req/s) | SoftHSM2, 1 session (req/s) |"
echo "|---|---:|---:|---:|"
declare -A pooled soft
for alg in EdDSA RS256 PS256 ES256; do
  soft[$alg]=$(rps refresh_token $alg)
  pooled[$alg]=$(rps access_token $alg)
done
stop
start 1
for alg in EdDSA RS256 PS256 ES256; do
  single=$(rps access_token $alg)
  echo "| $alg | ${soft[$alg]} | ${pooled[$alg]} | $single |"
done
stop
