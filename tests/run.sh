#!/usr/bin/env bash
# Runs the whole test suite: Rust unit and integration tests (multi-process clusters on
# 127.0.0.1) and the pyarrow interop tests they start.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import pyarrow, pytest, pyiceberg, moto' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
# The chaos suite (jepsen/) draws its report's plots in DejaVu Sans.
if ! dpkg -s fonts-dejavu-core >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq fonts-dejavu-core >/dev/null
fi
if cargo nextest --version >/dev/null 2>&1; then
  # Doc tests first (nextest does not run them), so the run ends with nextest's summary.
  cargo test -p arka --locked --doc
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
