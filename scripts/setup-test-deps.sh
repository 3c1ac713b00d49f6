#!/usr/bin/env bash
# Installs what the test suites use on a fresh machine: kcat (Debian), the Python clients and
# pytest (PyPI, pinned in tests/python/requirements.txt). Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v kcat >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked
