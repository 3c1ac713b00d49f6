#!/usr/bin/env bash
# Runs the request-decode fuzzer for SECONDS (default 60) over the corpus in testdata/.
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP lets the stable toolchain here
# accept them. New inputs go to a scratch corpus; crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
RUSTC_BOOTSTRAP=1 cargo fuzz run request_decode "$scratch" testdata/fuzz/request_decode -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536
