//! **Pure.** The timeline of a local run as an SVG chart: one lane per worker, a bar per task
//! (segment encodes, merges, audio), so the eager merge tree can be seen working: merges start
//! while other segments are still encoding.

use std::fmt::Write as _;
use treemux_core::local::TaskSpan;
use treemux_core::names::{Stage, TaskKind};

/// Chart geometry, in SVG user units (pixels).
const WIDTH: f64 = 960.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const LANE: f64 = 34.0;
const BAR: f64 = 24.0;
const AXIS: f64 = 40.0;
/// The narrowest bar drawn: merges take milliseconds and would otherwise vanish.
const MIN_BAR: f64 = 3.0;
/// Height of the marker drawn above every merge and rename, so that each is visible even where
/// it overlaps the end of a segment bar.
const MARKER: f64 = 7.0;

/// Fill colour of a task kind.
fn colour(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Segment => "#4e79a7",
        TaskKind::Merge => "#f28e2b",
        TaskKind::Rename => "#bab0ac",
        TaskKind::Audio => "#59a14f",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick step (seconds) giving about 8 ticks over `total` seconds: 1, 2 or 5 × a power of ten.
fn tick_step(total: f64) -> f64 {
    let rough = (total / 8.0).max(1e-3);
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power)
}

/// The encode tail of a run: seconds from the moment the first worker runs out of segments to
/// encode (its last segment ends) until the last segment ends, while another worker is still
/// encoding. A run balanced perfectly has none; on Lambda the same spread is what every
/// finished worker waits for the slowest. `None` without segments. Merges and audio are not
/// counted as encoding: the audio is extracted beside the encodes, merges take milliseconds.
///
/// Precondition: `spans` are one run's tasks (seconds since its start, `end >= start`).
pub fn encode_idle_tail(spans: &[TaskSpan]) -> Option<f64> {
    let mut last_end_by_worker: std::collections::BTreeMap<usize, f64> = Default::default();
    for span in spans.iter().filter(|span| span.kind == TaskKind::Segment) {
        let last = last_end_by_worker.entry(span.worker).or_insert(f64::MIN);
        *last = last.max(span.end_seconds);
    }
    let first_done = last_end_by_worker.values().copied().reduce(f64::min)?;
    let last_done = last_end_by_worker.values().copied().reduce(f64::max)?;
    Some(last_done - first_done)
}

