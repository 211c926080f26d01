#!/usr/bin/env python3
"""Generates the hostile-input corpus: small files made with the ffmpeg CLI and byte patches.

    tests/corpus/generate.py DIR

Writes every case into DIR and DIR/cases.json: a list of {"file", "what", "expect"}, where
expect is "ok" (treemux must transcode it and verify must pass), "refused" (treemux must exit
non-zero with one line naming the file) or "either" (both are acceptable; the test still checks
the invariants). Nothing here is committed as a binary: the corpus is rebuilt on every test run.
"""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
cases = []


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def case(file, what, expect, output=None, args=None, checks=None, error_names=None):
    """One case. `output`: the output's extension (mp4 when None); `args`: extra transcode
    options; `checks`: exact properties of the output for tests/corpus/judge.py; `error_names`:
    what a refusal must name (the input file when None)."""
    assert expect in ("ok", "refused", "either"), expect
    assert (OUT / file).exists(), file
    entry = {"file": file, "what": what, "expect": expect}
    for key, value in (("output", output), ("args", args), ("checks", checks), ("error_names", error_names)):
        if value is not None:
            entry[key] = value
    cases.append(entry)


def video(seconds=2, size="320x240", rate=25):
    return ["-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={seconds}"]


def tone(seconds=2, rate=48000, layout="stereo"):
    return ["-f", "lavfi", "-i", f"sine=f=440:r={rate}:d={seconds}", "-ac", str({"mono": 1, "stereo": 2, "7.1": 8}[layout])]


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac"]


def patched(source, target, find, replace, occurrence=0):
    data = bytearray((OUT / source).read_bytes())
    index = -1
    for _ in range(occurrence + 1):
        index = data.find(find, index + 1)
    if index < 0:
        raise SystemExit(f"{source}: {find!r} not found")
    data[index:index + len(replace)] = replace
    (OUT / target).write_bytes(bytes(data))
    return index


# --- A good clip, the base of most damage below.
ffmpeg(*video(4), *tone(4), *X264, "-g", "25", *AAC, "-shortest", str(OUT / "base.mp4"))
ffmpeg(*video(4), *tone(4), *X264, "-g", "25", *AAC, "-shortest", "-movflags", "+faststart", str(OUT / "base-faststart.mp4"))
ffmpeg(*video(4), *tone(4), *X264, "-g", "25", *AAC, "-shortest", "-f", "mpegts", str(OUT / "base.ts"))
case("base.mp4", "a good H.264/AAC MP4 (the control)", "ok")

# --- Not media at all.
(OUT / "zero-bytes.mp4").write_bytes(b"")
case("zero-bytes.mp4", "zero bytes", "refused")
(OUT / "text.mp4").write_text("This is a shopping list, not a video.\n" * 20)
case("text.mp4", "text with a video extension", "refused")
(OUT / "random.mkv").write_bytes(bytes((i * 7919 + (i >> 8) * 31) % 251 for i in range(65536)))
case("random.mkv", "64 KB of noise", "refused")
(OUT / "html.webm").write_text("<!doctype html><html><body>404 Not Found</body></html>\n")
case("html.webm", "an HTML error page saved as .webm", "refused")
os.makedirs(OUT / "directory.mp4", exist_ok=True)
case("directory.mp4", "a directory named like a video", "refused")

# --- Images.
ffmpeg(*video(1), "-frames:v", "1", str(OUT / "image.png"))
case("image.png", "a PNG image", "either")
ffmpeg(*video(1), "-frames:v", "1", str(OUT / "image.jpg"))
case("image.jpg", "a JPEG image", "either")
ffmpeg(*video(1, rate=10), "-frames:v", "10", str(OUT / "animated.gif"))
case("animated.gif", "an animated GIF (10 frames)", "either")

