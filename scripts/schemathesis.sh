#!/usr/bin/env bash
# Property-based test of the HTTP API against its OpenAPI description, with
# schemathesis (https://schemathesis.readthedocs.io), against the real service:
#
#   1. schemathesis comes from the venv of scripts/prereqs.sh (target/pyenv);
#   2. `target/debug/transcoder serve` starts on a free port with its own AMQP
#      prefix (t-schema-<random>), its own data and scratch folders and a
#      1 MiB upload limit, on the local broker and the embedded store;
#   3. two real jobs are made first (one done, one failed), and the job-id
#      operations draw their `{id}` half of the time from them, so that the
#      status documents of finished jobs, downloads and Range requests are
#      exercised too (random ids only ever reach the 404 branch); the
#      resumable-upload operations on `/video/uploads/{id}` get, half of the
#      time, an upload made for the case just before it is sent (new, partly
#      stored or finished; scripts/schemathesis_hooks.py), and in the
#      stateful phase the ones `POST /video/uploads` made (links on Location);
#   4. schemathesis runs every check but use_after_free (see below) on every
#      operation, a fixed number of examples per operation, the whole run
#      bounded by `timeout`;
#   5. the service gets SIGTERM and is waited for; its AMQP topology and its
#      folders are removed; the cases of each operation and the statuses
#      they got are listed, then a summary line is printed:
#        schemathesis: N cases, S server errors, V schema violations
#
# The schema is the service's own `GET /openapi.json` (generated from the
# handlers and types); the run fails when the service does not serve it.
#
# Environment: TRANSCODER_BIN (default target/debug/transcoder, built when
# missing), TRANSCODER_SCHEMATHESIS_MAX_EXAMPLES (25), _TIMEOUT (600 s),
# _SEED (random), _WORKERS (2), TRANSCODER__AMQP__URL (the local broker).
# Reports (JUnit, NDJSON) and the service log of the last run stay in
# target/schemathesis/. Exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MAX_EXAMPLES="${TRANSCODER_SCHEMATHESIS_MAX_EXAMPLES:-25}"
WALL_SECONDS="${TRANSCODER_SCHEMATHESIS_TIMEOUT:-600}"
WORKERS="${TRANSCODER_SCHEMATHESIS_WORKERS:-2}"
BIN="${TRANSCODER_BIN:-$ROOT/target/debug/transcoder}"
AMQP_URL="${TRANSCODER__AMQP__URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
REPORT_DIR="$ROOT/target/schemathesis"

