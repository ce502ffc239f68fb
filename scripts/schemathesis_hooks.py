"""Schemathesis hooks of the run that schemathesis.toml describes
(tests/api/schemathesis.rs).

`POST /video/convert` takes `video/*`: a media type range, which schemathesis
can only send as one of the concrete types it has a serializer for. The
bodies are raw bytes, so these types reuse the `application/octet-stream`
serializer; the first one (video/mp4) is what a `video/*` body is sent as.
The tus bodies (`application/offset+octet-stream`) are raw bytes too.

The tus operations on `/video/uploads/{id}` need an upload that exists, in
the state the case is about; a drawn `{id}` only ever reaches the 404 branch,
and a fixture made once would not last (`DELETE` removes it, a body that is
not a video removes it, the last byte finishes it). So, outside the stateful
phase (where the links from `POST /video/uploads` give real ids), a
schema-valid case gets, half of the time, an upload made for it just before
it is sent (TRANSCODER_SCHEMATHESIS_BASE is the service):

- a new upload (nothing stored), one with its first bytes stored (an MP4
  signature), or a finished one (its job made: `Link`);
- a `PATCH` gets, half of the time (unless its upload is finished), an
  upload with its first bytes stored and room for the body drawn, and the
  right `Upload-Offset`: what a client that follows the protocol sends, so
  that the 204 branch (and the last byte making the job) is reached, not
  only 409 and 415. The body is left as drawn: schemathesis would judge a
  body a hook assigned not schema-valid.

Only values the schema allows are put in, and only into schema-valid cases:
a negative case is left as schemathesis made it.

A tus body is any bytes (`format: binary`): no body can violate its schema,
yet schemathesis labels some cases negative for their body alone (the
example, or no bytes) and then expects them refused, where the service
rightly takes them (the first bytes of a longer upload: 201; a `PATCH` of
a finished upload, or of no bytes: 204). Those cases are dropped
(filter_case); cases with a negative header or path parameter stay.
"""

import os
import random
import urllib.error
import urllib.request
from pathlib import Path

import hypothesis.configuration
import schemathesis
from schemathesis import GenerationMode
from schemathesis.transport.serialization import Binary

# Hypothesis's own files (.hypothesis/) go with the reports of the run, not
# into the working tree.
ROOT = Path(__file__).resolve().parent.parent
hypothesis.configuration.set_hypothesis_home_dir(ROOT / "target" / "schemathesis" / "hypothesis")

schemathesis.serializer.alias(
    ["video/mp4", "video/quicktime", "video/webm", "application/offset+octet-stream"], "application/octet-stream"
)

BASE = os.environ.get("TRANSCODER_SCHEMATHESIS_BASE", "").rstrip("/")
TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"
# The first bytes of an MP4 file (ftyp box): the service sniffs them as MP4.
MP4_SIGNATURE = b"\0\0\0\x18ftypisom\0\0\2\0isomiso2"
UPLOAD_PATH = "/video/uploads/{id}"
# The hooks draw from a generator of their own: Hypothesis watches the
# `random` module's state while it draws the cases of other operations, which
# runs at the same time on other workers.
_rng = random.Random()


def _call(method, path, headers, body=None):
    """(status, headers) of a request to the service; never raises for an HTTP status."""
    request = urllib.request.Request(f"{BASE}{path}", data=body, method=method, headers={**TUS, **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def _create(length, first=b""):
    """A new upload of `length` bytes, `first` stored: (id, offset), or None."""
    headers = {"Upload-Length": str(length)}
    if first:
        headers["Content-Type"] = OFFSET_STREAM
    status, answer = _call("POST", "/video/uploads", headers, first or None)
    location = answer.get("Location", "") if status == 201 else ""
    if not location.startswith("/video/uploads/"):
        return None
    return location.rsplit("/", 1)[1], int(answer.get("Upload-Offset", "0"))


_finished = []  # ids of finished uploads still there (HEAD and PATCH leave them)


def _finished_upload(method):
    if method != "DELETE" and _finished:
        status, _ = _call("HEAD", f"/video/uploads/{_finished[0]}", {})
        if status == 200:
            return _finished[0], len(MP4_SIGNATURE)
        _finished.clear()
    made = _create(len(MP4_SIGNATURE), MP4_SIGNATURE)  # the last byte: its job is made
    if made and method != "DELETE":
        _finished[:] = [made[0]]
    return made


def _body_bytes(body):
    if isinstance(body, Binary):  # drawn bytes (a str subclass that holds them in `data`)
        return body.data
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):  # an example
        return body.encode("utf-8")
    return None


def _negative_locations(case):
    meta = case.meta
    if meta is None:
        return set()
    return {str(getattr(loc, "value", loc)) for loc, c in meta.components.items() if c.mode.is_negative}


@schemathesis.hook("filter_case")
def no_negative_bytes(context, case):
    if case.operation.path not in ("/video/uploads", UPLOAD_PATH):
        return True
    return _negative_locations(case) != {"body"}


def _is_positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook
def before_call(context, case, kwargs):
    if not BASE or case.operation.path != UPLOAD_PATH or not _is_positive(case):
        return
    if case.meta.phase.name == "stateful" or _rng.random() < 0.5:
        return
    method = case.method.upper()
    body = _body_bytes(case.body) if method == "PATCH" else None
    state = _rng.choice(["new", "partial", "finished"])
    aligned = body is not None and state != "finished" and _rng.random() < 0.5
    if state == "finished":
        made = _finished_upload(method)
    elif aligned:
        # Its first bytes stored (so the container is known whatever the
        # body is), and room for the body drawn: the PATCH finishes it, or
        # not.
        room = len(body) + _rng.choice([0, 0, 1, 1000])
        made = _create(len(MP4_SIGNATURE) + room, MP4_SIGNATURE)
    elif state == "partial":
        made = _create(len(MP4_SIGNATURE) + _rng.randint(1, 4096), MP4_SIGNATURE)
    else:
        made = _create(_rng.randint(1, 1 << 20))
    if made is None:
        return
    upload_id, offset = made
    # Assigned, not changed in place: schemathesis revalidates what a hook
    # assigns (an id and an offset stay schema-valid; a body it would no
    # longer judge valid, so the body is never touched).
    case.path_parameters = {**case.path_parameters, "id": upload_id}
    if aligned:
        case.headers = {**(case.headers or {}), "Upload-Offset": str(offset)}
