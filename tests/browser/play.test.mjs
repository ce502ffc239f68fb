// Browser test of playback: the clip is converted through the API (node
// fetch) as format=hls and as format=dash; in headless Chromium hls.js and
// dash.js (the npm packages of tests/browser) play each package from start
// to end, are switched through every rendition, seek across segment
// boundaries, and must report no (fatal) error. Then the web page (GET /)
// uploads the clip as hls and plays the finished job with hls.js served by
// the service, with its poster and storyboard previews over the scrub bar.
//
//   TRANSCODER_URL=http://127.0.0.1:8080 TRANSCODER_CLIP=clip-20s-720p.mp4 \
//   TRANSCODER_SCREENSHOT=target/screenshots/page-player.png node tests/browser/play.test.mjs
//
// The players run in a tab of another origin (a page the test serves itself
// on another loopback port), so every request to the service is a
// cross-origin one (CORS). Screenshots: play-hls.png and play-dash.png next
// to TRANSCODER_SCREENSHOT (the page's). Prints `browser: …` lines and
// exits 0, or the reason and exits 1.
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { convert, fail, openBrowser, readEnv, runTest, waitForDone } from "./harness.mjs";

const DEADLINE_MS = 600_000;
const JOB_DEADLINE_MS = 300_000;
const HERE = dirname(fileURLToPath(import.meta.url));
const HLS_JS = join(HERE, "node_modules/hls.js/dist/hls.min.js");
const DASH_JS = join(HERE, "node_modules/dashjs/dist/modern/umd/dash.all.min.js");
const PLAYER_PAGE = `<!doctype html><meta charset="utf-8"><title>player</title>
<style>body{margin:0;background:#111}video{display:block;width:854px;height:480px;background:#000}
#info{color:#eee;font:14px system-ui;padding:6px}</style>
<video id="v" muted playsinline></video><div id="info"></div>`;
// Seek targets: each in another 4 s segment than the position before it
// (5.0 after the end, 13.0 forward over two boundaries, 9.0 backward).
const SEEKS = [5.0, 13.0, 9.0];
// Played after the rendition switches; the test still waits for `ended`.
const FAST_RATE = 2;

const log = [];
const say = (line) => {
  log.push(line);
  console.log(`browser: ${line}`);
};

