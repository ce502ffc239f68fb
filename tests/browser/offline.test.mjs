// Browser test of the web page's resumable upload (tus, tus-js-client): the
// network goes away in the middle of the upload (Playwright's offline mode)
// and comes back; the page carries on from the offset the service stored,
// and the job completes.
//
//   TRANSCODER_URL=http://127.0.0.1:8080 TRANSCODER_CLIP=padded.mp4 \
//   TRANSCODER_SCREENSHOT=target/screenshots/offline.png node tests/browser/offline.test.mjs
//
// The clip should be some MiB (scripts/browser-test.sh pads a short clip
// with an MP4 `free` box): the upload is throttled (CDP
// Network.emulateNetworkConditions) so that it takes seconds.
// Optional: TRANSCODER_API_KEY (typed into the page's API key field),
// TRANSCODER_CHROMIUM (default /usr/bin/chromium, Debian's package),
// TRANSCODER_UPLOAD_BPS (upload throughput in bytes/s, default 2 MiB/s),
// TRANSCODER_OFFLINE_MS (how long the network stays away, default 8000).
// Prints one line `browser: ok …` and exits 0, or the reason and exits 1.
import { mkdtempSync, mkdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { chromium } from "playwright-core";

const DEADLINE_MS = 180_000;
const base = (process.env.TRANSCODER_URL || "").replace(/\/+$/, "");
const clip = process.env.TRANSCODER_CLIP || "";
const screenshot = process.env.TRANSCODER_SCREENSHOT || "";
const apiKey = process.env.TRANSCODER_API_KEY || "";
const executablePath = process.env.TRANSCODER_CHROMIUM || "/usr/bin/chromium";
const uploadBps = Number(process.env.TRANSCODER_UPLOAD_BPS || 2 * 1024 * 1024);
const offlineMs = Number(process.env.TRANSCODER_OFFLINE_MS || 8000);
// The network goes away once the page shows this much upload progress
// (with 4 MiB chunks: in the middle of the second one).
const CUT_AT_PERCENT = 30;

const consoleErrors = [];
let browser = null;
let page = null;
let profile = null;
const t0 = Date.now();
const at = () => ((Date.now() - t0) / 1000).toFixed(1) + "s";

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
      online: navigator.onLine,
      downloadVisible: !!a && !a.hidden && a.offsetParent !== null,
      href: a ? a.href : "",
    };
  });
}

// What the page said to the tus endpoint, in order: one line per request
// (method, Upload-Offset sent, answer status and Upload-Offset, or failure).
const tus = [];
function recordTus() {
  const entries = new Map();
  page.on("request", (req) => {
    const u = new URL(req.url());
    if (!u.pathname.startsWith("/video/uploads")) return;
    const e = {
      at: at(), method: req.method(), sent: req.headers()["upload-offset"] ?? null,
      status: null, offset: null, failure: null, link: null, answeredAt: null,
    };
    entries.set(req, e);
    tus.push(e);
  });
  page.on("response", (res) => {
    const e = entries.get(res.request());
    if (!e) return;
    const h = res.headers();
    e.status = res.status();
    e.answeredAt = Date.now();
    e.offset = h["upload-offset"] ?? null;
    e.link = h["link"] ?? null;
  });
  page.on("requestfailed", (req) => {
    const e = entries.get(req);
    if (e) e.failure = (req.failure() && req.failure().errorText) || "failed";
  });
}
const show = (e) =>
  `${e.at} ${e.method}${e.sent !== null ? "@" + e.sent : ""}→${e.failure ? e.failure : e.status}` +
  `${e.offset !== null ? "(" + e.offset + ")" : ""}`;

