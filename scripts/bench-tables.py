#!/usr/bin/env python3
"""Regenerates the measured tables in docs/performance.md from `treemux bench --json` reports.

    scripts/bench-tables.py RESULTS_DIR docs/performance.md

Replaces the text between `<!-- bench-suite:begin -->` and `<!-- bench-suite:end -->`.
"""
import json
import sys
from pathlib import Path

BEGIN, END = "<!-- bench-suite:begin -->", "<!-- bench-suite:end -->"


def fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def main():
    results, document = Path(sys.argv[1]), Path(sys.argv[2])
    reports = sorted(results.glob("*.json"))
    rows, stages = [], []
    machine = None
    for path in reports:
        report = json.loads(path.read_text())
        if "baseline" not in report:
            continue
        b, t, d = report["baseline"], report["treemux"], report["treemux_detail"]
        machine = report["cores"]
        name = Path(report["input"]).name
        size = (t["bytes"] / b["bytes"] - 1) * 100 if b["bytes"] else None
        rows.append(
            f"| {name} ({report['width']}x{report['height']}, {report['source_seconds']:.0f} s) | {report['codec']} {report['preset']} "
            f"| {fmt(b['wall_s'])} | {fmt(t['wall_s'])} | **{fmt(report['ratio'], 3)}** "
            f"| {fmt(t.get('parallel_efficiency'))} / {fmt(b.get('parallel_efficiency'))} "
            f"| {fmt(b['psnr_db'], 3)} / {fmt(t['psnr_db'], 3)} | {fmt(b['ssim'], 4)} / {fmt(t['ssim'], 4)} "
            f"| {fmt(b.get('vmaf'))} / {fmt(t.get('vmaf'))} | {fmt(size)}% | {report['repeat']} |"
        )
        s = d["stages_s"]
        stages.append(
            f"| {name} {report['codec']} | {d['segments']} × {d['workers']} | {fmt(s['probe'])} | {fmt(s['plan'], 3)} "
            f"| {fmt(s['convert'])} | {fmt(s['merge'])} | {fmt(s['audio'])} | {fmt(s['remux'])} | {fmt(s['total'])} "
            f"| {fmt(d['non_encode_share'] * 100, 1)}% | {fmt(t['max_rss_mb'], 0)} / {fmt(d['max_rss_per_worker_mb'], 0)} | {'yes' if d['verify_passed'] else 'NO'} |"
        )
    if not rows:
        sys.exit(f"bench-tables: no bench reports in {results}")
    lines = [
        BEGIN,
        f"Measured by `scripts/bench-suite` on this project's {machine}-core build machine (medians; "
        "wall and CPU seconds; efficiency = single-thread encode CPU ÷ (cores × wall); "
        "size = treemux video bytes vs the baseline's).",
        "",
        "| input | encode | baseline s | treemux s | ratio | efficiency treemux / baseline | PSNR dB baseline / treemux | SSIM | VMAF | size | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "treemux's stages (median seconds; encoding, merging and audio overlap), the share of wall time "
        "outside the segment-encoding window, and peak memory (whole process / per worker, MB):",
        "",
        "| run | segments × workers | probe | plan | convert | merge | audio | remux | total | non-encode | peak MB | verify |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *stages,
    ]
    model = results / "model-1080p-h264.txt"
    if model.exists():
        lines += ["", "The worked example below, as `treemux model` printed it from the 1080p x264 measurement:", "",
                  "```text", model.read_text().rstrip(), "```"]
    lines.append(END)
    text = document.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"bench-tables: {document} has no {BEGIN} … {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    document.write_text(head + "\n".join(lines) + tail)


if __name__ == "__main__":
    main()
