// Plays an HLS or DASH package in headless Chromium through hls.js or dash.js (from npm, pinned
// in package.json) and reports what happened as one JSON object on stdout
// (tests/browser_packages.rs judges it).
//
//   node tests/browser/play_stream.mjs DIR MANIFEST [--chromium /usr/bin/chromium]
//
// DIR is served on 127.0.0.1 under /pkg/ (every file of the package), beside a page with a
// <video> element and the player library. MANIFEST (`master.m3u8` or `manifest.mpd`, relative
// to DIR) chooses the player. The page plays from the beginning until the clock advances, then
// seeks to the middle and waits for `seeked` and for frames presented after it. Every player
// error (fatal or not) and media element error is recorded; nothing here decides pass or fail.
//
// Exit status: 0 with the report on stdout once the steps ran; 2 when Chromium or the server
// could not start.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const [dir, manifest] = args;
const chromiumPath = args.includes("--chromium")
  ? args[args.indexOf("--chromium") + 1]
  : "/usr/bin/chromium";
if (!dir || !manifest) {
  console.error("usage: node play_stream.mjs DIR MANIFEST [--chromium PATH]");
  process.exit(2);
}
const kind = extname(manifest).toLowerCase() === ".mpd" ? "dash" : "hls";
const here = fileURLToPath(new URL(".", import.meta.url));
const libraries = {
  "/lib/hls.min.js": join(here, "node_modules/hls.js/dist/hls.min.js"),
  "/lib/dash.all.min.js": join(here, "node_modules/dashjs/dist/modern/umd/dash.all.min.js"),
};
const types = {
  ".m3u8": "application/vnd.apple.mpegurl",
  ".mpd": "application/dash+xml",
  ".m4s": "video/iso.segment",
  ".mp4": "video/mp4",
  ".js": "text/javascript",
};

/** Every request for a package file: its path and status. */
const requests = [];

const page = `<!doctype html><meta charset="utf-8"><title>stream</title>
<script src="/lib/${kind === "dash" ? "dash.all.min.js" : "hls.min.js"}"></script>
<video id="video" muted playsinline preload="auto"></video>`;

const server = createServer(async (request, response) => {
  const url = decodeURIComponent(new URL(request.url, "http://localhost").pathname);
  if (url === "/") {
    response.writeHead(200, { "Content-Type": "text/html" });
    response.end(page);
    return;
  }
  let path = libraries[url];
  if (!path && url.startsWith("/pkg/")) {
    const relative = normalize(url.slice("/pkg/".length));
    if (!relative.startsWith("..")) path = join(dir, relative);
  }
  const entry = { path: url, status: 200 };
  if (url.startsWith("/pkg/")) requests.push(entry);
  try {
    const body = await readFile(path);
    response.writeHead(200, {
      "Content-Type": types[extname(path).toLowerCase()] ?? "application/octet-stream",
      "Content-Length": String(body.length),
    });
    response.end(body);
  } catch {
    entry.status = 404;
    response.writeHead(404);
    response.end();
  }
});

let browser;
try {
  await new Promise((resolve, reject) => server.listen(0, "127.0.0.1", resolve).on("error", reject));
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--autoplay-policy=no-user-gesture-required", "--mute-audio"],
  });
} catch (error) {
  console.error(`play_stream.mjs: cannot start: ${error.message}`);
  server.close();
  process.exit(2);
}

const { port } = server.address();
const tab = await browser.newPage();
const pageErrors = [];
tab.on("pageerror", (error) => pageErrors.push(error.message));
await tab.goto(`http://127.0.0.1:${port}/`);
const report = await tab.evaluate(
  async ({ kind, source }) => {
    const STEP_BOUND_MS = 20000;
    const video = document.getElementById("video");
    const steps = [];
    const errors = [];
    const playerErrors = [];
    video.addEventListener("error", () =>
      errors.push({ code: video.error?.code ?? null, message: video.error?.message ?? "" }),
    );
    const until = (name, ready) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), STEP_BOUND_MS);
        ready(() => {
          clearTimeout(timer);
          resolve(true);
        });
      }).then((done) => {
        steps.push({ step: name, done, currentTime: video.currentTime });
        return done;
      });
    const onceEvent = (event) => (done) => video.addEventListener(event, done, { once: true });
    const frames = (count) => {
      const times = [];
      return {
        times,
        wait: (done) => {
          const next = (_now, metadata) => {
            times.push(metadata.mediaTime);
            if (times.length >= count) done();
            else video.requestVideoFrameCallback(next);
          };
          video.requestVideoFrameCallback(next);
        },
      };
    };

    const result = { kind, steps, errors, playerErrors };
    let renditions = () => null;
    if (kind === "hls") {
      result.playerVersion = Hls.version;
      const hls = new Hls();
      hls.on(Hls.Events.ERROR, (_event, data) =>
        playerErrors.push({ type: data.type, details: data.details, fatal: data.fatal }),
      );
      renditions = () => ({
        video: hls.levels.map((level) => `${level.width}x${level.height}`),
        audio: hls.audioTracks.map((track) => track.lang ?? track.name),
      });
      hls.loadSource(source);
      hls.attachMedia(video);
    } else {
      result.playerVersion = dashjs.Version ?? null;
      const player = dashjs.MediaPlayer().create();
      player.on(dashjs.MediaPlayer.events.ERROR, (event) =>
        playerErrors.push({ type: "error", details: JSON.stringify(event.error ?? event), fatal: true }),
      );
      player.on(dashjs.MediaPlayer.events.PLAYBACK_ERROR, (event) =>
        playerErrors.push({ type: "playback", details: String(event.error), fatal: true }),
      );
      renditions = () => ({
        video: player.getRepresentationsByType("video").map((r) => `${r.width}x${r.height}`),
        audio: player.getTracksFor("audio").map((track) => track.lang),
      });
      player.initialize(video, source, false);
    }

    if (!(await until("loadedmetadata", onceEvent("loadedmetadata")))) return result;
    Object.assign(result, { duration: video.duration, width: video.videoWidth, height: video.videoHeight });

    const start = frames(5);
    await video.play().catch((error) => errors.push({ code: null, message: `play(): ${error.message}` }));
    if (!(await until("first frames", start.wait))) return result;
    if (!(await until("clock advances", (done) => {
      const check = () => (video.currentTime > 0.2 ? done() : setTimeout(check, 20));
      check();
    }))) return result;
    video.pause();
    result.startFrameTimes = start.times;

    const target = video.duration / 2;
    result.seekTarget = target;
    const seeked = until("seeked", onceEvent("seeked"));
    video.currentTime = target;
    if (!(await seeked)) return result;
    result.timeAfterSeek = video.currentTime;
    const afterSeek = frames(5);
    await video.play().catch((error) => errors.push({ code: null, message: `play(): ${error.message}` }));
    if (!(await until("frames after seek", afterSeek.wait))) return result;
    video.pause();
    Object.assign(result, {
      seekFrameTimes: afterSeek.times,
      framesDecoded: video.getVideoPlaybackQuality().totalVideoFrames,
      renditions: renditions(),
      finalError: video.error ? { code: video.error.code, message: video.error.message } : null,
    });
    return result;
  },
  { kind, source: `/pkg/${manifest}` },
);

await browser.close();
server.close();
report.pageErrors = pageErrors;
report.requests = requests;
console.log(JSON.stringify(report));
