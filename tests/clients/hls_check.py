"""Reads an HLS package over HTTP with the m3u8 parser and checks what a
player relies on. Usage: hls_check.py MASTER_URL. Prints one JSON object:
{"variants": [{"uri", "bandwidth", "average_bandwidth", "codecs",
"resolution", "frame_rate", "peak_bps", "init", "segments": [...],
"durations": [...]}]} and exits 0, or prints the failures and exits 1."""

import json
import sys
import urllib.request

import m3u8


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def main(master_url):
    failures = []
    master = m3u8.loads(fetch(master_url).decode(), uri=master_url)
    if not master.is_variant:
        print("the master playlist has no EXT-X-STREAM-INF")
        return 1
    variants = []
    extinfs = None
    for playlist in master.playlists:
        info = playlist.stream_info
        name = playlist.uri
        codecs = info.codecs or ""
        if "avc1." not in codecs or "mp4a.40.2" not in codecs:
            failures.append(f"{name}: CODECS {codecs!r} lacks avc1./mp4a.40.2")
        if not info.resolution or not info.frame_rate:
            failures.append(f"{name}: RESOLUTION or FRAME-RATE missing")
        if info.average_bandwidth is None:
            failures.append(f"{name}: AVERAGE-BANDWIDTH missing")
        media_url = playlist.absolute_uri
        media = m3u8.loads(fetch(media_url).decode(), uri=media_url)
        if media.playlist_type != "vod" or not media.is_endlist:
            failures.append(f"{name}: not a VOD playlist with EXT-X-ENDLIST")
        if not media.is_independent_segments:
            failures.append(f"{name}: no EXT-X-INDEPENDENT-SEGMENTS")
        if not media.segment_map:
            failures.append(f"{name}: no EXT-X-MAP")
        durations = [s.duration for s in media.segments]
        if extinfs is None:
            extinfs = durations
        elif durations != extinfs:
            failures.append(f"{name}: EXTINF {durations} differ from {extinfs}")
        # The measured peak: each media segment's bits over its EXTINF.
        peak = 0
        segments = []
        for segment in media.segments:
            size = len(fetch(segment.absolute_uri))
            peak = max(peak, size * 8 / segment.duration)
            segments.append(segment.absolute_uri)
        if info.bandwidth < peak:
            failures.append(f"{name}: BANDWIDTH {info.bandwidth} under the measured peak {peak:.0f}")
        init = media.segment_map[0].absolute_uri if media.segment_map else None
        variants.append(
            {
                "uri": media_url,
                "bandwidth": info.bandwidth,
                "average_bandwidth": info.average_bandwidth,
                "codecs": codecs,
                "resolution": list(info.resolution or []),
                "frame_rate": info.frame_rate,
                "peak_bps": round(peak),
                "init": init,
                "segments": segments,
                "durations": durations,
            }
        )
    if failures:
        print("\n".join(failures))
        return 1
    print(json.dumps({"variants": variants}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