async function main() {
  if (!base) fail("TRANSCODER_URL is not set");
  if (!clip) fail("TRANSCODER_CLIP is not set");
  if (!screenshot) fail("TRANSCODER_SCREENSHOT is not set");
  let size;
  try {
    size = statSync(clip).size;
  } catch (e) {
    fail(`TRANSCODER_CLIP ${clip}: ${e.message}`);
  }
  if (size < 4 * uploadBps) fail(`TRANSCODER_CLIP is ${size} bytes: at ${uploadBps} B/s that is under 4 s of upload`);

  profile = mkdtempSync(join(tmpdir(), "transcoder-chromium-"));
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
  const elsewhere = [];
  page.on("request", (req) => {
    if (!req.url().startsWith(base + "/") && !req.url().startsWith("data:")) elsewhere.push(req.url());
  });
  recordTus();

  const response = await page.goto(`${base}/`, { waitUntil: "load", timeout: 30_000 });
  if (!response || response.status() !== 200) fail(`GET / answered ${response ? response.status() : "nothing"}`);
  if (!(await page.evaluate(() => !!(window.tus && window.tus.isSupported)))) fail("tus-js-client is not loaded in the page");

  // A slow uplink, so the upload lasts long enough to be cut.
  const cdp = await browser.newCDPSession(page);
  await cdp.send("Network.enable");
  const throttle = { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: uploadBps };
  await cdp.send("Network.emulateNetworkConditions", throttle);

  if (apiKey) await page.fill("#api-key", apiKey);
  await page.setInputFiles("#file", resolve(clip));
  await page.selectOption("#format", "mp4");
  const started = Date.now();
  await page.click("#submit");

  // Mid-upload: some progress, far from the end.
  let state;
  for (;;) {
    state = await pageState();
    if (state.upload >= CUT_AT_PERCENT && state.upload < 100) break;
    if (state.upload >= 100 || state.downloadVisible) {
      fail(`the upload finished before the network could be taken away (${state.upload} %): use a bigger clip or a lower TRANSCODER_UPLOAD_BPS`);
    }
    if (["failed", "cancelled", "error"].includes(state.status)) fail(`the upload ended ${state.status}: ${state.error}`);
    if (Date.now() - started > 60_000) fail(`no upload progress after 60 s (${JSON.stringify(state)})`);
    await page.waitForTimeout(50);
  }
  // The throttle's CDP session would override Playwright's offline mode
  // (one session's emulated conditions win): drop the throttle, so that the
  // offline mode alone decides, and put it back once the network is back.
  // (Chromium's emulated offline fails every request that starts; a body
  // already on its way is let through, unthrottled.)
  await cdp.send("Network.disable");
  await browser.setOffline(true);
  const cutAt = Date.now();
  const before = (await pageState()).upload;
  const cutIndex = tus.length;
  console.log(`browser: ${at()} offline at ${before} % of ${size} bytes`);

  // While the network is away the upload must not complete, nor give up.
  let offlineState = state;
  let maxOffline = before;
  const notes = new Set();
  while (Date.now() - cutAt < offlineMs) {
    offlineState = await pageState();
    maxOffline = Math.max(maxOffline, offlineState.upload);
    if (offlineState.error) notes.add(offlineState.error);
    if (offlineState.upload >= 100 || offlineState.downloadVisible || offlineState.status === "done") {
      fail(`the upload completed while the network was away (${JSON.stringify(offlineState)})`);
    }
    if (["failed", "cancelled", "error"].includes(offlineState.status)) {
      fail(`the page gave up while the network was away: ${offlineState.status}: ${offlineState.error}`);
    }
    await page.waitForTimeout(200);
  }
  if (offlineState.online !== false) fail("navigator.onLine stayed true in offline mode");
  await browser.setOffline(false);
  const backAt = Date.now();
  // Nothing got through while the network was away, and the page tried.
  const through = tus.filter((e) => e.answeredAt !== null && e.answeredAt > cutAt + 500 && e.answeredAt < backAt);
  if (through.length) fail(`requests were answered in offline mode: ${through.map(show).join(" ")}`);
  if (!tus.some((e) => e.failure)) fail(`no upload request failed in offline mode: ${tus.map(show).join(" ")}`);
  // The offset the service had acknowledged when the network came back.
  const acked = Math.max(0, ...tus.filter((e) => e.status === 204 && e.answeredAt < backAt).map((e) => Number(e.offset)));
  // Keep the uplink slow, so the rest of the upload is chunks too.
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", throttle);
  console.log(`browser: ${at()} online again after ${((backAt - cutAt) / 1000).toFixed(1)} s; page showed ${offlineState.upload} % and ` +
    `${JSON.stringify([...notes])}`);

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
  const doneAt = Date.now();

  const m = /\/video\/download\/([^/?#]+)$/.exec(state.href);
  if (!m) fail(`#download href ${JSON.stringify(state.href)} does not end in /video/download/<id>`);
  const id = decodeURIComponent(m[1]);
  if (state.upload !== 100) fail(`upload progress ended at ${state.upload}, not 100`);
  if (state.encode !== 100) fail(`encode progress ended at ${state.encode}, not 100`);
  if (state.status !== "done") fail(`status shows ${JSON.stringify(state.status)}, not "done"`);
  if (state.error) fail(`an error is shown next to a finished job: ${state.error}`);

  // One upload, resumed: a single POST, and bytes sent after the network
  // came back at an offset past zero (not a restart from the beginning).
  const log = tus.map(show).join(" ");
  const posts = tus.filter((e) => e.method === "POST");
  if (posts.length !== 1) fail(`the page created ${posts.length} uploads, not 1: ${log}`);
  const after = tus.slice(cutIndex);
  const resumed = after.filter((e) => e.method === "PATCH" && Number(e.sent) > 0 && e.status === 204);
  if (!resumed.length) fail(`no PATCH at an offset > 0 succeeded after the network came back: ${log}`);
  if (Number(resumed[0].sent) < acked) fail(`the upload went on at ${resumed[0].sent}, before the acknowledged ${acked}: ${log}`);
  const last = tus.filter((e) => e.status === 204 || (e.method === "HEAD" && e.status === 200)).pop();
  if (!last || Number(last.offset) !== size) fail(`the last answer does not say Upload-Offset ${size}: ${log}`);
  if (!last.link || !last.link.includes(`/video/status/${id}`)) fail(`the last answer's Link ${JSON.stringify(last && last.link)} does not name job ${id}`);

  // The service agrees: the job is done, with every byte of the file.
  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const st = await fetch(`${base}/video/status/${encodeURIComponent(id)}`, { headers, signal: AbortSignal.timeout(30_000) });
  const doc = await st.json().catch(() => null);
  if (st.status !== 200 || !doc) fail(`GET /video/status/${id} answered ${st.status}`);
  if (doc.status !== "done") fail(`GET /video/status/${id} says ${JSON.stringify(doc.status)}, not "done"`);
  if (!doc.input || doc.input["size-bytes"] !== size) fail(`the job's input has ${doc.input && doc.input["size-bytes"]} bytes, not ${size}`);
  if (!doc.output || doc.output.format !== "mp4") fail(`the job's output is ${JSON.stringify(doc.output)}`);
  const dl = await fetch(state.href, { headers, signal: AbortSignal.timeout(30_000) });
  const body = Buffer.from(await dl.arrayBuffer());
  if (dl.status !== 200 || !body.length) fail(`GET ${state.href} answered ${dl.status} with ${body.length} bytes`);

  if (elsewhere.length) fail(`the page loaded from elsewhere than the service: ${elsewhere.join(" ")}`);
  mkdirSync(dirname(resolve(screenshot)), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  // Chromium logs the requests the offline mode cut (net::ERR_INTERNET_
  // DISCONNECTED) and a 409 (a PATCH at an offset the service no longer
  // has) as console errors: those are the blip; anything else fails.
  const unexpected = consoleErrors.filter((t) => !/net::ERR_INTERNET_DISCONNECTED|net::ERR_NETWORK_CHANGED|status of 409/.test(t));
  if (unexpected.length) fail(`the page logged errors: ${unexpected.join(" | ")}`);

  const conflicts = tus.filter((e) => e.status === 409).length;
  const heads = tus.filter((e) => e.method === "HEAD").length;
  const failed = tus.filter((e) => e.failure).length;
  console.log(`browser: tus requests: ${log}`);
  console.log(`browser: ok job ${id} done: offline at ${before} % for ${((backAt - cutAt) / 1000).toFixed(1)} s ` +
    `(no more than ${maxOffline} % meanwhile), resumed at offset ${resumed[0].sent} of ${size} (acknowledged before: ${acked}); ` +
    `${failed} requests cut, ${conflicts} × 409, ${heads} × HEAD; upload+job ${((doneAt - started) / 1000).toFixed(1)} s ` +
    `(${((doneAt - backAt) / 1000).toFixed(1)} s after the network came back), output ${doc.output["duration-seconds"]} s, ` +
    `screenshot ${screenshot}`);
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
  if (tus.length) console.log(`browser: tus requests: ${tus.map(show).join(" ")}`);
  for (const line of consoleErrors) console.log(`browser: console error: ${line}`);
}
await cleanup();
process.exit(code);
