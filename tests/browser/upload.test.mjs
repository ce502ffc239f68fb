// Browser test of the web page at GET /: a person picks a video, uploads it
// (resumable, tus: POST then PATCH /video/uploads, with tus-js-client served
// by the service), watches the progress pushed over Server-Sent Events and
// gets a download link.
//
//   TRANSCODER_URL=http://127.0.0.1:8080 TRANSCODER_CLIP=clip.mp4 \
//   TRANSCODER_SCREENSHOT=target/screenshots/upload.png node tests/browser/upload.test.mjs
//
// Optional: TRANSCODER_API_KEY (typed into the page's API key field),
// TRANSCODER_CHROMIUM (default /usr/bin/chromium, Debian's package).
// Prints one line `browser: ok …` and exits 0, or the reason and exits 1.
import { fail, openBrowser, readEnv, runTest } from "./harness.mjs";

const DEADLINE_MS = 120_000;

async function main() {
  const { base, clip, clipSize, screenshot, authHeaders } = readEnv();
  if (!clipSize) fail(`TRANSCODER_CLIP ${clip} is empty`);

  const t = await openBrowser({ stateFields: ["eta"] });
  const { page } = t;
  const eventRequests = [];
  const uploadRequests = [];
  page.on("request", (req) => {
    if (/\/video\/events\//.test(req.url())) eventRequests.push(req.url());
    const path = req.url().startsWith(base + "/") ? req.url().slice(base.length) : null;
    if (path && /^\/video\/(uploads|convert)/.test(path)) uploadRequests.push(`${req.method()} ${path.replace(/\?.*$/, "")}`);
  });
  let script = null;
  page.on("response", (res) => {
    if (new URL(res.url()).pathname === "/static/tus.min.js") script = res;
  });

  const started = Date.now();
  const response = await t.goto("/");
  const type = response.headers()["content-type"] || "";
  if (!type.startsWith("text/html")) fail(`GET / has Content-Type ${JSON.stringify(type)}, not text/html`);
  for (const id of ["file", "format", "height", "priority", "submit", "upload-progress", "encode-progress", "status", "download", "cancel", "error"]) {
    if ((await page.locator(`#${id}`).count()) !== 1) fail(`the page has no element #${id}`);
  }
  if (await page.locator("#download").isVisible()) fail("#download is visible before any job");
  // tus-js-client comes from the service itself (no CDN).
  if (!script) fail("the page did not load /static/tus.min.js");
  if (script.status() !== 200) fail(`GET /static/tus.min.js answered ${script.status()}`);
  const jsType = script.headers()["content-type"] || "";
  if (!jsType.startsWith("application/javascript")) fail(`/static/tus.min.js has Content-Type ${JSON.stringify(jsType)}`);
  if (!/max-age=\d{6,}/.test(script.headers()["cache-control"] || "")) {
    fail(`/static/tus.min.js has Cache-Control ${JSON.stringify(script.headers()["cache-control"])}, not a long max-age`);
  }
  if (!(await page.evaluate(() => !!(window.tus && window.tus.isSupported)))) fail("tus-js-client is not usable in the page");

  await t.fillForm({ format: "mp4" });
  await page.click("#submit");

  const { state, id } = await t.waitForFinishedJob({ since: started, deadlineMs: DEADLINE_MS });
  // One tus upload (creation, then PATCHes), never the one-shot POST /video/convert.
  if (uploadRequests.some((r) => r.includes("/video/convert"))) fail(`the page used POST /video/convert: ${uploadRequests.join(", ")}`);
  if (uploadRequests.filter((r) => r === "POST /video/uploads").length !== 1 || !uploadRequests.some((r) => r.startsWith("PATCH /video/uploads/"))) {
    fail(`the page did not upload through tus (POST then PATCH /video/uploads): ${uploadRequests.join(", ")}`);
  }
  t.expectOnlyService();
  if (!eventRequests.some((u) => u.includes(`/video/events/${id}`))) {
    fail(`the page never opened /video/events/${id} (requests: ${JSON.stringify(eventRequests)})`);
  }

  const dl = await fetch(state.href, { headers: authHeaders, signal: AbortSignal.timeout(30_000) });
  const body = Buffer.from(await dl.arrayBuffer());
  const dlType = dl.headers.get("content-type") || "";
  if (dl.status !== 200) fail(`GET ${state.href} answered ${dl.status}: ${body.toString("utf8", 0, 300)}`);
  if (!dlType.startsWith("video/mp4")) fail(`GET ${state.href} has Content-Type ${JSON.stringify(dlType)}, not video/mp4`);
  if (body.length === 0) fail(`GET ${state.href} returned an empty body`);

  await t.screenshot();
  t.expectNoConsoleErrors();

  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`browser: ok job ${id} done in ${secs} s (upload ${state.upload} %, encode ${state.encode} %), ` +
    `download ${body.length} bytes ${dlType}, screenshot ${screenshot}`);
}

await runTest(main, { deadlineMs: DEADLINE_MS });
