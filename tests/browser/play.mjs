// Plays a video file in headless Chromium the way a web page would, and reports what happened
// as one JSON object on stdout (tests/common/browser.rs judges it).
//
//   node tests/browser/play.mjs FILE [--chromium /usr/bin/chromium]
//
// The file is served on 127.0.0.1 with HTTP range requests (206 Partial Content, as S3 and
// every CDN serve media), next to a page with a <video> element. The page plays from the
// beginning until the clock advances, then seeks to the middle and waits for `seeked` and for
// frames presented after it, drawing the last one to a canvas to prove it decoded to pixels.
// Every step records what the element reported; nothing here decides pass or fail beyond
// "the step finished", so the Rust test states the properties it needs.
//
// Exit status: 0 with the report on stdout once the steps ran (even if playback failed: the
// report says how); 2 when Chromium or the server could not start.
import { createServer } from "node:http";
import { open, stat } from "node:fs/promises";
import { extname } from "node:path";
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const file = args[0];
const chromiumPath = args.includes("--chromium")
  ? args[args.indexOf("--chromium") + 1]
  : "/usr/bin/chromium";
if (!file) {
  console.error("usage: node play.mjs FILE [--chromium PATH]");
  process.exit(2);
}

const mime = { ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/mp4", ".webm": "video/webm", ".mkv": "video/webm" }[
  extname(file).toLowerCase()
] ?? "application/octet-stream";
const size = (await stat(file)).size;

/** Every request for the video: the Range header, the status and the bytes sent. */
const requests = [];

/** `bytes=a-b`, `bytes=a-` or `bytes=-n` against `size`, as RFC 9110 §14.1.2 reads it. */
function parseRange(header) {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return null;
  let start, end;
  if (match[1] === "") {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  return start <= end && start < size ? { start, end } : "unsatisfiable";
}

const page = `<!doctype html><meta charset="utf-8"><title>playback</title>
<video id="video" muted playsinline preload="auto"></video><canvas id="canvas"></canvas>`;

const server = createServer(async (request, response) => {
  if (request.url === "/") {
    response.writeHead(200, { "Content-Type": "text/html" });
    response.end(page);
    return;
  }
  if (request.url !== "/video") {
    response.writeHead(404);
    response.end();
    return;
  }
  const range = request.headers.range ? parseRange(request.headers.range) : null;
  const entry = { range: request.headers.range ?? null, status: 200, bytes: 0 };
  requests.push(entry);
  if (range === "unsatisfiable") {
    entry.status = 416;
    response.writeHead(416, { "Content-Range": `bytes */${size}` });
    response.end();
    return;
  }
  const { start, end } = range ?? { start: 0, end: size - 1 };
  entry.status = range ? 206 : 200;
  const headers = {
    "Content-Type": mime,
    "Accept-Ranges": "bytes",
    "Content-Length": String(end - start + 1),
  };
  if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
  response.writeHead(entry.status, headers);
  if (request.method === "HEAD") {
    response.end();
    return;
  }
  const handle = await open(file);
  const stream = handle.createReadStream({ start, end });
  stream.on("data", (chunk) => (entry.bytes += chunk.length));
  stream.on("close", () => handle.close().catch(() => {}));
  // The browser cancels a request it no longer needs (after a seek): stop reading then.
  response.on("close", () => stream.destroy());
  stream.pipe(response);
});

let browser;
try {
  await new Promise((resolve, reject) => server.listen(0, "127.0.0.1", resolve).on("error", reject));
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--autoplay-policy=no-user-gesture-required", "--mute-audio"],
  });
} catch (error) {
  console.error(`play.mjs: cannot start: ${error.message}`);
  server.close();
  process.exit(2);
}

const { port } = server.address();
const tab = await browser.newPage();
await tab.goto(`http://127.0.0.1:${port}/`);
// Each step waits for an event with a generous bound so a stall is reported as the step that
// stalled, not as a hang; how long playback takes is never judged.
const report = await tab.evaluate(async () => {
  const STEP_BOUND_MS = 20000;
  const video = document.getElementById("video");
  const steps = [];
  const errors = [];
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
  /** The media times of the next `count` frames presented. */
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
  const quality = () => video.getVideoPlaybackQuality();
  /** The presented frame drawn to a canvas: how many distinct luma levels it has (a decoded
   * picture of a test pattern has many; a blank or undecoded one has one). */
  const pictureLevels = () => {
    const canvas = document.getElementById("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(video, 0, 0);
    const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
    const levels = new Set();
    for (let i = 0; i < data.length; i += 4) levels.add((data[i] * 3 + data[i + 1] * 6 + data[i + 2]) / 10 | 0);
    return levels.size;
  };

  const result = { steps, errors };
  video.src = "/video";
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
  Object.assign(result, {
    startFrameTimes: start.times,
    framesDecodedBeforeSeek: quality().totalVideoFrames,
    playedTo: video.currentTime,
  });

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
    framesDecodedAfterSeek: quality().totalVideoFrames,
    pictureLevelsAfterSeek: pictureLevels(),
    finalError: video.error ? { code: video.error.code, message: video.error.message } : null,
  });
  return result;
});

await browser.close();
server.close();
report.mime = mime;
report.fileBytes = size;
report.requests = requests;
console.log(JSON.stringify(report));
