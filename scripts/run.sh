#!/usr/bin/env bash
# Install/start what transcoder needs, build it, and run `transcoder serve`
# (API on http://127.0.0.1:8080, workers, embedded object store under ./data
# unless storage.endpoint is set). Extra arguments go to `transcoder serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/prereqs.sh
source scripts/prereqs.sh
_say "cargo build --release"
cargo build --release
exec "${CARGO_TARGET_DIR:-target}/release/transcoder" serve "$@"
