// What the browser tests (tests/browser/*.test.mjs) share: the environment,
// Debian's headless Chromium in a fresh profile, the service's page with its
// console errors and the requests it sends elsewhere than the service, the
// page-state reader, and the run itself (watchdog, failure report, cleanup,
// exit code). A test holds only its scenario and its assertions:
//
//   import { fail, openBrowser, readEnv, runTest } from "./harness.mjs";
//
//   async function main() {
//     const env = readEnv();            // fails unless the variables are set
//     const t = await openBrowser();    // t.context, t.page, t.state(), …
//     await t.goto("/");
//     await t.fillForm({ format: "mp4" });
//     await t.page.click("#submit");
//     const { state, id } = await t.waitForFinishedJob({ since, deadlineMs });
//     …
//     await t.screenshot();
//     t.expectNoConsoleErrors();
//     console.log(`browser: ok …`);
//   }
//   await runTest(main, { deadlineMs, diagnostics: () => ["extra line", …] });
//
// Tests that also talk to the API itself (node fetch) use convert() (POST
// /video/convert with the clip) and waitForDone() (status polled until done,
// with a deadline); t.newPage() opens another tab watched like the first.
//
// Environment: TRANSCODER_URL (the service), TRANSCODER_CLIP (the video to
// upload), TRANSCODER_SCREENSHOT (PNG written at the end, or on failure);
// optional TRANSCODER_API_KEY (typed into the page's API key field, sent as a
// bearer token by env.authHeaders) and TRANSCODER_CHROMIUM (default
// /usr/bin/chromium, Debian's package).
//
// runTest exits 0 when main returns; otherwise it prints `browser: FAILED:
// <reason>`, saves a screenshot of the failure, prints the page state, the
// test's diagnostics and the page's console errors (one `browser: …` line
// each) and exits 1.
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { chromium } from "playwright-core";

// The browser of this run (one a process), for the failure report and cleanup.
let profile = null;
let context = null;
let session = null;

/** Ends the test with `browser: FAILED: <reason>` (no stack trace). */
export function fail(reason) {
  const err = new Error(reason);
  err.testFailure = true;
  throw err;
}

let env = null;

/**
 * The test's environment, checked: { base, clip, clipSize, screenshot,
 * apiKey, executablePath, authHeaders }. Fails when TRANSCODER_URL,
 * TRANSCODER_CLIP or TRANSCODER_SCREENSHOT is not set or the clip cannot be
 * read; clipSize may be 0 (each test says what it needs).
 */
export function readEnv() {
  if (env) return env;
  const base = (process.env.TRANSCODER_URL || "").replace(/\/+$/, "");
  const clip = process.env.TRANSCODER_CLIP || "";
  const screenshot = process.env.TRANSCODER_SCREENSHOT || "";
  const apiKey = process.env.TRANSCODER_API_KEY || "";
  if (!base) fail("TRANSCODER_URL is not set");
  if (!clip) fail("TRANSCODER_CLIP is not set");
  if (!screenshot) fail("TRANSCODER_SCREENSHOT is not set");
  let clipSize;
  try {
    clipSize = statSync(clip).size;
  } catch (e) {
    fail(`TRANSCODER_CLIP ${clip}: ${e.message}`);
  }
  env = {
    base,
    clip,
    clipSize,
    screenshot,
    apiKey,
    executablePath: process.env.TRANSCODER_CHROMIUM || "/usr/bin/chromium",
    authHeaders: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
  };
  return env;
}