async function main() {
  const { base, clip, clipSize, screenshot } = readEnv();
  if (!clipSize) fail(`TRANSCODER_CLIP ${clip} is empty`);
  const shots = dirname(screenshot);

  const started = Date.now();
  const [hlsJob, dashJob] = await Promise.all([convert({ format: "hls" }), convert({ format: "dash" })]);
  say(`submitted hls job ${hlsJob.id} and dash job ${dashJob.id}`);
  const t = await openBrowser();
  // The page's own upload (format hls) while the API's jobs run.
  const pageRun = startPageUpload(t);
  pageRun.catch(() => {}); // awaited below; a failure is reported there
  const [hlsDoc, dashDoc] = await Promise.all([
    waitForDone(hlsJob.id, { deadlineMs: JOB_DEADLINE_MS }),
    waitForDone(dashJob.id, { deadlineMs: JOB_DEADLINE_MS }),
  ]);
  say(`hls and dash jobs done after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  for (const doc of [hlsDoc, dashDoc]) checkPackageDoc(doc);

  await playHls(t, hlsDoc, join(shots, "play-hls.png"));
  await playDash(t, dashDoc, join(shots, "play-dash.png"));
  await checkPagePlayer(t, await pageRun, screenshot);
}

function checkPackageDoc(doc) {
  const o = doc.output || {};
  const manifest = { hls: "master.m3u8", dash: "manifest.mpd" }[doc.format];
  if (o.manifest !== manifest) fail(`job ${doc.id} (${doc.format}): output.manifest ${JSON.stringify(o.manifest)}, not ${manifest}`);
  if (!Array.isArray(o.renditions) || o.renditions.length < 2) fail(`job ${doc.id}: output.renditions ${JSON.stringify(o.renditions)}`);
  const links = doc.links || {};
  if (!new RegExp(`^/video/play/[^/]+/${manifest.replace(".", "\\.")}$`).test(links.play || "")) {
    fail(`job ${doc.id}: links.play ${JSON.stringify(links.play)}`);
  }
  if (!/\/poster\.jpg$/.test(links.poster || "")) fail(`job ${doc.id}: links.poster ${JSON.stringify(links.poster)}`);
  if (!/\/storyboard\.vtt$/.test(links.storyboard || "")) fail(`job ${doc.id}: links.storyboard ${JSON.stringify(links.storyboard)}`);
}

// The players' page (one muted <video id="v">), served by the test on a
// loopback port of its own: another origin than the service's.
let playerOrigin = null;
async function playerServer() {
  if (playerOrigin) return playerOrigin;
  const server = createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(PLAYER_PAGE);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  playerOrigin = `http://127.0.0.1:${server.address().port}`;
  return playerOrigin;
}

async function playerTab(t) {
  const origin = await playerServer();
  const page = await t.newPage();
  t.activePage = page;
  await page.goto(`${origin}/`, { waitUntil: "load", timeout: 30_000 });
  return page;
}

/**
 * Waits until fn(arg) is true in the page (polling every 100 ms), failing
 * after timeoutMs with `what` and the page's record; fails at once when the
 * player reported a fatal error meanwhile.
 */
async function waitIn(page, fn, arg, timeoutMs, what) {
  try {
    await page.waitForFunction(
      ([src, a]) => window.rec.fatal.length > 0 || new Function("a", `return (${src})(a)`)(a),
      [fn.toString(), arg],
      { timeout: timeoutMs, polling: 100 },
    );
  } catch (e) {
    fail(`${what} within ${timeoutMs / 1000} s (${await recordOf(page)})`);
  }
  const fatal = await page.evaluate(() => window.rec.fatal);
  if (fatal.length) fail(`the player reported a fatal error while waiting: ${what}: ${fatal.join(" | ")}`);
}

async function recordOf(page) {
  try {
    return await page.evaluate(() => {
      const v = document.getElementById("v");
      return JSON.stringify({
        currentTime: v.currentTime, duration: v.duration, paused: v.paused, ended: v.ended,
        readyState: v.readyState, videoHeight: v.videoHeight, error: v.error && v.error.message,
        switched: window.rec.switched, fatal: window.rec.fatal, errors: window.rec.errors.slice(-5), media: window.rec.media.slice(-10),
        buffered: Array.from({ length: v.buffered.length }, (_, i) => `${v.buffered.start(i).toFixed(2)}-${v.buffered.end(i).toFixed(2)}`),
      });
    });
  } catch (e) {
    return `no record: ${e.message}`;
  }
}

const sameHeights = (a, b) => JSON.stringify([...a].sort((x, y) => y - x)) === JSON.stringify([...b].sort((x, y) => y - x));

/** Plays to the end from where the video is, at `rate`, and checks it ended. */
async function playToEnd(page, rate, what) {
  const { remaining, mark } = await page.evaluate((rate) => {
    const v = document.getElementById("v");
    v.playbackRate = rate;
    if (v.paused) v.play();
    return { remaining: (v.duration - v.currentTime) / rate, mark: window.rec.ended };
  }, rate);
  await waitIn(page, (mark) => window.rec.ended > mark && document.getElementById("v").ended, mark,
    Math.max(0, remaining) * 1000 + 30_000, `${what}: no \`ended\``);
}

/**
 * Back to the start after the rendition switches, then plays the whole
 * package to the end (the switches' buffer replacements are behind it).
 */
async function playFromStart(page, what) {
  const mark = await page.evaluate(() => {
    const v = document.getElementById("v");
    const mark = window.rec.seeked;
    v.currentTime = 0;
    return mark;
  });
  await waitIn(page, (mark) => window.rec.seeked > mark && document.getElementById("v").currentTime < 0.5, mark, 15_000,
    `${what}: no \`seeked\` back to the start`);
  await playToEnd(page, FAST_RATE, what);
}

/** Seeks to each of SEEKS, checks where it landed and that playback goes on from there. */
async function seekAcross(page, what) {
  const seeks = [];
  for (const target of SEEKS) {
    const mark = await page.evaluate((target) => {
      const v = document.getElementById("v");
      const mark = window.rec.seeked;
      v.currentTime = target;
      if (v.paused) v.play();
      return mark;
    }, target);
    await waitIn(page, (mark) => window.rec.seeked > mark, mark, 15_000, `${what}: no \`seeked\` after the seek to ${target} s`);
    const landed = await page.evaluate(() => window.rec.lastSeeked);
    if (Math.abs(landed - target) > 0.5) fail(`${what}: the seek to ${target} s landed at ${landed.toFixed(3)} s`);
    await waitIn(page, (from) => document.getElementById("v").currentTime >= from + 1.0, landed, 15_000,
      `${what}: currentTime did not move on by 1 s after the seek to ${target} s (landed ${landed.toFixed(3)} s)`);
    const now = await page.evaluate(() => document.getElementById("v").currentTime);
    seeks.push(`${target.toFixed(1)}→${landed.toFixed(2)}→${now.toFixed(2)}`);
  }
  return seeks;
}

/** A player tab with `script` loaded and a recorder on its video element
 * (`window.rec`: ends, seeks, media events; the player adds switches and
 * errors); the package's playback URL. */
async function openPlayer(t, script, doc) {
  const { base } = readEnv();
  const page = await playerTab(t);
  await page.addScriptTag({ path: script });
  await page.evaluate(() => {
    const v = document.getElementById("v");
    const rec = (window.rec = { switched: [], fatal: [], errors: [], ended: 0, seeked: 0, lastSeeked: NaN, media: [] });
    v.addEventListener("ended", () => rec.ended++);
    v.addEventListener("seeked", () => { rec.seeked++; rec.lastSeeked = v.currentTime; });
    for (const name of ["play", "pause", "waiting", "stalled"]) v.addEventListener(name, () => rec.media.push(`${name}@${v.currentTime.toFixed(2)}`));
  });
  return { page, url: new URL(doc.links.play, base).href };
}

async function playHls(t, doc, shot) {
  const { page, url } = await openPlayer(t, HLS_JS, doc);
  const info = await page.evaluate(async (url) => {
    const v = document.getElementById("v");
    const rec = window.rec;
    if (!Hls.isSupported()) return { unsupported: true, version: Hls.version };
    const hls = (window.hls = new Hls());
    hls.on(Hls.Events.LEVEL_SWITCHED, (_e, d) => rec.switched.push({ level: d.level, at: +v.currentTime.toFixed(2) }));
    hls.on(Hls.Events.ERROR, (_e, d) => {
      const text = `${d.type} ${d.details}${d.fatal ? " (fatal)" : ""}`;
      rec.errors.push(text);
      if (d.fatal) rec.fatal.push(text);
    });
    const parsed = new Promise((resolve, reject) => {
      hls.once(Hls.Events.MANIFEST_PARSED, () => resolve());
      setTimeout(() => reject(new Error("no MANIFEST_PARSED within 20 s")), 20_000);
    });
    hls.loadSource(url);
    hls.attachMedia(v);
    try {
      await parsed;
    } catch (e) {
      return { failed: e.message, fatal: rec.fatal, version: Hls.version };
    }
    return {
      version: Hls.version,
      levels: hls.levels.map((l) => ({ width: l.width, height: l.height, bitrate: l.bitrate, codecs: l.codecSet || `${l.videoCodec},${l.audioCodec}` })),
    };
  }, url);
  if (info.unsupported) fail(`hls.js ${info.version}: Hls.isSupported() is false in this Chromium (no Media Source H.264/AAC)`);
  if (info.failed) fail(`hls.js ${info.version} on ${url}: ${info.failed} ${info.fatal.join(" | ")}`);
  const renditions = doc.output.renditions;
  const heights = info.levels.map((l) => l.height);
  if (!sameHeights(heights, renditions.map((r) => r.height))) {
    fail(`hls.js levels ${JSON.stringify(heights)} are not output.renditions ${JSON.stringify(renditions.map((r) => r.height))}`);
  }
  for (const l of info.levels) {
    const r = renditions.find((r) => r.height === l.height);
    if (l.bitrate !== r.bandwidth || l.width !== r.width) {
      fail(`hls.js level ${l.width}x${l.height} ${l.bitrate} bit/s does not match rendition ${JSON.stringify(r)}`);
    }
  }
  say(`hls.js ${info.version}: levels ${info.levels.map((l) => `${l.height}p@${l.bitrate}`).join(" ")} match output.renditions`);

  await page.evaluate(() => document.getElementById("v").play());
  await waitIn(page, () => document.getElementById("v").currentTime > 0.3, null, 20_000, "hls.js: playback did not start");

  // Every level, the one playing now last (so that each assignment is a switch).
  const current = await page.evaluate(() => window.hls.currentLevel);
  const order = info.levels.map((_, i) => i).filter((i) => i !== current);
  if (current >= 0) order.push(current);
  const switches = [];
  for (const i of order) {
    const mark = await page.evaluate((i) => {
      const mark = window.rec.switched.length;
      window.hls.currentLevel = i;
      return mark;
    }, i);
    await waitIn(page, ([i, mark]) => window.rec.switched.slice(mark).some((s) => s.level === i), [i, mark], 15_000,
      `hls.js: no LEVEL_SWITCHED to level ${i} (${info.levels[i].height}p)`);
    await waitIn(page, (h) => document.getElementById("v").videoHeight === h, info.levels[i].height, 15_000,
      `hls.js: video.videoHeight did not become ${info.levels[i].height} after the switch to level ${i}`);
    const at = await page.evaluate(() => document.getElementById("v").currentTime);
    switches.push(`${i}:${info.levels[i].height}p@${at.toFixed(2)}s`);
  }
  const switchedTo = new Set(await page.evaluate(() => window.rec.switched.map((s) => s.level)));
  for (let i = 0; i < info.levels.length; i++) if (!switchedTo.has(i)) fail(`hls.js never switched to level ${i}`);
  say(`hls.js: switched to every level (level:height@currentTime) ${switches.join(" ")}; videoHeight followed each`);

  const { end1, seeks, rec } = await playThrough(t, page, "hls.js", doc, info, switches, shot);
  if (rec.fatal.length) fail(`hls.js fatal errors: ${rec.fatal.join(" | ")}`);
  say(`hls.js: played from 0 at ${FAST_RATE}x, ended at ${end1.toFixed(2)} s; seeks (target→landed→later) ${seeks.join(" ")}; ended again at ` +
    `${rec.currentTime.toFixed(2)} s; ${rec.errors.length} non-fatal errors${rec.errors.length ? ` (${rec.errors.join(" | ")})` : ""}, ` +
    `0 fatal; screenshot ${shot}`);
  await page.evaluate(() => window.hls.destroy());
  await page.close();
  t.activePage = null;
}

async function playDash(t, doc, shot) {
  const { page, url } = await openPlayer(t, DASH_JS, doc);
  const info = await page.evaluate(async (url) => {
    const v = document.getElementById("v");
    const rec = window.rec;
    const player = (window.player = dashjs.MediaPlayer().create());
    const E = dashjs.MediaPlayer.events;
    player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false } } } });
    // Any error event fails the test: all of them count as fatal here.
    player.on(E.ERROR, (e) => {
      const err = e.error || {};
      const text = `error ${err.code ?? ""} ${err.message ?? JSON.stringify(err)}`;
      rec.errors.push(text);
      rec.fatal.push(text);
    });
    player.on(E.PLAYBACK_ENDED, () => rec.media.push(`dash.js PLAYBACK_ENDED@${v.currentTime.toFixed(2)}`));
    player.on(E.QUALITY_CHANGE_RENDERED, (e) => {
      if (e.mediaType === "video" && e.newRepresentation) {
        rec.switched.push({ id: e.newRepresentation.id, height: e.newRepresentation.height, at: +v.currentTime.toFixed(2) });
      }
    });
    const ready = new Promise((resolve, reject) => {
      player.on(E.STREAM_INITIALIZED, () => resolve());
      setTimeout(() => reject(new Error("no STREAM_INITIALIZED within 20 s")), 20_000);
    });
    player.initialize(v, url, false);
    try {
      await ready;
    } catch (e) {
      return { failed: e.message, fatal: rec.fatal, version: player.getVersion() };
    }
    return {
      version: player.getVersion(),
      video: player.getRepresentationsByType("video").map((r) => ({ id: r.id, width: r.width, height: r.height, bandwidth: r.bandwidth })),
      audio: player.getRepresentationsByType("audio").map((r) => ({ id: r.id, bandwidth: r.bandwidth })),
    };
  }, url);
  if (info.failed) fail(`dash.js ${info.version} on ${url}: ${info.failed} ${info.fatal.join(" | ")}`);
  const renditions = doc.output.renditions;
  const heights = info.video.map((r) => r.height);
  if (!sameHeights(heights, renditions.map((r) => r.height))) {
    fail(`dash.js video representations ${JSON.stringify(heights)} are not output.renditions ${JSON.stringify(renditions.map((r) => r.height))}`);
  }
  if (info.audio.length !== 1) fail(`dash.js sees ${info.audio.length} audio representations, not 1`);
  say(`dash.js ${info.version}: video representations ${info.video.map((r) => `${r.height}p`).join(" ")} match output.renditions; one audio`);

  await page.evaluate(() => document.getElementById("v").play());
  await waitIn(page, () => document.getElementById("v").currentTime > 0.3, null, 20_000, "dash.js: playback did not start");

  const current = await page.evaluate(() => {
    const r = window.player.getCurrentRepresentationForType("video");
    return r ? r.id : null;
  });
  const order = info.video.map((_, i) => i).filter((i) => info.video[i].id !== current);
  const last = info.video.findIndex((r) => r.id === current);
  if (last >= 0) order.push(last);
  const switches = [];
  for (const i of order) {
    const rep = info.video[i];
    const mark = await page.evaluate((i) => {
      const mark = window.rec.switched.length;
      window.player.setRepresentationForTypeByIndex("video", i, true);
      return mark;
    }, i);
    await waitIn(page, ([id, mark]) => window.rec.switched.slice(mark).some((s) => s.id === id), [rep.id, mark], 15_000,
      `dash.js: no QUALITY_CHANGE_RENDERED to representation ${rep.id} (${rep.height}p)`);
    await waitIn(page, (h) => document.getElementById("v").videoHeight === h, rep.height, 15_000,
      `dash.js: video.videoHeight did not become ${rep.height} after the switch to representation ${rep.id}`);
    const at = await page.evaluate(() => document.getElementById("v").currentTime);
    switches.push(`${rep.id}:${rep.height}p@${at.toFixed(2)}s`);
  }
  const rendered = new Set(await page.evaluate(() => window.rec.switched.map((s) => s.id)));
  for (const r of info.video) if (!rendered.has(r.id)) fail(`dash.js never rendered representation ${r.id} (${r.height}p)`);
  say(`dash.js: switched to every representation (id:height@currentTime) ${switches.join(" ")}; videoHeight followed each`);

  const { end1, seeks, rec } = await playThrough(t, page, "dash.js", doc, info, switches, shot);
  if (rec.errors.length) fail(`dash.js error events: ${rec.errors.join(" | ")}`);
  say(`dash.js: played from 0 at ${FAST_RATE}x, ended at ${end1.toFixed(2)} s; seeks (target→landed→later) ${seeks.join(" ")}; ended again at ` +
    `${rec.currentTime.toFixed(2)} s; 0 error events; screenshot ${shot}`);
  await page.evaluate(() => window.player.destroy());
  await page.close();
  t.activePage = null;
}

