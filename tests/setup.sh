#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then
# nothing runs until the test command (README, "Test"):
#   - PostgreSQL (initdb, pg_ctl) and the postgres OS user, for the store and
#     replica tests; openssl, for their TLS certificate;
#   - SoftHSM2, for the PKCS#11 tests;
#   - jose (npm), PyJWT, jwcrypto, python-pkcs11 and schemathesis (a Python
#     venv), the third-party clients of the interop and contract tests.
# What is already there is kept. apt needs root (as on CI), or sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "$@" >/dev/null
}

missing=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
{ [ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null 2>&1; } || missing+=(softhsm2)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/setup.sh: installing ${missing[*]} (apt)"
  apt_install "${missing[@]}"
fi
# The throwaway clusters run as the postgres OS user (the server refuses root).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home postgres
fi

tests/interop/setup.sh
echo "tests/setup.sh: ready; run: cargo test -- --include-ignored"
