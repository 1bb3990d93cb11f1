#!/usr/bin/env bash
# The test command of the README and of CI: formatting, lints, then every
# test of the workspace (unit, integration, property, browser and broker
# tests; the latter skip with a message when chromium or a broker is absent,
# unless GMV_REQUIRE_BROWSER=1 / GMV_REQUIRE_BROKER=1, as CI sets).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release
