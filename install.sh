#!/usr/bin/env bash
# Builds and installs the `kora` binary (release) into ~/.cargo/bin.
#   ./install.sh && kora dev
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo >/dev/null 2>&1; then
  echo "install.sh: cargo is required (https://rustup.rs)" >&2
  exit 1
fi
cargo install --path cmd/kora --locked --force
bin="$(command -v kora || true)"
if [ -z "$bin" ]; then
  echo "installed to ${CARGO_HOME:-$HOME/.cargo}/bin/kora; add that directory to PATH" >&2
else
  echo "installed $bin ($("$bin" --version))"
fi
