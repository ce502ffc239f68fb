"""Schemathesis hooks for scripts/schemathesis.sh.

`POST /video/convert` takes `video/*`: a media type range, which schemathesis
can only send as one of the concrete types it has a serializer for. The
bodies are raw bytes, so these types reuse the `application/octet-stream`
serializer; the first one (video/mp4) is what a `video/*` body is sent as.
"""

import schemathesis

schemathesis.serializer.alias(["video/mp4", "video/quicktime", "video/webm"], "application/octet-stream")