# shellcheck source=scripts/prereqs.sh
TRANSCODER_PREREQS_FUNCTIONS_ONLY=1 source "$ROOT/scripts/prereqs.sh"
say() { printf '==> %s\n' "$*"; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

ensure_ffmpeg # the worker transcodes; the fixture video is made with it
ensure_broker
ensure_python_tools # target/pyenv with TRANSCODER_PY_PACKAGES, schemathesis among them
PY="$ROOT/target/pyenv/bin/python"
ST="$ROOT/target/pyenv/bin/schemathesis"
if [[ ! -x "$BIN" ]]; then
  ensure_rust
  say "cargo build (no $BIN yet)"
  cargo build --quiet
fi

tmp="$(mktemp -d)"
prefix="t-schema-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
service_pid=""

delete_topology() {
  # The exchanges and durable queues the service declared under its prefix.
  "$PY" - "$AMQP_URL" "$prefix" <<'EOF' || true
import sys
import pika

url, prefix = sys.argv[1], sys.argv[2]
try:
    conn = pika.BlockingConnection(pika.URLParameters(url))
except Exception as e:  # the broker is gone: nothing to clean
    print(f"==> could not remove the AMQP topology of {prefix}: {e}", file=sys.stderr)
    sys.exit(0)
for kind, names in (("queue", ["jobs", "jobs.dead"]),
                    ("exchange", ["jobs", "jobs.dlx", "control", "notify.default"])):
    for name in names:
        ch = conn.channel()  # a missing name closes the channel: one per name
        try:
            if kind == "queue":
                ch.queue_delete(f"{prefix}.{name}")
            else:
                ch.exchange_delete(f"{prefix}.{name}")
            ch.close()
        except Exception:
            pass
conn.close()
EOF
}

stop_service() {
  [[ -n "$service_pid" ]] || return 0
  if kill -0 "$service_pid" 2>/dev/null; then
    kill -TERM "$service_pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$service_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$service_pid" 2>/dev/null; then
      say "the service did not stop within 30 s of SIGTERM; killing it"
      kill -KILL "$service_pid" 2>/dev/null || true
    fi
  fi
  wait "$service_pid" 2>/dev/null || true
  service_pid=""
}

cleanup() {
  local status=$?
  stop_service
  if [[ -f "$tmp/service.log" ]]; then
    mkdir -p "$REPORT_DIR"
    cp "$tmp/service.log" "$REPORT_DIR/service.log"
  fi
  delete_topology
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the service --------------------------------------------------------------
mkdir -p "$tmp/data" "$tmp/scratch"
say "starting $BIN serve (prefix $prefix)"
TRANSCODER__HTTP__BIND=127.0.0.1:0 \
  TRANSCODER__HTTP__MAX_UPLOAD_BYTES=1048576 \
  TRANSCODER__AMQP__URL="$AMQP_URL" \
  TRANSCODER__AMQP__PREFIX="$prefix" \
  TRANSCODER__STORAGE__DATA_DIR="$tmp/data" \
  TRANSCODER__STORAGE__ENDPOINT="" \
  TRANSCODER__WORKER__SCRATCH_DIR="$tmp/scratch" \
  TRANSCODER__WORKER__SHUTDOWN_GRACE_SECONDS=5 \
  RUST_LOG="${RUST_LOG:-info}" \
  "$BIN" serve --log-format json >"$tmp/service.log" 2>&1 &
service_pid=$!

# The port is the one the service bound (127.0.0.1:0): read from its log.
base=""
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  kill -0 "$service_pid" 2>/dev/null || { tail -n 30 "$tmp/service.log" >&2; die "the service exited at start"; }
  if [[ -z "$base" ]]; then
    addr="$(sed -n 's/.*"message":"API listening","addr":"Some(\([0-9.:]*\))".*/\1/p' "$tmp/service.log" | head -n 1)"
    [[ -n "$addr" ]] && base="http://$addr"
  fi
  if [[ -n "$base" ]] && [[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" == 200 ]]; then
    break
  fi
  sleep 0.3
done
[[ -n "$base" && "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" == 200 ]] \
  || { tail -n 30 "$tmp/service.log" >&2; die "the service was not ready within 60 s"; }
say "service ready at $base"

# --- two finished jobs --------------------------------------------------------
# wait_for_job ID STATUS: polls the status document until it reaches STATUS.
wait_for_job() {
  local id="$1" want="$2" got="" deadline=$((SECONDS + 90))
  while ((SECONDS < deadline)); do
    got="$(curl -s "$base/video/status/$id" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)"
    [[ "$got" == "$want" ]] && return 0
    case "$got" in done | failed | cancelled) break ;; esac
    sleep 0.3
  done
  die "job $id is ${got:-unknown}, expected $want"
}
submit() { # submit FILE QUERY → job id
  curl -sS --fail-with-body --data-binary "@$1" -H 'Content-Type: application/octet-stream' \
    "$base/video/convert?$2" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
ffmpeg -loglevel error -nostdin -f lavfi -i testsrc=size=160x120:rate=10 -f lavfi -i sine=frequency=440 \
  -t 1 -pix_fmt yuv420p -c:v libx264 -c:a aac -shortest "$tmp/clip.mp4"
# An MP4 signature and nothing a decoder can use: the worker fails it.
{ printf '\0\0\0\030ftypisom\0\0\2\0isomiso2'; head -c 1000 /dev/zero; } >"$tmp/broken.mp4"
done_id="$(submit "$tmp/clip.mp4" 'format=webm&height=64')" || die "could not submit the fixture video"
failed_id="$(submit "$tmp/broken.mp4" 'priority=9')" || die "could not submit the broken fixture"
wait_for_job "$done_id" "done"
wait_for_job "$failed_id" "failed"
say "fixture jobs: $done_id (done), $failed_id (failed)"

# --- the schema ---------------------------------------------------------------
code="$(curl -s -o "$tmp/served-openapi.json" -w '%{http_code}' "$base/openapi.json")"
[[ "$code" == 200 ]] || die "GET /openapi.json answers $code"
say "schema: $base/openapi.json (served)"
schema_args=("$base/openapi.json" --url "$base")

# Settings (schemathesis.toml):
# - video/* bodies are sent as video/mp4 etc. (scripts/schemathesis_hooks.py);
# - no crash cache in the working tree (.schemathesis/);
# - warnings that mean the schema or this configuration is broken fail the run;
# - positive_data_acceptance expects 2xx for schema-valid requests. A body
#   can be schema-valid (any bytes) and still not be a video (415), too big
#   (413), empty (400), over the client's quota (429) or reuse an
#   Idempotency-Key with another body (422, or 409 while the first runs): the
#   service must refuse those, and the validation_mismatch warning saying
#   that most generated bodies are refused is expected there. A schema-valid
#   Range can lie past the end of the file: 416;
# - negative_data_rejection is off for the job-id operations: they ignore
#   unknown query parameters and a Range that is not a bytes range, as HTTP
#   allows (RFC 9110 §14.2), so a "violating" request to an existing job
#   rightly gets 200. It stays on for POST /video/convert, which refuses
#   unknown options;
# - GET /video/events/{id} is a Server-Sent Events stream that stays open
#   until the job ends (keep-alive comments meanwhile): schemathesis reads
#   one event and closes it, so it does not hang and need not be excluded;
# - the job-id operations take `{id}` half of the time from the fixture jobs;
# - the tus operations (`/video/uploads`): a missing `Tus-Resumable` is 412
#   (tus 1.0.0), and a schema-violating request may be refused with 412 or
#   413 (an Upload-Length over the limit) too. positive_data_acceptance
#   allows what a schema-valid request can still get: a body that is not a
#   video (415, and the upload is removed), past Upload-Length (413), at
#   another Upload-Offset than the upload's (409), on an upload that a
#   DELETE or a 415 removed (404), options refused (400/422). Body-only
#   "negative" cases are dropped by the hooks (any bytes are a valid body).
#   Note: `checks.X.enabled = false` in an [[operations]] block does not
#   beat `--checks all` in schemathesis 4.32.5 (the CLI's explicit list
#   wins in ChecksConfig.from_hierarchy), so expected statuses are set
#   instead.
cat >"$tmp/schemathesis.toml" <<EOF
hooks = "$ROOT/scripts/schemathesis_hooks.py"

[cache]
enabled = false

[warnings]
fail-on = ["missing_deserializer", "unsupported_regex", "unresolvable_reference", "unmatched_filter", "dictionary_mismatch"]

[dictionaries.jobs]
values = ["$done_id", "$failed_id"]

[[operations]]
include-name = "POST /video/convert"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "409", "413", "415", "422", "429", "5xx"]
warnings.display = ["missing_auth", "missing_test_data", "base_url_mismatch", "missing_deserializer", "unused_openapi_auth", "unsupported_regex", "method_not_allowed", "unresolvable_reference", "rate_limited", "dictionary_mismatch", "timeout_units"]

[[operations]]
include-name = "GET /video/download/{id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "416", "5xx"]

[[operations]]
include-name = "GET /video/events/{id}"
max-stream-events = 1

[[operations]]
include-name = "POST /video/uploads"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "413", "415", "422", "429", "5xx"]
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429", "5xx"]
checks.missing_required_header.expected-statuses = ["400", "401", "403", "406", "412", "415", "422"]

[[operations]]
include-name = "PATCH /video/uploads/{id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "413", "415", "429", "5xx"]
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429", "5xx"]
checks.missing_required_header.expected-statuses = ["400", "401", "403", "406", "412", "415", "422"]

[[operations]]
include-name = "HEAD /video/uploads/{id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "429", "5xx"]
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429", "5xx"]
checks.missing_required_header.expected-statuses = ["400", "401", "403", "406", "412", "415", "422"]

[[operations]]
include-name = "DELETE /video/uploads/{id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "5xx"]
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429", "5xx"]
checks.missing_required_header.expected-statuses = ["400", "401", "403", "406", "412", "415", "422"]

[[operations]]
include-path-regex = "^/video/(status|download|events)/"
checks.negative_data_rejection.enabled = false
parameters = { "path.id" = { dictionary = "jobs", probability = 0.5 } }
EOF

# --- the run ------------------------------------------------------------------
# Checks: all, except use_after_free, which assumes DELETE removes the
# resource; here DELETE cancels the job, whose status stays readable (200,
# status "cancelled") as the specification requires.
seed_args=()
[[ -n "${TRANSCODER_SCHEMATHESIS_SEED:-}" ]] && seed_args=(--seed "$TRANSCODER_SCHEMATHESIS_SEED")
mkdir -p "$REPORT_DIR"
rm -f "$REPORT_DIR"/*.xml "$REPORT_DIR"/*.ndjson
say "schemathesis run (at most $MAX_EXAMPLES examples per operation, ${WALL_SECONDS}s)"
st_status=0
TRANSCODER_SCHEMATHESIS_BASE="$base" timeout --signal=TERM --kill-after=30 "$WALL_SECONDS" \
  "$ST" --config-file "$tmp/schemathesis.toml" --no-color run "${schema_args[@]}" \
  --checks all --exclude-checks use_after_free \
  --max-examples "$MAX_EXAMPLES" --continue-on-failure \
  --workers "$WORKERS" \
  --request-timeout 10 \
  --generation-database none \
  --suppress-health-check too_slow,filter_too_much \
  --report junit,ndjson --report-dir "$REPORT_DIR" \
  "${seed_args[@]}" 2>&1 | tee "$tmp/schemathesis.out" || st_status=$?
((st_status == 124)) && say "schemathesis did not finish within ${WALL_SECONDS}s"

# --- the summary --------------------------------------------------------------
summary="$("$PY" - "$REPORT_DIR" <<'EOF'
import collections, glob, json, sys

cases = server = schema = 0
# Per documented operation: its cases and the statuses they got (probes of
# undocumented methods are left out).
per_operation = collections.defaultdict(collections.Counter)
for path in glob.glob(f"{sys.argv[1]}/*.ndjson"):
    for line in open(path, encoding="utf-8"):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        (kind, data), = event.items() if isinstance(event, dict) and len(event) == 1 else ((None, None),)
        if kind != "ScenarioFinished":
            continue
        recorder = data.get("recorder", {})
        cases += len(recorder.get("cases", {}))
        interactions = recorder.get("interactions", {})
        for case_id, node in recorder.get("cases", {}).items():
            case = node.get("value", {})
            phase = (case.get("meta") or {}).get("phase") or {}
            if (phase.get("data") or {}).get("scenario") == "unspecified_http_method":
                continue
            response = (interactions.get(case_id) or {}).get("response") or {}
            per_operation[f"{case.get('method')} {case.get('path')}"][response.get("status_code", "none")] += 1
        for checks in recorder.get("checks", {}).values():
            for check in checks:
                if str(check.get("status", "")).lower() != "failure":
                    continue
                name = check.get("name")
                if name == "not_a_server_error":
                    server += 1
                elif name == "response_schema_conformance":
                    schema += 1
for operation, statuses in sorted(per_operation.items(), key=lambda item: (item[0].split(" ")[-1], item[0])):
    answers = " ".join(f"{status}x{n}" for status, n in sorted(statuses.items(), key=lambda item: str(item[0])))
    print(f"  {operation}: {sum(statuses.values())} cases ({answers})")
print(f"schemathesis: {cases} cases, {server} server errors, {schema} schema violations")
EOF
)" || summary="schemathesis: ? cases, ? server errors, ? schema violations (could not read the report)"

if ! kill -0 "$service_pid" 2>/dev/null; then
  say "the service died during the run"
  st_status=${st_status:-1}
  ((st_status != 0)) || st_status=1
fi
printf '%s\n' "$summary"
if ((st_status != 0)); then
  say "schemathesis failed (status $st_status); reports and the service log in $REPORT_DIR"
  exit "$st_status"
fi
