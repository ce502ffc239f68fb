#!/usr/bin/env bash
# Property-based test of the HTTP API against its own `GET /openapi.json`,
# with schemathesis, on its own: installs/starts what it needs (Rust, ffmpeg,
# RabbitMQ, the venv of scripts/prereqs.sh with schemathesis) and runs
# tests/api/schemathesis.rs. That test starts the service with its own AMQP
# prefix, bucket and folders, makes one done and one failed job, runs
# schemathesis with the settings of schemathesis.toml, prints the cases of
# each operation and the statuses they got, then
#   schemathesis: N cases, S server errors, V schema violations
# and fails unless schemathesis passed with 0 and 0. ./scripts/test.sh runs the
# same test among the others. Extra arguments go to the test harness.
# Reports (JUnit, NDJSON) and schemathesis's output of the last run stay in
# target/schemathesis/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/prereqs.sh
source scripts/prereqs.sh
ensure_python_tools
unset RUST_LOG
exec cargo test --test api -- --include-ignored --exact \
  schemathesis::schemathesis_finds_no_server_error_and_no_schema_violation "$@"