/** After the rendition switches: plays from 0 to the end, seeks across
 * segment boundaries and plays to the end again; checks where it ended,
 * shows what was switched and takes the screenshot. The player's record. */
async function playThrough(t, page, name, doc, info, switches, shot) {
  await playFromStart(page, name);
  const end1 = await page.evaluate(() => document.getElementById("v").currentTime);
  const seeks = await seekAcross(page, name);
  await playToEnd(page, FAST_RATE, `${name} after the seeks`);
  const rec = JSON.parse(await recordOf(page));
  if (Math.abs(rec.currentTime - doc.output["duration-seconds"]) > 0.5) {
    fail(`${name} ended at ${rec.currentTime} s, the output lasts ${doc.output["duration-seconds"]} s`);
  }
  await page.evaluate((text) => { document.getElementById("info").textContent = text; }, `${name} ${info.version}: ${switches.join(" ")}`);
  await t.screenshot({ page, path: shot });
  return { end1, seeks, rec };
}


/** The web page uploads the clip as hls (returns once the upload started). */
async function startPageUpload(t) {
  const { page } = t;
  const responses = [];
  page.on("response", (res) => responses.push(res));
  const since = Date.now();
  await t.goto("/");
  const options = await page.locator("#format option").evaluateAll((os) => os.map((o) => o.value));
  for (const f of ["hls", "dash"]) if (!options.includes(f)) fail(`the page's format selector offers ${options.join(", ")}: no ${f}`);
  if (await page.locator("#player-box").isVisible()) fail("#player-box is visible before any job");
  await t.fillForm({ format: "hls" });
  if (!(await page.locator("#height").isDisabled())) fail("#height is not disabled with format hls (a package takes no height)");
  await page.click("#submit");
  return { since, responses };
}

