#!/usr/bin/env python3
"""Judges one transcoded corpus output against its source with the ffmpeg and ffprobe CLIs only.

    tests/corpus/judge.py CASE_JSON SOURCE OUTPUT STDERR_FILE

CASE_JSON is the case's entry of cases.json; STDERR_FILE holds what treemux printed. Prints one
line per property that does not hold and exits 1 when there is any (0 otherwise). Nothing here
uses treemux's own decoding: it is the outside view a user (or a hidden corpus) has.

Every output is judged on:
- frames: the number of frames `ffmpeg -fps_mode passthrough` decodes, the same as the source's
  (so frames an edit list hides count as lost);
- frame times: each frame's time from the first frame, as ffmpeg shows it, within 1.5 ms
  (Matroska stores milliseconds);
- picture: per-frame PSNR-Y of the output against the source *as displayed* (ffmpeg's
  autorotate, both read in the range they are tagged with and brought to limited range): every
  frame at least 25 dB, the mean at least 33 dB, so a range mix-up (~28 dB) or a wrong rotation
  fails;
- displayed aspect ratio within 2 %;
- audio: as many tracks, each decoding to the source track's length within 50 ms;
- streams, chapters and global tags of the source: present in the output or named in a
  `warning:` line.

A case's optional "checks" add exact expectations: "pix_fmt", "color" (ffprobe stream fields),
"size" (coded WxH), "rotation" (ffprobe's display rotation, 0 when none), "sar", "streams" (the
output's streams as `type:codec`, `:cover` for an attached picture, `:Nch` for audio), "tags",
"timecode", "chapters" (titles) and "warnings" (each a text found in exactly one warning line,
and no other warning line).
"""

import json
import re
import subprocess
import sys
from fractions import Fraction

MIN_FRAME_PSNR_DB = 25.0
MIN_MEAN_PSNR_DB = 33.0
FRAME_TIME_TOLERANCE_SECONDS = 0.0015
AUDIO_LENGTH_TOLERANCE_SECONDS = 0.05
ASPECT_TOLERANCE = 0.02
# Global tags that describe the making of a file, written by each muxer for itself.
BOOKKEEPING_TAGS = {"encoder", "encoding_tool", "major_brand", "minor_version", "compatible_brands", "duration"}

problems = []


def problem(text):
    problems.append(text)


def run(args):
    return subprocess.run(args, capture_output=True, check=False)


def ffprobe(path):
    result = run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-show_chapters",
                  "-of", "json", path])
    if result.returncode != 0:
        raise SystemExit(f"ffprobe cannot read {path}: {result.stderr.decode(errors='replace')}")
    return json.loads(result.stdout)


def is_chapter_track(stream):
    """The text track the MP4/MOV muxer writes to hold chapters (FFmpeg reads it as chapters)."""
    return stream["codec_type"] == "data" and stream.get("codec_tag_string") == "text"


def kind(stream):
    if stream["codec_type"] == "video" and stream.get("disposition", {}).get("attached_pic"):
        return "cover"
    if stream["codec_type"] == "data" and stream.get("codec_tag_string") == "tmcd":
        return "timecode"
    return stream["codec_type"]


def describe(stream):
    text = f"{stream['codec_type']}:{stream.get('codec_name', 'none')}"
    if kind(stream) == "cover":
        text += ":cover"
    if stream["codec_type"] == "audio":
        text += f":{stream.get('channels')}ch"
    return text


def main_video(info):
    for stream in info["streams"]:
        if stream["codec_type"] == "video" and kind(stream) != "cover":
            return stream
    raise SystemExit("no video stream")


def rotation(stream):
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    return 0


SHOWINFO = re.compile(r"\bn:\s*\d+\s+pts:\s*(-?\d+).*")
SIZE = re.compile(r"\bs:(\d+)x(\d+)")
SAR = re.compile(r"\bsar:(\d+)/(\d+)")
TIME_BASE = re.compile(r"config in time_base:\s*(\d+)/(\d+)")


