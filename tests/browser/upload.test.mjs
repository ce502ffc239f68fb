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
import { mkdtempSync, mkdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { chromium } from "playwright-core";

const DEADLINE_MS = 120_000;
const base = (process.env.TRANSCODER_URL || "").replace(/\/+$/, "");
const clip = process.env.TRANSCODER_CLIP || "";
const screenshot = process.env.TRANSCODER_SCREENSHOT || "";
const apiKey = process.env.TRANSCODER_API_KEY || "";
const executablePath = process.env.TRANSCODER_CHROMIUM || "/usr/bin/chromium";

const consoleErrors = [];
let browser = null;
let page = null;
let profile = null;

function fail(reason) {
  const err = new Error(reason);
  err.testFailure = true;
  throw err;
}

async function pageState() {
  return page.evaluate(() => {
    const $ = (id) => document.getElementById(id);
    const a = $("download");
    return {
      upload: Number($("upload-progress").value),
      encode: Number($("encode-progress").value),
      status: $("status").textContent.trim(),
      error: $("error").textContent.trim(),
      eta: $("eta").textContent.trim(),
      downloadVisible: !!a && !a.hidden && a.offsetParent !== null,
      href: a ? a.href : "",
    };
  });
}

async function main() {
  if (!base) fail("TRANSCODER_URL is not set");
  if (!clip) fail("TRANSCODER_CLIP is not set");
  if (!screenshot) fail("TRANSCODER_SCREENSHOT is not set");
  try {
    if (!statSync(clip).size) fail(`TRANSCODER_CLIP ${clip} is empty`);
  } catch (e) {
    if (e.testFailure) throw e;
    fail(`TRANSCODER_CLIP ${clip}: ${e.message}`);
  }

  profile = mkdtempSync(join(tmpdir(), "transcoder-chromium-"));
  // Playwright refuses --user-data-dir in args: a persistent context is how
  // it takes one (a fresh temporary profile here).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 900, height: 820 },
    timeout: 60_000,
  });
  page = browser.pages()[0] || (await browser.newPage());
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
  });
  page.on("pageerror", (err) => consoleErrors.push(`uncaught: ${err.message}`));
  const eventRequests = [];
  const uploadRequests = [];
  const elsewhere = [];
  page.on("request", (req) => {
    if (/\/video\/events\//.test(req.url())) eventRequests.push(req.url());
    const path = req.url().startsWith(base + "/") ? req.url().slice(base.length) : null;
    if (path === null && !req.url().startsWith("data:")) elsewhere.push(req.url());
    if (path && /^\/video\/(uploads|convert)/.test(path)) uploadRequests.push(`${req.method()} ${path.replace(/\?.*$/, "")}`);
  });
  let script = null;
  page.on("response", (res) => {
    if (new URL(res.url()).pathname === "/static/tus.min.js") script = res;
  });

  const started = Date.now();
  const response = await page.goto(`${base}/`, { waitUntil: "load", timeout: 30_000 });
  if (!response || response.status() !== 200) fail(`GET / answered ${response ? response.status() : "nothing"}`);
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

  if (apiKey) await page.fill("#api-key", apiKey);
  await page.setInputFiles("#file", resolve(clip));
  await page.selectOption("#format", "mp4");
  await page.click("#submit");

  // Wait for the link; stop early when the job ends badly or the upload is rejected.
  let state;
  for (;;) {
    state = await pageState();
    if (state.downloadVisible) break;
    if (["failed", "cancelled", "error"].includes(state.status)) {
      fail(`the job ended ${state.status}: ${state.error || "(no error shown)"}`);
    }
    if (Date.now() - started > DEADLINE_MS) {
      fail(`no download link after ${DEADLINE_MS / 1000} s (status ${JSON.stringify(state.status)}, ` +
        `upload ${state.upload} %, encode ${state.encode} %, error ${JSON.stringify(state.error)})`);
    }
    await page.waitForTimeout(200);
  }

  const m = /\/video\/download\/([^/?#]+)$/.exec(state.href);
  if (!m) fail(`#download href ${JSON.stringify(state.href)} does not end in /video/download/<id>`);
  const id = decodeURIComponent(m[1]);
  if (state.upload !== 100) fail(`upload progress ended at ${state.upload}, not 100`);
  if (state.encode !== 100) fail(`encode progress ended at ${state.encode}, not 100`);
  if (state.status !== "done") fail(`status shows ${JSON.stringify(state.status)}, not "done"`);
  if (state.error) fail(`an error is shown next to a finished job: ${state.error}`);
  // One tus upload (creation, then PATCHes), never the one-shot POST /video/convert.
  if (uploadRequests.some((r) => r.includes("/video/convert"))) fail(`the page used POST /video/convert: ${uploadRequests.join(", ")}`);
  if (uploadRequests.filter((r) => r === "POST /video/uploads").length !== 1 || !uploadRequests.some((r) => r.startsWith("PATCH /video/uploads/"))) {
    fail(`the page did not upload through tus (POST then PATCH /video/uploads): ${uploadRequests.join(", ")}`);
  }
  if (elsewhere.length) fail(`the page loaded from elsewhere than the service: ${elsewhere.join(" ")}`);
  if (!eventRequests.some((u) => u.includes(`/video/events/${id}`))) {
    fail(`the page never opened /video/events/${id} (requests: ${JSON.stringify(eventRequests)})`);
  }

  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const dl = await fetch(state.href, { headers, signal: AbortSignal.timeout(30_000) });
  const body = Buffer.from(await dl.arrayBuffer());
  const dlType = dl.headers.get("content-type") || "";
  if (dl.status !== 200) fail(`GET ${state.href} answered ${dl.status}: ${body.toString("utf8", 0, 300)}`);
  if (!dlType.startsWith("video/mp4")) fail(`GET ${state.href} has Content-Type ${JSON.stringify(dlType)}, not video/mp4`);
  if (body.length === 0) fail(`GET ${state.href} returned an empty body`);

  mkdirSync(dirname(resolve(screenshot)), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  if (consoleErrors.length) fail(`the page logged errors: ${consoleErrors.join(" | ")}`);

  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`browser: ok job ${id} done in ${secs} s (upload ${state.upload} %, encode ${state.encode} %), ` +
    `download ${body.length} bytes ${dlType}, screenshot ${screenshot}`);
}

async function cleanup() {
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
  if (profile) rmSync(profile, { recursive: true, force: true });
}

// Last resort if the browser itself hangs (launch, close).
const watchdog = setTimeout(() => {
  console.log(`browser: FAILED: the test did not finish within ${(DEADLINE_MS + 60_000) / 1000} s`);
  process.exit(1);
}, DEADLINE_MS + 60_000);
watchdog.unref();

let code = 0;
try {
  await main();
} catch (e) {
  code = 1;
  console.log(`browser: FAILED: ${e.testFailure ? e.message : e.stack || e}`);
  if (page && screenshot) {
    try {
      mkdirSync(dirname(resolve(screenshot)), { recursive: true });
      await page.screenshot({ path: screenshot, fullPage: true, timeout: 10_000 });
      console.log(`browser: screenshot of the failure at ${screenshot}`);
    } catch (_) {}
  }
  if (page) {
    try {
      const s = await pageState();
      console.log(`browser: page state ${JSON.stringify(s)}`);
    } catch (_) {}
  }
  for (const line of consoleErrors) console.log(`browser: console error: ${line}`);
}
await cleanup();
process.exit(code);