/// Renders `spans` (times in seconds since the run started) over `total_seconds` of wall time.
///
/// Every span becomes one `<rect>` with a `<title>` (kind, target, start, end), in the lane of its
/// worker; `title` heads the chart. Spans with times outside `[0, total_seconds]` are clamped.
pub fn render_svg(title: &str, spans: &[TaskSpan], total_seconds: f64) -> String {
    let total = if total_seconds.is_finite() && total_seconds > 0.0 {
        total_seconds
    } else {
        spans
            .iter()
            .map(|span| span.end_seconds)
            .fold(1e-3, f64::max)
    };
    let lanes = spans.iter().map(|span| span.worker + 1).max().unwrap_or(1);
    let height = TOP + lanes as f64 * LANE + AXIS + 62.0;
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |seconds: f64| LEFT + plot_width * (seconds.clamp(0.0, total) / total);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(
        svg,
        r##"<rect width="{WIDTH}" height="{height}" fill="white"/><text x="{LEFT}" y="22" font-size="14">{}</text>"##,
        escape(title)
    );
    for lane in 0..lanes {
        let y = TOP + lane as f64 * LANE;
        let _ = writeln!(
            svg,
            r##"<text x="8" y="{:.1}">worker {lane}</text><line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            y + LANE / 2.0 + 4.0,
            WIDTH - RIGHT,
            y + LANE,
            y + LANE
        );
    }
    // Where the last merge label on each lane ends, so that labels of merges close together do
    // not overprint each other (the marker and its tooltip stay).
    let mut label_end = vec![f64::NEG_INFINITY; lanes];
    for span in spans {
        let (start, end) = (
            x(span.start_seconds),
            x(span.end_seconds.max(span.start_seconds)),
        );
        let y = TOP + span.worker as f64 * LANE + (LANE - BAR) / 2.0;
        let label = match span.kind {
            TaskKind::Segment => format!("seg {}", span.target),
            _ => span.target.clone(),
        };
        let _ = writeln!(
            svg,
            r##"<rect class="{}" x="{start:.2}" y="{y:.1}" width="{:.2}" height="{BAR}" fill="{}" stroke="white" stroke-width="0.5"><title>{} {}: {:.3}–{:.3} s</title></rect>"##,
            span.kind,
            (end - start).max(MIN_BAR),
            colour(span.kind),
            span.kind,
            escape(&span.target),
            span.start_seconds,
            span.end_seconds
        );
        if span.kind.stage() == Stage::Merge {
            // A downward triangle over the merge and its node id, readable at any duration.
            let _ = writeln!(
                svg,
                r##"<path class="marker" d="M{:.2} {:.1} l{:.1} {MARKER} l{:.1} -{MARKER} z" fill="{}"><title>{} {}: {:.3}–{:.3} s</title></path>"##,
                start - MARKER / 2.0,
                y - MARKER,
                MARKER / 2.0,
                MARKER / 2.0,
                colour(span.kind),
                span.kind,
                escape(&span.target),
                span.start_seconds,
                span.end_seconds,
            );
            let half_width = 3.0 * span.target.chars().count() as f64;
            if start - half_width > label_end[span.worker] + 2.0 {
                label_end[span.worker] = start + half_width;
                let _ = writeln!(
                    svg,
                    r##"<text x="{start:.2}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"##,
                    y - MARKER - 1.0,
                    escape(&span.target)
                );
            }
        } else if end - start > 7.0 * label.chars().count() as f64 {
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" fill="white" font-size="10">{}</text>"##,
                start + 3.0,
                y + BAR / 2.0 + 4.0,
                escape(&label)
            );
        }
    }
    let axis_y = TOP + lanes as f64 * LANE + 8.0;
    let step = tick_step(total);
    let mut tick = 0.0;
    while tick <= total + 1e-9 {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#888"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}</text>"##,
            x(tick),
            axis_y,
            axis_y + 5.0,
            axis_y + 18.0,
            format_seconds(tick, step)
        );
        tick += step;
    }
    let legend_y = axis_y + 36.0;
    for (index, kind) in TaskKind::ALL.into_iter().enumerate() {
        let lx = LEFT + index as f64 * 110.0;
        let _ = writeln!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{legend_y:.1}">{kind}</text>"##,
            legend_y - 10.0,
            colour(kind),
            lx + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{legend_y:.1}" text-anchor="end">seconds since start</text>"##,
        WIDTH - RIGHT
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="{:.1}" font-size="11" fill="#555">Each bar is one task on one worker. segment: encode one segment. merge (▼ and the node it makes):</text><text x="{LEFT}" y="{:.1}" font-size="11" fill="#555">join two finished neighbours, as soon as both exist. rename: a node whose right side is a placeholder.</text>"##,
        legend_y + 18.0,
        legend_y + 32.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn format_seconds(seconds: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{seconds:.0}")
    } else {
        let decimals = (-step.log10()).ceil() as usize;
        format!("{seconds:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn span(kind: TaskKind, worker: usize, start: f64, end: f64) -> TaskSpan {
        TaskSpan {
            kind,
            target: format!("{kind}-{worker}"),
            worker,
            start_seconds: start,
            end_seconds: end,
        }
    }

    #[test]
    fn the_idle_tail_runs_from_the_first_worker_out_of_segments_to_the_last_segment() {
        let spans = [
            span(TaskKind::Segment, 0, 0.0, 4.0),
            span(TaskKind::Segment, 1, 0.0, 3.0),
            span(TaskKind::Segment, 1, 3.0, 5.5),
            span(TaskKind::Merge, 0, 5.5, 5.6),
            span(TaskKind::Audio, 0, 4.0, 9.0),
        ];
        // Worker 0's last segment ends at 4 s, worker 1's at 5.5 s; audio and merges are not
        // encoding.
        assert_eq!(encode_idle_tail(&spans), Some(1.5));
        assert_eq!(
            encode_idle_tail(&spans[..1]),
            Some(0.0),
            "one worker has no tail"
        );
        assert_eq!(encode_idle_tail(&spans[3..]), None);
    }

    #[test]
    fn one_bar_per_task_in_its_worker_lane() {
        let spans = [
            span(TaskKind::Segment, 0, 0.0, 4.0),
            span(TaskKind::Segment, 1, 0.0, 5.0),
            span(TaskKind::Merge, 0, 4.0, 4.5),
            span(TaskKind::Audio, 1, 5.0, 5.2),
        ];
        let svg = render_svg("run <1>", &spans, 6.0);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r##"class="segment""##).count(), 2);
        assert_eq!(svg.matches(r##"class="merge""##).count(), 1);
        assert_eq!(svg.matches(r##"class="audio""##).count(), 1);
        assert!(svg.contains("worker 1") && !svg.contains("worker 2"));
        assert!(svg.contains("run &lt;1&gt;"), "the title is escaped");
        // The merge starts where worker 0's segment ended: 4 s of 6 s across the plot.
        let merge_x = LEFT + (WIDTH - LEFT - RIGHT) * 4.0 / 6.0;
        assert!(svg.contains(&format!(r##"class="merge" x="{merge_x:.2}""##)));
        // Every merge gets a marker; a 1 ms merge is still drawn MIN_BAR wide.
        assert_eq!(svg.matches(r##"class="marker""##).count(), 1);
        let quick = render_svg("t", &[span(TaskKind::Merge, 0, 1.0, 1.001)], 600.0);
        assert!(quick.contains(&format!(r##"width="{MIN_BAR:.2}""##)));
        assert!(
            svg.contains(">seg segment-0<"),
            "wide segments are labelled"
        );
    }

    proptest! {
        #[test]
        fn bars_stay_inside_the_plot(
            raw in prop::collection::vec((0usize..4, 0.0f64..100.0, 0.0f64..100.0), 0..40),
            total in 0.1f64..120.0,
        ) {
            let spans: Vec<TaskSpan> = raw
                .iter()
                .map(|&(worker, a, b)| span(TaskKind::Segment, worker, a.min(b), a.max(b)))
                .collect();
            let svg = render_svg("t", &spans, total);
            prop_assert_eq!(svg.matches("<rect class=").count(), spans.len());
            for piece in svg.split(r##"<rect class="segment" x=""##).skip(1) {
                let x: f64 = piece.split('"').next().and_then(|x| x.parse().ok()).expect("an x coordinate");
                prop_assert!((LEFT..=WIDTH - RIGHT).contains(&x));
            }
        }
    }
}
