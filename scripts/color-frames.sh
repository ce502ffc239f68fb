#!/usr/bin/env bash
# The README's before/after pair for HDR input (docs/hdr-before.jpg,
# docs/hdr-after.jpg): an HDR10 clip made from the SDR test pattern, sent
# through a running service, and one frame of each side as a poster-sized
# JPEG. "Before" is what the service wrote before tone mapping: the same
# PQ/BT.2020 samples cut to 8 bits and shown as BT.709. "After" is the
# service's own output.
# Usage: scripts/color-frames.sh [SERVICE_URL]   (default http://127.0.0.1:8080)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
url=${1:-http://127.0.0.1:8080}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The pattern in BT.709, converted to PQ/BT.2020 with SDR white at 100 cd/m²,
# as 10-bit HEVC with HDR10 mastering metadata.
ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=25:duration=2 \
  -vf "format=yuv420p,setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv,zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=2020:t=smpte2084:m=2020_ncl:r=limited:npl=100,format=yuv420p10le" \
  -c:v libx265 -preset ultrafast \
  -x265-params "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400" \
  -color_primaries bt2020 -color_trc smpte2084 -colorspace bt2020nc "$work/hdr10.mov"

id=$(curl -sf --data-binary @"$work/hdr10.mov" -H 'Content-Type: video/quicktime' "$url/video/convert" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 120); do
  status=$(curl -sf "$url/video/status/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [[ $status == done || $status == failed || $status == cancelled ]] && break
  sleep 1
done
[[ $status == done ]] || { echo "job $id ended $status" >&2; exit 1; }
curl -sf -o "$work/out.mp4" "$url/video/download/$id"

frame=(-ss 1 -frames:v 1 -q:v 4)
ffmpeg -v error -y -i "$work/hdr10.mov" -vf "scale=640:-2:in_color_matrix=bt709,format=yuvj420p" "${frame[@]}" docs/hdr-before.jpg
ffmpeg -v error -y -i "$work/out.mp4" -vf "scale=640:-2:in_color_matrix=bt709,format=yuvj420p" "${frame[@]}" docs/hdr-after.jpg
ls -l docs/hdr-before.jpg docs/hdr-after.jpg
