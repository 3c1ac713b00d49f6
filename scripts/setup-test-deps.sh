#!/usr/bin/env bash
# Installs what the test suites use on a fresh machine: kcat and openssl (Debian), the Python clients and
# pytest (PyPI, pinned in tests/python/requirements.txt), and s3s-fs, an S3-compatible server
# (crates.io), and Azurite, Azure's storage emulator (npm), for the tiered-storage tests.
# Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v kcat >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  # openssl: the TLS tests make their certificate authority with it.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat openssl >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked
# 0.15+ needs a newer Rust than the project's minimum; 0.14.1 passed object_store's
# put/get/range/multipart/list/conditional-put calls here.
command -v s3s-fs >/dev/null 2>&1 || cargo install s3s-fs --version 0.14.1 --features binary --locked
command -v azurite-blob >/dev/null 2>&1 || $SUDO npm install -g --no-audit --no-fund --loglevel=error azurite@3.37.0
