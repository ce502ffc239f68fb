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
import { fail, openBrowser, readEnv, runTest } from "./harness.mjs";

const DEADLINE_MS = 180_000;
const uploadBps = Number(process.env.TRANSCODER_UPLOAD_BPS || 2 * 1024 * 1024);
const offlineMs = Number(process.env.TRANSCODER_OFFLINE_MS || 8000);
// The network goes away once the page shows this much upload progress
// (with 4 MiB chunks: in the middle of the second one).
const CUT_AT_PERCENT = 30;

const t0 = Date.now();
const at = () => ((Date.now() - t0) / 1000).toFixed(1) + "s";

// What the page said to the tus endpoint, in order: one line per request
// (method, Upload-Offset sent, answer status and Upload-Offset, or failure).
const tus = [];
function recordTus(page) {
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
  const { base, clipSize: size, screenshot, authHeaders: headers } = readEnv();
  if (size < 4 * uploadBps) fail(`TRANSCODER_CLIP is ${size} bytes: at ${uploadBps} B/s that is under 4 s of upload`);

  const t = await openBrowser({ stateFields: ["online"] });
  const { context, page } = t;
  recordTus(page);

  await t.goto("/");
  if (!(await page.evaluate(() => !!(window.tus && window.tus.isSupported)))) fail("tus-js-client is not loaded in the page");

  // A slow uplink, so the upload lasts long enough to be cut.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const throttle = { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: uploadBps };
  await cdp.send("Network.emulateNetworkConditions", throttle);

  await t.fillForm({ format: "mp4" });
  const started = Date.now();
  await page.click("#submit");

  // Mid-upload: some progress, far from the end.
  let state;
  for (;;) {
    state = await t.state();
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
  await context.setOffline(true);
  const cutAt = Date.now();
  const before = (await t.state()).upload;
  const cutIndex = tus.length;
  console.log(`browser: ${at()} offline at ${before} % of ${size} bytes`);

  // While the network is away the upload must not complete, nor give up.
  let offlineState = state;
  let maxOffline = before;
  const notes = new Set();
  while (Date.now() - cutAt < offlineMs) {
    offlineState = await t.state();
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
  await context.setOffline(false);
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

  const { state: finished, id } = await t.waitForFinishedJob({ since: started, deadlineMs: DEADLINE_MS });
  const doneAt = Date.now();

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
  const st = await fetch(`${base}/video/status/${encodeURIComponent(id)}`, { headers, signal: AbortSignal.timeout(30_000) });
  const doc = await st.json().catch(() => null);
  if (st.status !== 200 || !doc) fail(`GET /video/status/${id} answered ${st.status}`);
  if (doc.status !== "done") fail(`GET /video/status/${id} says ${JSON.stringify(doc.status)}, not "done"`);
  if (!doc.input || doc.input["size-bytes"] !== size) fail(`the job's input has ${doc.input && doc.input["size-bytes"]} bytes, not ${size}`);
  if (!doc.output || doc.output.format !== "mp4") fail(`the job's output is ${JSON.stringify(doc.output)}`);
  const dl = await fetch(finished.href, { headers, signal: AbortSignal.timeout(30_000) });
  const body = Buffer.from(await dl.arrayBuffer());
  if (dl.status !== 200 || !body.length) fail(`GET ${finished.href} answered ${dl.status} with ${body.length} bytes`);

  t.expectOnlyService();
  await t.screenshot();
  // Chromium logs the requests the offline mode cut (net::ERR_INTERNET_
  // DISCONNECTED) and a 409 (a PATCH at an offset the service no longer
  // has) as console errors: those are the blip; anything else fails.
  t.expectNoConsoleErrors(/net::ERR_INTERNET_DISCONNECTED|net::ERR_NETWORK_CHANGED|status of 409/);

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

await runTest(main, {
  deadlineMs: DEADLINE_MS,
  diagnostics: () => (tus.length ? [`tus requests: ${tus.map(show).join(" ")}`] : []),
});