def decoded_frames(path):
    """Frames as `ffmpeg -fps_mode passthrough` decodes and shows them (autorotated): the count,
    each frame's time in seconds, the displayed size and the sample aspect ratio."""
    result = run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", path, "-map", "0:V:0", "-vf", "showinfo",
                  "-fps_mode", "passthrough", "-f", "framecrc", "-"])
    if result.returncode != 0:
        problem(f"ffmpeg cannot decode {path}: {result.stderr.decode(errors='replace')[-300:]}")
        return 0, [], None, Fraction(1)
    count = sum(1 for line in result.stdout.decode().splitlines() if line and not line.startswith("#"))
    stderr = result.stderr.decode(errors="replace")
    time_base = TIME_BASE.search(stderr)
    time_base = Fraction(int(time_base[1]), int(time_base[2])) if time_base else Fraction(1, 1)
    times, size, sar = [], None, Fraction(1)
    for match in SHOWINFO.finditer(stderr):
        times.append(float(int(match[1]) * time_base))
        if size is None:
            found_size, found_sar = SIZE.search(match[0]), SAR.search(match[0])
            size = (int(found_size[1]), int(found_size[2]))
            if found_sar and int(found_sar[1]) and int(found_sar[2]):
                sar = Fraction(int(found_sar[1]), int(found_sar[2]))
    if len(times) != count:
        problem(f"{path}: ffmpeg showed {len(times)} frames' times of {count}")
    return count, times, size, sar


def psnr_y(source, output, source_size, output_size):
    """Per-frame PSNR-Y of output against source, frames paired by their order."""
    width, height = output_size
    if (source_size[0] & ~1, source_size[1] & ~1) == (width, height):
        fit = f"crop={width}:{height}:0:0"
    else:
        fit = f"scale={width}:{height}:flags=bicubic"
    common = "scale=out_range=tv,format=yuv420p,settb=AVTB,setpts=N"
    graph = f"[1:V:0]{fit},{common}[ref];[0:V:0]{common}[main];[main][ref]psnr=stats_file=-"
    result = run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", output, "-i", source,
                  "-lavfi", graph, "-fps_mode", "passthrough", "-f", "null", "-"])
    if result.returncode != 0:
        problem(f"ffmpeg cannot compare the pictures: {result.stderr.decode(errors='replace')[-300:]}")
        return []
    values = []
    for value in re.findall(r"psnr_y:(\S+)", result.stdout.decode()):
        values.append(100.0 if value == "inf" else min(float(value), 100.0))
    return values


def audio_seconds(path, index, sample_rate):
    result = run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, "-map", f"0:a:{index}",
                  "-ac", "1", "-c:a", "pcm_s16le", "-f", "s16le", "-"])
    if result.returncode != 0:
        problem(f"ffmpeg cannot decode audio {index + 1} of {path}")
        return 0.0
    return len(result.stdout) / 2 / sample_rate