// WebVTT cues (the test's own reading): [{ start, end, x, y, w, h, image }].
function parseVtt(text) {
  const secs = (s) => s.trim().split(":").reduce((acc, n) => acc * 60 + Number(n), 0);
  const cues = [];
  for (const m of text.matchAll(/([\d:.]+)\s*-->\s*([\d:.]+)[^\n]*\n([^\n#]+)#xywh=(\d+),(\d+),(\d+),(\d+)/g)) {
    cues.push({ start: secs(m[1]), end: secs(m[2]), image: m[3].trim(), x: +m[4], y: +m[5], w: +m[6], h: +m[7] });
  }
  return cues;
}

async function checkPagePlayer(t, { since, responses }, shot) {
  const { base, authHeaders } = readEnv();
  const { page } = t;
  t.activePage = null;
  const { id } = await t.waitForFinishedJob({ since, deadlineMs: JOB_DEADLINE_MS });
  await page.locator("#player-box").waitFor({ state: "visible", timeout: 10_000 }).catch(() => fail("no #player-box for the finished hls job"));
  const res = await fetch(`${base}/video/status/${encodeURIComponent(id)}`, { headers: authHeaders, signal: AbortSignal.timeout(30_000) });
  const doc = await res.json();
  if (doc.format !== "hls" || !doc.output || !doc.output.renditions) fail(`the page's job ${id} is not an hls package: ${JSON.stringify(doc).slice(0, 300)}`);

  // hls.js from the service itself.
  try {
    await page.waitForFunction(() => document.getElementById("player").dataset.engine, null, { timeout: 20_000 });
  } catch (_) {
    fail("the page chose no playback engine for the hls job");
  }
  const engine = await page.evaluate(() => document.getElementById("player").dataset.engine);
  if (engine !== "hls.js") fail(`the page plays the hls job with ${JSON.stringify(engine)}, not hls.js`);
  const script = responses.find((r) => new URL(r.url()).pathname === "/static/hls.min.js");
  if (!script) fail("the page did not load /static/hls.min.js");
  if (script.status() !== 200) fail(`GET /static/hls.min.js answered ${script.status()}`);
  const jsType = script.headers()["content-type"] || "";
  if (!jsType.startsWith("text/javascript")) fail(`/static/hls.min.js has Content-Type ${JSON.stringify(jsType)}`);
  if (!/max-age=\d{6,}/.test(script.headers()["cache-control"] || "")) fail(`/static/hls.min.js has Cache-Control ${script.headers()["cache-control"]}`);

  // The poster: the job's poster.jpg under a play token, and it loads.
  const poster = await page.evaluate(() => document.getElementById("player").poster);
  if (!/^\/video\/play\/[^/]+\/poster\.jpg$/.test(new URL(poster).pathname)) fail(`the video's poster is ${JSON.stringify(poster)}`);
  const posterSize = await page.evaluate((src) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve([img.naturalWidth, img.naturalHeight]);
    img.onerror = () => resolve(null);
    img.src = src;
  }), poster);
  if (!posterSize || posterSize[1] !== doc.output.height) fail(`the poster ${poster} loads as ${JSON.stringify(posterSize)}, not ${doc.output.height} lines high`);

  // It plays.
  await page.evaluate(() => {
    const v = document.getElementById("player");
    v.muted = true;
    return v.play();
  });
  try {
    await page.waitForFunction(() => document.getElementById("player").currentTime > 1, null, { timeout: 30_000, polling: 100 });
  } catch (_) {
    const v = await page.evaluate(() => { const v = document.getElementById("player"); return { t: v.currentTime, rs: v.readyState, err: v.error && v.error.message }; });
    fail(`the page's video did not pass 1 s within 30 s: ${JSON.stringify(v)}`);
  }
  const played = await page.evaluate(() => { const v = document.getElementById("player"); return { t: v.currentTime, h: v.videoHeight }; });
  if (!(played.h > 0)) fail("the page's video has no picture (videoHeight 0)");

  // Storyboard previews: hovering over the scrub bar shows the cue's tile.
  const vttRes = await fetch(new URL(doc.links.storyboard, base), { signal: AbortSignal.timeout(30_000) });
  const cues = parseVtt(await vttRes.text());
  if (cues.length < 2) fail(`the storyboard of job ${id} has ${cues.length} cues`);
  const duration = doc.output["duration-seconds"];
  await page.locator("#player-box").scrollIntoViewIfNeeded();
  const box = await page.locator("#scrub-bar").boundingBox();
  if (!box || box.width < 100) fail(`#scrub-bar is ${JSON.stringify(box)}`);
  const tiles = [];
  for (const fraction of [0.2, 0.8]) {
    await page.mouse.move(box.x + fraction * box.width, box.y + box.height / 2);
    try {
      await page.waitForFunction((f) => {
        const p = document.getElementById("scrub-preview");
        return !p.hidden && p.offsetParent !== null && Math.abs(Number(p.dataset.time) - f) < 0.5;
      }, fraction * duration, { timeout: 5_000, polling: 50 });
    } catch (_) {
      fail(`hovering at ${Math.round(fraction * 100)} % of the scrub bar shows no preview near ${(fraction * duration).toFixed(1)} s`);
    }
    const tile = await page.evaluate(() => {
      const p = document.getElementById("scrub-preview"), th = document.getElementById("scrub-thumb");
      const cs = getComputedStyle(th);
      return { time: Number(p.dataset.time), label: document.getElementById("scrub-time").textContent, image: cs.backgroundImage,
        position: cs.backgroundPosition, width: th.offsetWidth, height: th.offsetHeight, visible: th.offsetParent !== null };
    });
    const cue = cues.find((c) => tile.time >= c.start && tile.time < c.end);
    if (!cue) fail(`no storyboard cue covers ${tile.time} s`);
    if (!tile.visible || !/\/video\/play\/[^/]+\/storyboard\.jpg"?\)$/.test(tile.image)) fail(`the preview's thumbnail is ${JSON.stringify(tile)}`);
    if (tile.position !== `${-cue.x}px ${-cue.y}px`) fail(`the preview at ${tile.time} s shows ${tile.position}, the cue is at ${cue.x},${cue.y}`);
    if (tile.width < cue.w || tile.height < cue.h) fail(`the preview thumbnail is ${tile.width}x${tile.height}, the cue ${cue.w}x${cue.h}`);
    tiles.push({ ...tile, cue });
  }
  // The sprite is fetched once the tile's style applies: wait for its response.
  const isSprite = (r) => /\/video\/play\/[^/]+\/storyboard\.jpg$/.test(new URL(r.url()).pathname);
  const spriteBy = Date.now() + 10_000;
  while (!responses.some(isSprite) && Date.now() < spriteBy) await page.waitForTimeout(100);
  const sprite = responses.find(isSprite);
  if (!sprite) fail("the page did not load storyboard.jpg within 10 s of showing a preview");
  const spriteType = sprite.headers()["content-type"] || "";
  if (sprite.status() !== 200 || !spriteType.startsWith("image/jpeg")) fail(`storyboard.jpg answered ${sprite.status()} ${spriteType}`);
  if (tiles[0].cue.start === tiles[1].cue.start) fail("the two hover positions fell into one storyboard cue");

  await t.screenshot({ path: shot });
  t.expectOnlyService();
  t.expectNoConsoleErrors();
  say(`page: job ${id} plays with hls.js from /static/hls.min.js (${jsType}); currentTime ${played.t.toFixed(2)} s, ` +
    `videoHeight ${played.h}; poster ${posterSize.join("x")}; storyboard previews ` +
    tiles.map((x) => `${x.label} → xywh=${x.cue.x},${x.cue.y},${x.cue.w},${x.cue.h}`).join(", ") + `; screenshot ${shot}`);
  console.log(`browser: ok playback: hls.js, dash.js and the web page (${((Date.now() - since) / 1000).toFixed(1)} s)`);
}

await runTest(main, { deadlineMs: DEADLINE_MS, diagnostics: () => log.map((l) => `so far: ${l}`) });
