#!/usr/bin/env bash
# The test command (README): lint, build, unit and end-to-end tests, benches compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo bench --no-run -q
cargo test --workspace -q 2>&1
