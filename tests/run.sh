#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests (multi-process clusters on
# 127.0.0.1) and the pyarrow interop tests they start.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import pyarrow, pytest' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
