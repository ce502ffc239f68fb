#!/usr/bin/env bash
# Install/start what the test suite needs (ffmpeg, RabbitMQ, a Python venv
# with pika and moto, the npm packages of tests/browser), then run every test, ignored ones included.
# Extra arguments go to the test harness, e.g. a test name filter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/prereqs.sh
source scripts/prereqs.sh
ensure_python_tools
ensure_node_tools
# Deployment files (Dockerfile, compose, Kubernetes overlays): offline checks.
./scripts/validate-deploy.sh
unset RUST_LOG
_say "cargo test -- --include-ignored --test-threads=2 $*"
status=0
cargo test -- --include-ignored --test-threads=2 "$@" || status=$?
((status != 0)) || ./scripts/browser-test.sh || status=$?
printf '==> tests finished with status %d after %dm%02ds\n' "$status" $((SECONDS / 60)) $((SECONDS % 60))
exit "$status"