/**
 * Launches Chromium (fresh profile) and returns the test's handle:
 *   context, page            Playwright's BrowserContext and Page
 *   env                      readEnv()
 *   consoleErrors            the page's console errors and uncaught exceptions
 *   elsewhere                URLs the service's page requested outside the service
 *   state()                  the page's state (see below)
 *   goto(path)               loads base + path; fails unless it answers 200
 *   fillForm({ format })     API key (when set), the clip, the output format
 *   waitForFinishedJob(…)    waits for the download link, checks the job is done
 *   expectOnlyService()      fails if the page loaded anything from elsewhere
 *   expectNoConsoleErrors(…) fails on console errors (but those matching `allow`)
 *   screenshot(options)      full-page PNG at env.screenshot (or options.path)
 *   newPage()                another tab (a test's own page, for players), its
 *                            console errors recorded with the first one's
 *
 * The page state holds upload and encode (the progress bars' values),
 * status and error (texts), then the stateFields asked for ("eta": the ETA
 * text, "online": navigator.onLine), then downloadVisible and href (the
 * download link).
 */
export async function openBrowser({ stateFields = [], viewport = { width: 900, height: 820 } } = {}) {
  const e = readEnv();
  profile = mkdtempSync(join(tmpdir(), "transcoder-chromium-"));
  // Playwright refuses --user-data-dir in args: a persistent context is how
  // it takes one (a fresh temporary profile here).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: e.executablePath,
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
    viewport,
    timeout: 60_000,
  });
  const page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  const elsewhere = [];
  // data: and blob: URLs (a player's Media Source, its worker) are the
  // page's own, not requests elsewhere.
  const watch = (p, { recordElsewhere = true } = {}) => {
    p.on("console", (msg) => {
      if (msg.type() === "error") consoleErrors.push(msg.text());
    });
    p.on("pageerror", (err) => consoleErrors.push(`uncaught: ${err.message}`));
    if (recordElsewhere) {
      p.on("request", (req) => {
        if (!req.url().startsWith(e.base + "/") && !/^(data|blob):/.test(req.url())) elsewhere.push(req.url());
      });
    }
    return p;
  };
  watch(page);

  const t = {
    context,
    page,
    env: e,
    consoleErrors,
    elsewhere,

    state: () => readPageState(page, stateFields),

    async goto(path = "/") {
      const response = await page.goto(`${e.base}${path}`, { waitUntil: "load", timeout: 30_000 });
      if (!response || response.status() !== 200) fail(`GET ${path} answered ${response ? response.status() : "nothing"}`);
      return response;
    },

    async fillForm({ format }) {
      if (e.apiKey) await page.fill("#api-key", e.apiKey);
      await page.setInputFiles("#file", resolve(e.clip));
      await page.selectOption("#format", format);
    },

    // Waits for the download link (stops early when the job ends badly or the
    // upload is rejected, or deadlineMs after `since`), then checks that the
    // page shows a finished job: both bars at 100, status "done", no error.
    async waitForFinishedJob({ since, deadlineMs }) {
      let state;
      for (;;) {
        state = await t.state();
        if (state.downloadVisible) break;
        if (["failed", "cancelled", "error"].includes(state.status)) {
          fail(`the job ended ${state.status}: ${state.error || "(no error shown)"}`);
        }
        if (Date.now() - since > deadlineMs) {
          fail(`no download link after ${deadlineMs / 1000} s (status ${JSON.stringify(state.status)}, ` +
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
      return { state, id };
    },

    expectOnlyService() {
      if (elsewhere.length) fail(`the page loaded from elsewhere than the service: ${elsewhere.join(" ")}`);
    },

    expectNoConsoleErrors(allow = null) {
      const unexpected = allow ? consoleErrors.filter((text) => !allow.test(text)) : consoleErrors;
      if (unexpected.length) fail(`the page logged errors: ${unexpected.join(" | ")}`);
    },

    // The tab the failure report photographs (newPage() tabs can set it).
    activePage: null,

    async screenshot({ page: shot = t.activePage || page, ...options } = {}) {
      const path = options.path || e.screenshot;
      mkdirSync(dirname(resolve(path)), { recursive: true });
      await shot.screenshot({ path, fullPage: true, ...options });
    },

    async newPage() {
      return watch(await context.newPage(), { recordElsewhere: false });
    },
  };
  session = t;
  return t;
}

/**
 * POST /video/convert?<query> with the clip as the body (node fetch, the
 * API key as a bearer token when set); fails unless it answers 202. Returns
 * the status document.
 */
export async function convert(query) {
  const e = readEnv();
  const url = `${e.base}/video/convert?${new URLSearchParams(query)}`;
  const res = await fetch(url, {
    method: "POST",
    headers: { ...e.authHeaders, "Content-Type": "video/mp4" },
    body: readFileSync(e.clip),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await res.text();
  if (res.status !== 202) fail(`POST /video/convert?${new URLSearchParams(query)} answered ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/**
 * Reads GET /video/status/{id} every pollMs until the job is done (fails
 * when it ends otherwise, or after deadlineMs). Returns the status document.
 */
export async function waitForDone(id, { deadlineMs, pollMs = 500 }) {
  const e = readEnv();
  const until = Date.now() + deadlineMs;
  let doc = null;
  for (;;) {
    const res = await fetch(`${e.base}/video/status/${encodeURIComponent(id)}`, {
      headers: e.authHeaders,
      signal: AbortSignal.timeout(30_000),
    });
    if (res.status !== 200) fail(`GET /video/status/${id} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    doc = await res.json();
    if (doc.status === "done") return doc;
    if (doc.status === "failed" || doc.status === "cancelled") {
      fail(`job ${id} ended ${doc.status}: ${JSON.stringify(doc.error || null)}`);
    }
    if (Date.now() > until) fail(`job ${id} not done after ${deadlineMs / 1000} s (status ${doc.status}, ${doc["progress-percent"]} %)`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

async function readPageState(page, fields) {
  return page.evaluate((fields) => {
    const $ = (id) => document.getElementById(id);
    const a = $("download");
    const optional = {
      eta: () => $("eta").textContent.trim(),
      online: () => navigator.onLine,
    };
    const state = {
      upload: Number($("upload-progress").value),
      encode: Number($("encode-progress").value),
      status: $("status").textContent.trim(),
      error: $("error").textContent.trim(),
    };
    for (const name of fields) {
      if (!optional[name]) throw new Error(`no page state field ${name}`);
      state[name] = optional[name]();
    }
    state.downloadVisible = !!a && !a.hidden && a.offsetParent !== null;
    state.href = a ? a.href : "";
    return state;
  }, fields);
}

/**
 * Runs main and exits the process: 0 when it returns, 1 when it throws (the
 * failure report: reason, screenshot, page state, diagnostics() lines,
 * console errors). A watchdog ends the process 60 s after deadlineMs in case
 * the browser itself hangs (launch, close).
 */
export async function runTest(main, { deadlineMs, diagnostics = () => [] }) {
  const limitMs = deadlineMs + 60_000;
  const watchdog = setTimeout(() => {
    console.log(`browser: FAILED: the test did not finish within ${limitMs / 1000} s`);
    process.exit(1);
  }, limitMs);
  watchdog.unref();

  let code = 0;
  try {
    await main();
  } catch (e) {
    code = 1;
    console.log(`browser: FAILED: ${e.testFailure ? e.message : e.stack || e}`);
    await reportFailure(diagnostics);
  }
  await cleanup();
  process.exit(code);
}

async function reportFailure(diagnostics) {
  if (session) {
    try {
      await session.screenshot({ timeout: 10_000 });
      console.log(`browser: screenshot of the failure at ${session.env.screenshot}`);
    } catch (_) {}
    try {
      console.log(`browser: page state ${JSON.stringify(await session.state())}`);
    } catch (_) {}
  }
  try {
    for (const line of diagnostics()) console.log(`browser: ${line}`);
  } catch (e) {
    console.log(`browser: diagnostics failed: ${e.message}`);
  }
  for (const line of session ? session.consoleErrors : []) console.log(`browser: console error: ${line}`);
}

async function cleanup() {
  if (context) await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
  if (profile) rmSync(profile, { recursive: true, force: true });
}