# --- No video stream.
ffmpeg(*tone(2), *AAC, str(OUT / "audio-only.m4a"))
case("audio-only.m4a", "audio only (AAC)", "refused")
ffmpeg(*tone(2), "-c:a", "libmp3lame", str(OUT / "audio-only.mp3"))
case("audio-only.mp3", "audio only (MP3)", "refused")
(OUT / "subtitles.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nHello\n")
case("subtitles.srt", "a subtitle file", "refused")
ffmpeg("-i", str(OUT / "subtitles.srt"), "-c:s", "srt", str(OUT / "subtitles-only.mkv"))
case("subtitles-only.mkv", "Matroska with only a subtitle track", "refused")
(OUT / "no-streams.mkv").write_bytes((OUT / "subtitles-only.mkv").read_bytes()[:60])
case("no-streams.mkv", "a Matroska header and nothing else", "refused")

# --- Truncated.
base = (OUT / "base.mp4").read_bytes()
for percent in (10, 50, 90):
    (OUT / f"truncated-{percent}.mp4").write_bytes(base[: len(base) * percent // 100])
    case(f"truncated-{percent}.mp4", f"MP4 (index at the end) cut at {percent}%", "refused")
fast = (OUT / "base-faststart.mp4").read_bytes()
for percent in (5, 60):
    (OUT / f"truncated-faststart-{percent}.mp4").write_bytes(fast[: len(fast) * percent // 100])
    case(f"truncated-faststart-{percent}.mp4", f"MP4 (index first) cut at {percent}%", "refused")
ts = (OUT / "base.ts").read_bytes()
(OUT / "truncated-70.ts").write_bytes(ts[: len(ts) * 70 // 100])
case("truncated-70.ts", "MPEG-TS cut at 70% (no index to contradict it)", "either")

# --- Corrupted packets.
data = bytearray(ts)
for offset in range(len(data) // 3, len(data) // 3 + 188 * 40, 188 * 4):
    data[offset + 20: offset + 60] = bytes(40)
(OUT / "corrupted-light.ts").write_bytes(bytes(data))
case("corrupted-light.ts", "MPEG-TS with a few zeroed payload runs", "either")
data = bytearray(base)
mdat = data.find(b"mdat")
for offset in range(mdat + 2000, len(data) - 5000, 997):
    data[offset] ^= 0xFF
(OUT / "corrupted-heavy.mp4").write_bytes(bytes(data))
case("corrupted-heavy.mp4", "MP4 with a byte flipped every KB of media data", "either")

# --- Wrong extension: the content decides.
ffmpeg(*video(2), *tone(2), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", str(OUT / "webm-named.mp4.tmp.webm"))
os.replace(OUT / "webm-named.mp4.tmp.webm", OUT / "webm-named.mp4")
case("webm-named.mp4", "a WebM file named .mp4", "ok")
(OUT / "mp4-named.avi").write_bytes(base)
case("mp4-named.avi", "an MP4 file named .avi", "ok")
(OUT / "no-extension").write_bytes(base)
case("no-extension", "an MP4 file with no extension", "ok")

# --- Header lies.
(OUT / "huge-dimensions.y4m").write_bytes(b"YUV4MPEG2 W60000 H60000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1024))
case("huge-dimensions.y4m", "Y4M declaring 60000x60000 with 1 KB of data", "refused")
(OUT / "zero-frame-rate.y4m").write_bytes(b"YUV4MPEG2 W64 H64 F0:0 Ip A1:1 C420jpeg\n" + (b"FRAME\n" + bytes(64 * 64 * 3 // 2)) * 10)
case("zero-frame-rate.y4m", "Y4M with a 0/0 frame rate", "either")
ffmpeg(*video(0.2, size="160x120", rate=1000), *X264, str(OUT / "absurd-frame-rate.mp4"))
case("absurd-frame-rate.mp4", "1000 frames per second", "ok")
patched("base.mp4", "huge-duration.mp4", b"mvhd", b"mvhd")
data = bytearray((OUT / "huge-duration.mp4").read_bytes())
at = data.find(b"mvhd") + 4
version = data[at]
duration_at = at + (4 + 8 + 8 + 4 if version == 1 else 4 + 4 + 4 + 4)
data[duration_at: duration_at + 4] = struct.pack(">I", 0xFFFFFFF0)
(OUT / "huge-duration.mp4").write_bytes(bytes(data))
case("huge-duration.mp4", "MP4 whose movie header declares ~12 years", "either")
data = bytearray(base)
stss = data.find(b"stss")
data[stss + 8: stss + 12] = struct.pack(">I", 0)
(OUT / "no-keyframes.mp4").write_bytes(bytes(data))
case("no-keyframes.mp4", "MP4 whose sync-sample table lists no keyframe", "either")
ffmpeg(*video(2), *X264, "-c:v", "libx264", "-bsf:v", "setts=pts=PTS+if(eq(N\\,20)\\,-8*DURATION\\,0)", "-f", "matroska", str(OUT / "non-monotonic.mkv"))
case("non-monotonic.mkv", "Matroska with one frame's timestamp jumping back 8 frames", "either")
ffmpeg(*video(2), "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", str(OUT / "raw.h264"))
case("raw.h264", "a raw H.264 elementary stream (no container timestamps)", "either")

# --- A codec this build cannot decode: the Matroska codec id of a good file, renamed.
ffmpeg("-i", str(OUT / "base.mp4"), "-c", "copy", str(OUT / "base.mkv"))
patched("base.mkv", "unknown-codec.mkv", b"V_MPEG4/ISO/AVC", b"V_TREEMUX/NO/CD")
case("unknown-codec.mkv", "Matroska with an unknown video codec id", "refused")

# --- Sizes.
ffmpeg(*video(1), "-frames:v", "1", *X264, str(OUT / "one-frame.mp4"))
case("one-frame.mp4", "a one-frame video", "ok")
ffmpeg(*video(2, size="321x241"), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p", str(OUT / "odd-size.mp4"))
case("odd-size.mp4", "321x241 (odd), 4:4:4", "ok")
ffmpeg(*video(1, size="2x2"), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(OUT / "tiny-2x2.mp4"))
case("tiny-2x2.mp4", "a 2x2 video", "ok")
ffmpeg(*video(1, size="16x16"), "-c:v", "ffv1", str(OUT / "tiny-ffv1.mkv"))
case("tiny-ffv1.mkv", "16x16 FFV1 (lossless)", "ok")

# --- Pixel formats and geometry.
ffmpeg(*video(2), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv422p", str(OUT / "yuv422.mp4"))
case("yuv422.mp4", "H.264 4:2:2", "ok")
ffmpeg(*video(2), "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error", str(OUT / "hevc-10bit.mp4"))
case("hevc-10bit.mp4", "HEVC 10-bit", "ok")
ffmpeg("-i", str(OUT / "base.mp4"), "-c", "copy", "-metadata:s:v", "rotate=90", str(OUT / "rotated-90.mp4"))
case("rotated-90.mp4", "rotation metadata (90°)", "ok")
ffmpeg(*video(3), "-vf", "setpts='if(lt(N,25),N,25+(N-25)*3)/TB/25'", *X264, "-fps_mode", "vfr", str(OUT / "vfr.mp4"))
case("vfr.mp4", "variable frame rate (25 fps, then about 8)", "ok")
ffmpeg(*video(2), *X264, "-flags", "+ilme+ildct", "-x264-params", "tff=1", str(OUT / "interlaced.mp4"))
case("interlaced.mp4", "interlaced (TFF) H.264", "ok")

# --- Stream layouts.
ffmpeg(*video(2), "-f", "lavfi", "-i", "testsrc=s=160x120:r=25:d=2", *tone(2), "-map", "0", "-map", "1", "-map", "2",
       *X264, *AAC, str(OUT / "two-video-streams.mkv"))
case("two-video-streams.mkv", "two video streams (the first is transcoded)", "ok")
ffmpeg(*tone(2), "-i", str(OUT / "image.jpg"), "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "mjpeg",
       "-disposition:v", "attached_pic", str(OUT / "cover-art.mp3"))
case("cover-art.mp3", "MP3 with cover art (a picture, not a video)", "refused")
ffmpeg(*video(2), *tone(2), "-i", str(OUT / "image.png"), "-map", "0", "-map", "1", "-map", "2", *X264, *AAC,
       "-c:v:1", "png", "-disposition:v:1", "attached_pic", str(OUT / "video-with-cover.mkv"))
case("video-with-cover.mkv", "a video with cover art attached", "ok")
ffmpeg(*video(2), *tone(2), *X264, *AAC, "-timecode", "01:00:00:00", str(OUT / "timecode-track.mov"))
case("timecode-track.mov", "QuickTime with a timecode data track", "ok")
ffmpeg(*video(2), *tone(2, layout="7.1"), *X264, *AAC, str(OUT / "audio-7.1.mp4"))
case("audio-7.1.mp4", "7.1 audio", "ok")
ffmpeg(*video(2), *tone(2, rate=8000, layout="mono"), *X264, *AAC, str(OUT / "audio-8khz-mono.mp4"))
case("audio-8khz-mono.mp4", "8 kHz mono audio", "ok")
ffmpeg(*video(4), "-f", "lavfi", "-i", "sine=f=440:d=2", "-af", "adelay=1500", *X264, *AAC, str(OUT / "audio-starts-late.mp4"))
case("audio-starts-late.mp4", "audio starting 1.5 s after the video", "ok")
ffmpeg(*video(1), *tone(3), *X264, *AAC, str(OUT / "audio-longer.mp4"))
case("audio-longer.mp4", "audio 2 s longer than the video", "ok")

# --- Other codecs and containers.
ffmpeg(*video(2), *tone(2), "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpegts", str(OUT / "mpeg2.ts"))
case("mpeg2.ts", "MPEG-2 video and MP2 audio in MPEG-TS", "ok")
ffmpeg(*video(2), "-c:v", "mjpeg", "-q:v", "5", str(OUT / "mjpeg.avi"))
case("mjpeg.avi", "Motion JPEG in AVI", "ok")
ffmpeg(*video(2), "-c:v", "prores_ks", "-profile:v", "0", str(OUT / "prores.mov"))
case("prores.mov", "ProRes 422 Proxy in QuickTime", "ok")
ffmpeg(*video(2), *tone(2), "-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libvorbis", str(OUT / "vp8-vorbis.webm"))
case("vp8-vorbis.webm", "VP8 and Vorbis in WebM (Vorbis cannot go into MP4)", "ok")
ffmpeg(*video(2), *tone(2), "-c:v", "flv", "-c:a", "libmp3lame", "-ar", "44100", str(OUT / "sorenson.flv"))
case("sorenson.flv", "Sorenson H.263 and MP3 in FLV", "ok")
ffmpeg(*video(2), *tone(2), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s16le", str(OUT / "pcm-audio.mov"))
case("pcm-audio.mov", "PCM audio in QuickTime (not allowed in MP4)", "ok")


# --- Containers that declare more than they hold, dts-only AVI, joined recordings (issue 11, items
# 5, 10, 11, 12). Self-contained: each builds its own sources.
# Item 5: every container that declares its length is held to it; a cut file is refused the same
# way whatever the container (MP4 above, Matroska and WebM here), naming what is missing.
ffmpeg(*video(4), *tone(4), *X264, "-g", "25", *AAC, "-shortest", str(OUT / "declared-4s.mkv"))
whole = (OUT / "declared-4s.mkv").read_bytes()
(OUT / "truncated-55.mkv").write_bytes(whole[: len(whole) * 55 // 100])
case("truncated-55.mkv", "Matroska cut at 55% (its Duration says 4 s, about 2 s are there)", "refused",
     error_names=["truncated-55.mkv", "truncated", "4.02 s"])
ffmpeg(*video(4), *tone(4), "-c:v", "libvpx", "-deadline", "realtime", "-g", "25", "-c:a", "libopus", "-shortest",
       str(OUT / "declared-4s.webm"))
whole = (OUT / "declared-4s.webm").read_bytes()
(OUT / "truncated-55.webm").write_bytes(whole[: len(whole) * 55 // 100])
case("truncated-55.webm", "WebM cut at 55% (its Duration says 4 s)", "refused")
# A complete Matroska file with the same layout: the rule must not refuse it.
case("declared-4s.mkv", "complete Matroska (the control of the cut ones)", "ok")
# Item 10: ffmpeg's AVI muxer writes an empty chunk for every frame a VFR source skips (here 10
# of 100); they are not frames, and nothing is missing.
ffmpeg(*video(4), "-vf", "select='not(between(n,40,49))'", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
       "-fps_mode", "passthrough", str(OUT / "avi-dropped-frames.avi"))
case("avi-dropped-frames.avi", "AVI with 10 dropped-frame (empty) entries, as ffmpeg writes them; 4 segments", "ok",
     args=["--segments", "4"])
# Item 11: H.264 with B-frames in AVI, where packets carry only a decode time.
ffmpeg(*video(4), *tone(4), "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "25", "-c:a", "libmp3lame",
       "-shortest", str(OUT / "avi-bframes.avi"))
case("avi-bframes.avi", "H.264 with B-frames in AVI (decode times only), 4 segments", "ok", args=["--segments", "4"])
# Item 12: two recordings joined with `cat`: the second's clock starts again (backwards), or far
# ahead; ffmpeg plays them as one continuous timeline.
ffmpeg(*video(3), *tone(3), *X264, "-g", "25", *AAC, "-shortest", "-f", "mpegts", str(OUT / "recording-1.ts"))
# The second recording has B-frames, the first none (its packets carry only a pts): the decode
# times FFmpeg derives for the first depend on the demuxer options, which must be ffmpeg's.
ffmpeg("-f", "lavfi", "-i", "smptebars=s=320x240:r=25:d=3", "-f", "lavfi", "-i", "sine=f=880:r=48000:d=3",
       "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-pix_fmt", "yuv420p", "-g", "25",
       *AAC, "-shortest", "-f", "mpegts", str(OUT / "recording-2.ts"))
ffmpeg("-f", "lavfi", "-i", "smptebars=s=320x240:r=25:d=2", "-f", "lavfi", "-i", "sine=f=880:r=48000:d=2", *X264, "-g", "25",
       *AAC, "-shortest", "-f", "mpegts", "-output_ts_offset", "5000", str(OUT / "recording-late.ts"))
(OUT / "joined-cat.ts").write_bytes((OUT / "recording-1.ts").read_bytes() + (OUT / "recording-2.ts").read_bytes())
case("joined-cat.ts", "two MPEG-TS recordings joined with cat (the clock jumps back 3 s), 4 segments", "ok",
     args=["--segments", "4"])
(OUT / "joined-ahead.ts").write_bytes((OUT / "recording-1.ts").read_bytes() + (OUT / "recording-late.ts").read_bytes())
case("joined-ahead.ts", "two MPEG-TS recordings joined with cat (the clock jumps 5000 s ahead), 4 segments", "ok",
     args=["--segments", "4"])
for helper in ("declared-4s.webm", "recording-1.ts", "recording-2.ts", "recording-late.ts"):
    (OUT / helper).unlink()

# --- Names.
(OUT / "name with spaces ünïcødé.mp4").write_bytes(base)
case("name with spaces ünïcødé.mp4", "spaces and non-ASCII in the file name", "ok")
(OUT / "-starts-with-dash.mp4").write_bytes(base)
case("-starts-with-dash.mp4", "a file name starting with a dash", "ok")

for helper in ("base-faststart.mp4", "base.ts", "base.mkv"):
    (OUT / helper).unlink()
(OUT / "cases.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False))
print(f"{len(cases)} cases in {OUT}")
