#!/usr/bin/env bash
# Installs what the test suites use on a fresh machine: kcat and openssl, and the headers librdkafka's
# TLS and SASL build for the Rust security tests (Debian), the Python clients and
# pytest (PyPI, pinned in tests/python/requirements.txt), and s3s-fs, an S3-compatible server
# (crates.io), and Azurite, Azure's storage emulator (npm), for the tiered-storage tests.
# Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# pkg-config, libssl-dev, libsasl2-dev: cmd/kora's tests build librdkafka with rdkafka's `ssl` and
# `sasl` features (tests/rdkafka_security.rs), against the system's OpenSSL and Cyrus SASL.
if ! command -v kcat >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 \
  || ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists openssl libsasl2; then
  $SUDO apt-get update -qq
  # openssl: the TLS tests make their certificate authority with it.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat openssl pkg-config libssl-dev libsasl2-dev >/dev/null
fi
pkg-config --exists openssl libsasl2 \
  || { echo "setup-test-deps: pkg-config finds no openssl or libsasl2 after installing libssl-dev and libsasl2-dev" >&2; exit 1; }
python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked
# 0.15+ needs a newer Rust than the project's minimum; 0.14.1 passed object_store's
# put/get/range/multipart/list/conditional-put calls here.
command -v s3s-fs >/dev/null 2>&1 || cargo install s3s-fs --version 0.14.1 --features binary --locked
command -v azurite-blob >/dev/null 2>&1 || $SUDO npm install -g --no-audit --no-fund --loglevel=error azurite@3.37.0
