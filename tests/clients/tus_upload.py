"""Uploads one file to a tus 1.0.0 server with tuspy (PyPI), as an outside
client would, and prints one JSON line describing what happened.

    python tests/clients/tus_upload.py ENDPOINT FILE CHUNK_SIZE

ENDPOINT is the creation URL (http://host:port/video/uploads). Optional
environment: TUS_METADATA (a JSON object, sent as Upload-Metadata),
TUS_RETRIES (how many times a failed PATCH is retried after a HEAD, default
0), TUS_API_KEY (sent as a bearer token).

Output (stdout, one line): {"client", "version", "url", "link" (the Link
header of the last PATCH), "head" (a HEAD on the upload URL afterwards),
"requests" (each PATCH: Upload-Offset sent and answered, status),
"seconds"}. Exit 0 on success; on failure the line has "error" and the exit
status is 1.
"""

import json
import os
import sys
import time
from importlib.metadata import version

import requests
from tusclient import client as tus


def main() -> int:
    if len(sys.argv) != 4:
        print("usage: tus_upload.py ENDPOINT FILE CHUNK_SIZE", file=sys.stderr)
        return 2
    endpoint, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
    metadata = json.loads(os.environ.get("TUS_METADATA", "{}"))
    headers = {}
    if os.environ.get("TUS_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["TUS_API_KEY"]
    started = time.monotonic()
    out = {"client": "tuspy", "version": version("tuspy"), "requests": []}
    try:
        uploader = tus.TusClient(endpoint, headers=headers).uploader(
            path,
            chunk_size=chunk,
            metadata=metadata,
            retries=int(os.environ.get("TUS_RETRIES", "0")),
            retry_delay=0,
        )
        # What Uploader.upload() does, one chunk at a time to record each PATCH.
        uploader.set_url(uploader.create_url())
        out["url"] = uploader.url
        size = uploader.get_file_size()
        while uploader.offset < size:
            uploader.upload_chunk()
            # After a retry this is the request that succeeded (sent from
            # the offset a HEAD answered).
            answer = uploader.request
            out["requests"].append(
                {
                    "method": "PATCH",
                    "sent_offset": answer._request_headers.get("upload-offset"),
                    "retried": uploader._retried,
                    "status": answer.status_code,
                    "offset": answer.response_headers.get("upload-offset"),
                    "link": answer.response_headers.get("link"),
                }
            )
        out["link"] = uploader.request.response_headers.get("link")
        head = requests.head(uploader.url, headers={"Tus-Resumable": "1.0.0", **headers}, timeout=60)
        out["head"] = {
            "status": head.status_code,
            "offset": head.headers.get("upload-offset"),
            "length": head.headers.get("upload-length"),
            "link": head.headers.get("link"),
        }
        code = 0
    except Exception as e:  # reported to the test, which shows it
        out["error"] = f"{type(e).__name__}: {e}"
        code = 1
    out["seconds"] = time.monotonic() - started
    print(json.dumps(out), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
