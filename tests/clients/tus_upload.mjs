// Uploads one file to a tus 1.0.0 server with tus-js-client (npm), as an
// outside client would, and prints one JSON line describing what happened.
//
//   node tests/clients/tus_upload.mjs ENDPOINT FILE CHUNK_SIZE
//
// ENDPOINT is the creation URL (http://host:port/video/uploads). Optional
// environment: TUS_METADATA (a JSON object, sent as Upload-Metadata),
// TUS_RETRY_DELAYS (a JSON array of milliseconds, default []: no retries),
// TUS_API_KEY (sent as a bearer token), TRANSCODER_TEST_NODE_MODULES (where
// tus-js-client is installed, default tests/browser/node_modules).
//
// Output (stdout, one line): {"client", "version", "url", "link" (the Link
// header of the last PATCH), "head" (a HEAD on the upload URL afterwards),
// "requests" (every response: method, Upload-Offset sent and answered,
// status), "retries" (the errors that were retried), "seconds"}. Exit 0
// on success; on failure the line has "error" and the exit status is 1.
import { createReadStream } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = resolve(process.env.TRANSCODER_TEST_NODE_MODULES || join(here, "..", "browser", "node_modules"));
// Resolve the package from the folder that holds node_modules.
const require = createRequire(join(dirname(modules), "package.json"));
const tus = require(join(modules, "tus-js-client"));
const version = require(join(modules, "tus-js-client", "package.json")).version;

const [endpoint, file, chunkArg] = process.argv.slice(2);
if (!endpoint || !file || !chunkArg) {
  console.error("usage: tus_upload.mjs ENDPOINT FILE CHUNK_SIZE");
  process.exit(2);
}
const chunkSize = Number(chunkArg);
const metadata = JSON.parse(process.env.TUS_METADATA || "{}");
const retryDelays = JSON.parse(process.env.TUS_RETRY_DELAYS || "[]");
const headers = process.env.TUS_API_KEY ? { Authorization: `Bearer ${process.env.TUS_API_KEY}` } : {};

const started = Date.now();
const requests = [];
const retries = [];
let lastPatchLink = null;

function report(extra, code) {
  const out = { client: "tus-js-client", version, requests, retries, seconds: (Date.now() - started) / 1000, ...extra };
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(code));
}

const upload = new tus.Upload(createReadStream(file), {
  endpoint,
  chunkSize,
  metadata,
  headers,
  retryDelays,
  onAfterResponse(req, res) {
    const entry = {
      method: req.getMethod(),
      sent_offset: req.getHeader("Upload-Offset") ?? null,
      status: res.getStatus(),
      offset: res.getHeader("Upload-Offset") ?? null,
      link: res.getHeader("Link") ?? null,
    };
    requests.push(entry);
    if (entry.method === "PATCH") lastPatchLink = entry.link;
  },
  onShouldRetry(err, attempt) {
    const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
    const retry = status < 400 || status >= 500 || status === 409 || status === 423;
    retries.push({ attempt, status, retry, message: String(err.message).split("\n")[0] });
    return retry;
  },
  async onSuccess() {
    try {
      const res = await fetch(upload.url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0", ...headers } });
      const head = {
        status: res.status,
        offset: res.headers.get("upload-offset"),
        length: res.headers.get("upload-length"),
        link: res.headers.get("link"),
      };
      report({ url: upload.url, link: lastPatchLink, head }, 0);
    } catch (e) {
      report({ url: upload.url, link: lastPatchLink, error: `HEAD after the upload: ${e}` }, 1);
    }
  },
  onError(err) {
    report({ url: upload.url, error: String(err.message || err) }, 1);
  },
});
upload.start();
