#!/usr/bin/env bash
# Browser test of the web page (GET /): Debian's headless Chromium, driven by
# playwright-core (tests/browser), uploads a generated clip to a real
# `transcoder serve` (embedded store, the local RabbitMQ broker), waits for
# the live progress and the download link, and saves a screenshot to
# target/screenshots/upload.png. Then tests/browser/offline.test.mjs uploads
# a bigger (padded) clip over a throttled uplink, takes the network away
# mid-upload and gives it back: the resumable (tus) upload carries on and
# the job completes (target/screenshots/offline.png). Last,
# tests/browser/play.test.mjs, against a serve of its own (its own
# amqp.prefix and folders): a 20 s 1280x720 clip converted through the API
# as hls and as dash is played to the end by hls.js and by dash.js (npm),
# through every rendition and across segment boundaries
# (target/screenshots/play-hls.png, play-dash.png), and the web page plays
# an hls job it uploaded, with its poster and storyboard previews
# (target/screenshots/page-player.png).
#
#   ./scripts/browser-test.sh        # after a build (cargo build / cargo test)
#
# Needs target/debug/transcoder (it does not build), Node.js >= 20 and npm;
# installs chromium (apt-get) and the npm packages when missing, and starts
# the broker like scripts/prereqs.sh does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/prereqs.sh
TRANSCODER_PREREQS_FUNCTIONS_ONLY=1 source scripts/prereqs.sh

BIN="${TRANSCODER_BIN:-target/debug/transcoder}"
CHROMIUM=/usr/bin/chromium
SCREENSHOT=target/screenshots/upload.png
OFFLINE_SCREENSHOT=target/screenshots/offline.png
PLAY_SCREENSHOT=target/screenshots/page-player.png
# The offline test's clip: the 3 s clip plus an MP4 `free` box (still an
# MP4 to the sniffer and to ffmpeg), uploaded at OFFLINE_UPLOAD_BPS.
OFFLINE_PAD_BYTES=$((16 * 1024 * 1024))
OFFLINE_UPLOAD_BPS=$((2 * 1024 * 1024))
# A PATCH whose body stops arriving (the browser went offline) is ended,
# and its bytes stored, after this many silent seconds.
BODY_IDLE_SECONDS=5
READY_SECONDS=60
STOP_SECONDS=90

[[ -x "$BIN" ]] || _die "$BIN not found: build it first (cargo build, or ./scripts/test.sh)"
ensure_ffmpeg
ensure_broker
if [[ ! -x "$CHROMIUM" ]]; then
  _apt_install chromium fonts-liberation
  [[ -x "$CHROMIUM" ]] || _die "$CHROMIUM still missing after installing the chromium package"
fi
ensure_node_tools

work="$(mktemp -d "${TMPDIR:-/tmp}/transcoder-browser.XXXXXX")"
pid=""
url=""
stop_service() {
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_SECONDS))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      printf '==> transcoder serve did not stop within %ss of SIGTERM; killing it\n' "$STOP_SECONDS" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  pid=""
}
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  stop_service
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
show_log() {
  printf '==> last lines of the service log:\n' >&2
  [[ -n "$log" ]] && tail -n 40 "$log" >&2 || true
}

clip="$work/clip.mp4"
_say "generating a 3 s 320x240 clip with audio"
ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i testsrc=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 3 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest "$clip"
play_clip="$work/clip-20s-720p.mp4"
_say "generating a 20 s 1280x720 25 fps clip with audio for the playback test"
ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -crf 26 -pix_fmt yuv420p -c:a aac -shortest "$play_clip"
padded="$work/clip-padded.mp4"
_say "padding a copy to $(( OFFLINE_PAD_BYTES / 1024 / 1024 )) MiB more (an MP4 free box) for the offline test"
python3 - "$clip" "$padded" "$OFFLINE_PAD_BYTES" <<'PY'
import shutil, struct, sys
src, dst, pad = sys.argv[1], sys.argv[2], int(sys.argv[3])
shutil.copyfile(src, dst)
with open(dst, "ab") as f:
    f.write(struct.pack(">I", pad) + b"free")
    f.write(bytes(pad - 8))
PY

# start_service NAME [VAR=value…]: a `transcoder serve` on a free port with
# its own amqp.prefix and folders under $work/NAME (extra settings as
# environment assignments); sets pid and url once /readyz answers 200.
start_service() {
  local name="$1"
  shift
  local port prefix deadline
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  url="http://127.0.0.1:$port"
  prefix="t-browser-$name-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  mkdir -p "$work/$name/data" "$work/$name/scratch"
  log="$work/$name/serve.log"
  _say "starting $BIN serve on $url (amqp.prefix $prefix)"
  env TRANSCODER__HTTP__BIND="127.0.0.1:$port" \
    TRANSCODER__AMQP__PREFIX="$prefix" \
    TRANSCODER__STORAGE__DATA_DIR="$work/$name/data" \
    TRANSCODER__WORKER__SCRATCH_DIR="$work/$name/scratch" \
    "$@" "$BIN" serve >"$log" 2>&1 &
  pid=$!

  deadline=$((SECONDS + READY_SECONDS))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/readyz" || true)" == 200 ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log
      _die "transcoder serve exited before $url/readyz answered 200"
    fi
    if ((SECONDS >= deadline)); then
      show_log
      _die "$url/readyz did not answer 200 within ${READY_SECONDS}s"
    fi
    sleep 0.5
  done
}

log=""
start_service upload TRANSCODER__HTTP__BODY_IDLE_TIMEOUT_SECONDS="$BODY_IDLE_SECONDS"
_say "service ready; running tests/browser/upload.test.mjs"

status=0
TRANSCODER_URL="$url" TRANSCODER_CLIP="$clip" TRANSCODER_SCREENSHOT="$SCREENSHOT" \
  node tests/browser/upload.test.mjs || status=$?
_say "running tests/browser/offline.test.mjs (the network goes away mid-upload)"
offline_status=0
TRANSCODER_URL="$url" TRANSCODER_CLIP="$padded" TRANSCODER_SCREENSHOT="$OFFLINE_SCREENSHOT" \
  TRANSCODER_UPLOAD_BPS="$OFFLINE_UPLOAD_BPS" \
  node tests/browser/offline.test.mjs || offline_status=$?
((status != 0)) || status=$offline_status
((status == 0)) || show_log
stop_service

start_service play
_say "running tests/browser/play.test.mjs (hls.js, dash.js and the page's player)"
play_status=0
TRANSCODER_URL="$url" TRANSCODER_CLIP="$play_clip" TRANSCODER_SCREENSHOT="$PLAY_SCREENSHOT" \
  node tests/browser/play.test.mjs || play_status=$?
((play_status == 0)) || show_log
((status != 0)) || status=$play_status
stop_service
printf '==> browser test finished with status %d\n' "$status"
exit "$status"