def main():
    case = json.loads(sys.argv[1])
    source_path, output_path = sys.argv[2], sys.argv[3]
    with open(sys.argv[4], encoding="utf-8", errors="replace") as file:
        warnings = [line[len("warning: "):] for line in file.read().splitlines() if line.startswith("warning: ")]
    source, output = ffprobe(source_path), ffprobe(output_path)

    # Frames, their times, the picture as displayed, the aspect ratio.
    source_count, source_times, source_size, source_sar = decoded_frames(source_path)
    output_count, output_times, output_size, output_sar = decoded_frames(output_path)
    if source_count != output_count:
        problem(f"frames: ffmpeg decodes {source_count} from the source, {output_count} from the output")
    elif source_times and len(source_times) == len(output_times):
        worst = max(abs((a - source_times[0]) - (b - output_times[0])) for a, b in zip(source_times, output_times))
        if worst > FRAME_TIME_TOLERANCE_SECONDS:
            problem(f"frame times: a frame is {worst:.4f} s off its source frame's time")
    if source_count and output_count and not (source_size and output_size):
        problem("ffmpeg showed no frame size")
    if source_size and output_size:
        if source_count == output_count:
            values = psnr_y(source_path, output_path, source_size, output_size)
            if len(values) != output_count:
                problem(f"picture: {len(values)} frames compared of {output_count}")
            elif values:
                worst, mean = min(values), sum(values) / len(values)
                if worst < MIN_FRAME_PSNR_DB or mean < MIN_MEAN_PSNR_DB:
                    problem(f"picture: PSNR-Y against the displayed source: worst frame {worst:.2f} dB "
                            f"(at least {MIN_FRAME_PSNR_DB}), mean {mean:.2f} dB (at least {MIN_MEAN_PSNR_DB})")
        aspect = lambda size, sar: size[0] * sar / size[1]
        before, after = aspect(source_size, source_sar), aspect(output_size, output_sar)
        if abs(float(after / before) - 1) > ASPECT_TOLERANCE:
            problem(f"displayed aspect ratio: source {float(before):.4f}, output {float(after):.4f}")

    # Audio tracks and their length.
    source_audio = [s for s in source["streams"] if s["codec_type"] == "audio"]
    output_audio = [s for s in output["streams"] if s["codec_type"] == "audio"]
    if len(source_audio) != len(output_audio):
        problem(f"audio tracks: source {len(source_audio)}, output {len(output_audio)}")
    for index, (before, after) in enumerate(zip(source_audio, output_audio)):
        length_before = audio_seconds(source_path, index, int(before["sample_rate"]))
        length_after = audio_seconds(output_path, index, int(after["sample_rate"]))
        if abs(length_before - length_after) > AUDIO_LENGTH_TOLERANCE_SECONDS:
            problem(f"audio {index + 1}: decodes to {length_before:.3f} s in the source, {length_after:.3f} s in the output")
        if int(before.get("channels", 0)) != int(after.get("channels", 0)):
            problem(f"audio {index + 1}: {before.get('channels')} channels in the source, {after.get('channels')} in the output")

    # Streams, chapters and tags: kept or warned.
    stream_warnings = [w for w in warnings if w.startswith("stream #")]
    counts = lambda info: {k: sum(1 for s in info["streams"] if kind(s) == k and not is_chapter_track(s))
                           for k in {kind(s) for s in source["streams"]}}
    output_tags = {k.lower(): v for k, v in output["format"].get("tags", {}).items()}
    has_timecode = "timecode" in output_tags or any("timecode" in {k.lower() for k in s.get("tags", {})} for s in output["streams"])
    missing = 0
    for what, number in counts(source).items():
        kept = counts(output).get(what, 0)
        if what == "timecode" and has_timecode:
            kept = number
        missing += max(number - kept, 0)
    if missing > len(stream_warnings):
        problem(f"streams: {missing} source streams are missing from the output, {len(stream_warnings)} warned")
    source_chapters, output_chapters = source.get("chapters", []), output.get("chapters", [])
    if len(source_chapters) != len(output_chapters) and not any("chapter" in w for w in warnings):
        problem(f"chapters: source {len(source_chapters)}, output {len(output_chapters)}, none warned")
    for key, value in source["format"].get("tags", {}).items():
        if key.lower() in BOOKKEEPING_TAGS:
            continue
        if output_tags.get(key.lower()) != value and not any(w.startswith(f"tag {key}=") for w in warnings):
            problem(f"tag {key}={value!r}: not in the output ({output_tags.get(key.lower())!r}) and not warned")

    # The case's own expectations.
    checks = case.get("checks", {})
    video = main_video(output)
    if "pix_fmt" in checks and video.get("pix_fmt") != checks["pix_fmt"]:
        problem(f"pix_fmt: {video.get('pix_fmt')}, expected {checks['pix_fmt']}")
    for field, value in checks.get("color", {}).items():
        if video.get(field) != value:
            problem(f"{field}: {video.get(field)}, expected {value}")
    if "size" in checks and f"{video['width']}x{video['height']}" != checks["size"]:
        problem(f"size: {video['width']}x{video['height']}, expected {checks['size']}")
    if "rotation" in checks and rotation(video) != checks["rotation"] % 360:
        problem(f"rotation: {rotation(video)}°, expected {checks['rotation']}°")
    if "sar" in checks and video.get("sample_aspect_ratio") != checks["sar"]:
        problem(f"sample aspect ratio: {video.get('sample_aspect_ratio')}, expected {checks['sar']}")
    if "streams" in checks:
        described = [describe(s) for s in output["streams"] if not is_chapter_track(s)]
        if described != checks["streams"]:
            problem(f"streams: {described}, expected {checks['streams']}")
    for key, value in checks.get("tags", {}).items():
        if output_tags.get(key.lower()) != value:
            problem(f"tag {key}: {output_tags.get(key.lower())!r}, expected {value!r}")
    if "timecode" in checks:
        found = [v for s in output["streams"] for k, v in s.get("tags", {}).items() if k.lower() == "timecode"]
        if checks["timecode"] not in found:
            problem(f"timecode: {found}, expected {checks['timecode']}")
    if "chapters" in checks:
        titles = [c.get("tags", {}).get("title") for c in output_chapters]
        if titles != checks["chapters"]:
            problem(f"chapters: {titles}, expected {checks['chapters']}")
    if "warnings" in checks:
        unmatched = list(warnings)
        for expected in checks["warnings"]:
            hits = [w for w in unmatched if expected in w]
            if len(hits) != 1:
                problem(f"warnings: {len(hits)} lines say {expected!r}, expected one")
            for hit in hits[:1]:
                unmatched.remove(hit)
        for extra in unmatched:
            problem(f"warnings: unexpected warning {extra!r}")

    for line in problems:
        print(line)
    sys.exit(1 if problems else 0)


main()
