#!/usr/bin/env bash
# Installs the third-party verifiers the interop tests run: jose (npm) and
# PyJWT + jwcrypto (a Python venv), at the versions pinned here.
set -euo pipefail
cd "$(dirname "$0")"
(cd node && npm ci --no-audit --no-fund)
python3 -m venv python/.venv
python/.venv/bin/pip install --quiet --disable-pip-version-check -r python/requirements.txt
