#!/usr/bin/env bash
# Prerequisites of transcoder on Debian 12: ffmpeg/ffprobe, a RabbitMQ broker
# answering on 127.0.0.1:5672, and a Rust toolchain. Safe to run again: it
# only installs or starts what is missing.
#
#   ./scripts/prereqs.sh            # check/install, then exit
#   source scripts/prereqs.sh       # same, and keep the helper functions
#                                   # (ensure_python_tools) in this shell
#
# Installs with apt-get; runs it directly as root, through sudo otherwise.
set -euo pipefail

TRANSCODER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Python packages the test suite needs (pip requirement specifiers):
# pika and moto for the tests; kubernetes-validate and the cloudcoil models
# (schemas of the KEDA and Prometheus Operator custom resources) for
# scripts/validate-deploy.sh; schemathesis for tests/api/schemathesis.rs (the
# HTTP API against its own /openapi.json, settings in schemathesis.toml,
# written for 4.32); standardwebhooks to verify webhook
# signatures as a receiver would; tuspy, a resumable-upload client from
# outside this project; m3u8, a real HLS playlist parser.
TRANSCODER_PY_PACKAGES=(
  pika
  "moto[server]"
  "kubernetes-validate>=1.32"
  "cloudcoil==0.6.0"
  "cloudcoil-models-keda==2.16.1.0"
  "cloudcoil-models-prometheus-operator==0.80.1.0"
  "schemathesis==4.32.5"
  "standardwebhooks==1.1.0"
  "tuspy==1.1.0"
  "m3u8==6.0.0"
)
# RabbitMQ closes a channel whose delivery stays unacked longer than this;
# it must exceed worker.job_timeout_seconds (3600 s by default). Written to
# /etc/rabbitmq/rabbitmq.conf only when this script installs/starts the broker.
TRANSCODER_CONSUMER_TIMEOUT_MS="${TRANSCODER_CONSUMER_TIMEOUT_MS:-7200000}"
TRANSCODER_BROKER_WAIT_SECONDS="${TRANSCODER_BROKER_WAIT_SECONDS:-90}"

_say() { printf '==> %s\n' "$*"; }
_die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }

_as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    _die "root privileges needed (not root, no sudo) to run: $*"
  fi
}

_apt_install() {
  if [[ "${_TRANSCODER_APT_UPDATED:-0}" != 1 ]]; then
    _say "apt-get update"
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    _TRANSCODER_APT_UPDATED=1
  fi
  _say "apt-get install $*"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

_broker_answers() {
  timeout 2 bash -c '</dev/tcp/127.0.0.1/5672' >/dev/null 2>&1
}

_rabbitmq_server_bin() {
  command -v rabbitmq-server 2>/dev/null \
    || { [[ -x /usr/sbin/rabbitmq-server ]] && echo /usr/sbin/rabbitmq-server; }
}

_ensure_consumer_timeout() {
  local conf=/etc/rabbitmq/rabbitmq.conf
  if [[ -f "$conf" ]] && grep -q '^[[:space:]]*consumer_timeout' "$conf"; then
    return 0
  fi
  _say "setting consumer_timeout = ${TRANSCODER_CONSUMER_TIMEOUT_MS} ms in $conf"
  _as_root mkdir -p /etc/rabbitmq
  printf 'consumer_timeout = %s\n' "$TRANSCODER_CONSUMER_TIMEOUT_MS" | _as_root tee -a "$conf" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "==> ERROR: cargo not found: install a Rust toolchain >= 1.88 with rustup (https://rustup.rs) and run this again." >&2
    exit 1
  fi
}

ensure_ffmpeg() {
  if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
    return 0
  fi
  _apt_install ffmpeg
  command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 \
    || _die "ffmpeg/ffprobe still missing after installing the ffmpeg package"
}

ensure_broker() {
  if _broker_answers; then
    _say "RabbitMQ answers on 127.0.0.1:5672"
    return 0
  fi
  local server
  if ! server="$(_rabbitmq_server_bin)"; then
    # Configure first: the package's post-install script starts the broker.
    _ensure_consumer_timeout
    _apt_install rabbitmq-server
    server="$(_rabbitmq_server_bin)" || _die "rabbitmq-server missing after installing it"
  else
    _ensure_consumer_timeout
  fi
  if ! _broker_answers; then
    _say "starting RabbitMQ ($server -detached)"
    # Fails harmlessly when a node is already booting; the wait below decides.
    _as_root "$server" -detached || true
  fi
  _say "waiting up to ${TRANSCODER_BROKER_WAIT_SECONDS}s for RabbitMQ on 127.0.0.1:5672"
  local deadline=$((SECONDS + TRANSCODER_BROKER_WAIT_SECONDS))
  until _broker_answers; do
    if ((SECONDS >= deadline)); then
      _die "RabbitMQ did not answer on 127.0.0.1:5672 within ${TRANSCODER_BROKER_WAIT_SECONDS}s; see /var/log/rabbitmq/ and 'rabbitmqctl status'"
    fi
    sleep 1
  done
  _say "RabbitMQ is up"
}

# Python tools for the test suite: a venv at target/pyenv with
# TRANSCODER_PY_PACKAGES. Puts the venv first on PATH and exports
# TRANSCODER_TEST_PYTHON.
ensure_python_tools() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    _apt_install python3 python3-venv python3-pip
  fi
  local venv="$TRANSCODER_ROOT/target/pyenv"
  local stamp="$venv/.transcoder-packages"
  local wanted
  wanted="$(printf '%s\n' "${TRANSCODER_PY_PACKAGES[@]}")"
  if [[ ! -x "$venv/bin/python" ]]; then
    _say "creating Python venv $venv"
    python3 -m venv --clear "$venv"
  fi
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    _say "pip install ${TRANSCODER_PY_PACKAGES[*]}"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "${TRANSCODER_PY_PACKAGES[@]}"
    printf '%s\n' "$wanted" >"$stamp"
  fi
  export VIRTUAL_ENV="$venv"
  export PATH="$venv/bin:$PATH"
  export TRANSCODER_TEST_PYTHON="$venv/bin/python"
  _say "Python tools ready ($TRANSCODER_TEST_PYTHON)"
}

# Node.js (>= 20) and the npm packages of tests/browser: playwright-core for
# the browser tests, tus-js-client for the resumable-upload tests.
ensure_node_tools() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    _apt_install nodejs npm
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  ((major >= 20)) || _die "Node.js >= 20 is needed by tests/browser, found $(node --version)"
  local dir="$TRANSCODER_ROOT/tests/browser"
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    _say "npm ci (tests/browser)"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
  export TRANSCODER_TEST_NODE_MODULES="$dir/node_modules"
}

# TRANSCODER_PREREQS_FUNCTIONS_ONLY=1: define the helpers, check nothing
# (scripts/validate-deploy.sh needs only ensure_python_tools).
if [[ "${TRANSCODER_PREREQS_FUNCTIONS_ONLY:-0}" != 1 ]]; then
  ensure_rust
  ensure_ffmpeg
  ensure_broker
fi
