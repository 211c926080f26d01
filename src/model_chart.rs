//! **Pure.** The Lambda model as a chart: wall time and dollars per job over video length (log
//! axes, one minute to ten hours), Lambda stacked by stage (time) and by service (dollars),
//! against each EC2 instance running the single-ffmpeg baseline.
//!
//! Drawn with `plotters`' SVG backend into a string (no file, no fonts: the SVG names a generic
//! `sans-serif` family and the viewer lays the text out).

use crate::model::Projection;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Chart size in SVG user units (pixels).
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 900;

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the chart needs at least two video lengths, got {0}")]
    TooFewPoints(usize),
    #[error("cannot draw the chart: {0}")]
    Draw(String),
}

fn draw_error<E: std::fmt::Debug>(error: E) -> ChartError {
    ChartError::Draw(format!("{error:?}"))
}

/// Fill colours of the stacked bands, in stacking order, and of the EC2 lines.
const BAND_COLOURS: [RGBColor; 6] = [
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xe1, 0x57, 0x59),
];
const EC2_COLOURS: [RGBColor; 4] = [
    RGBColor(0x2c, 0x7f, 0x7f),
    RGBColor(0x76, 0x4a, 0x9e),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x55, 0x55, 0x55),
];

/// One stacked band: its name and, per video length, `(video seconds, bottom, top)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    pub name: &'static str,
    pub points: Vec<(f64, f64, f64)>,
}

/// Stacks `parts` (name and value per projection) in order: each band starts where the one
/// below ends, so the top of the last band is the parts' sum.
fn stack(
    sweep: &[Projection],
    names: &[&'static str],
    parts: impl Fn(&Projection) -> Vec<f64>,
) -> Vec<Band> {
    let mut bands: Vec<Band> = names
        .iter()
        .map(|&name| Band {
            name,
            points: Vec::with_capacity(sweep.len()),
        })
        .collect();
    for projection in sweep {
        let mut bottom = 0.0;
        for (band, value) in bands.iter_mut().zip(parts(projection)) {
            let top = bottom + value.max(0.0);
            band.points
                .push((projection.inputs.video_seconds, bottom, top));
            bottom = top;
        }
    }
    bands
}

/// Lambda's wall time stacked by stage on the critical path (the top is the wall time).
pub fn time_bands(sweep: &[Projection]) -> Vec<Band> {
    let names: Vec<&'static str> = sweep.first().map_or_else(Vec::new, |p| {
        p.lambda.critical_path().iter().map(|(n, _)| *n).collect()
    });
    stack(sweep, &names, |p| {
        p.lambda.critical_path().iter().map(|(_, s)| *s).collect()
    })
}

/// Lambda's dollars per job stacked by service (the top is the job's cost).
pub fn dollar_bands(sweep: &[Projection]) -> Vec<Band> {
    stack(
        sweep,
        &[
            "compute (GB-s and requests)",
            "Step Functions",
            "EFS",
            "S3 requests",
        ],
        |p| {
            vec![
                p.lambda.lambda_dollars,
                p.lambda.step_functions_dollars,
                p.lambda.efs_dollars,
                p.lambda.s3_request_dollars,
            ]
        },
    )
}

/// The decade at or below `value` (a log axis starts there).
fn decade_below(value: f64) -> f64 {
    10f64.powf(value.max(1e-9).log10().floor())
}

fn decade_above(value: f64) -> f64 {
    10f64.powf(value.max(1e-9).log10().ceil())
}

/// Where the video-length axis is labelled (seconds).
const LENGTH_TICKS: [f64; 4] = [60.0, 600.0, 3600.0, 36_000.0];

/// "1 min", "10 min", "1 h", … for the video-length axis.
fn length_label(seconds: f64) -> String {
    if seconds < 3600.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.0} h", seconds / 3600.0)
    }
}

/// Draws one panel: the stacked Lambda bands, the Lambda total as a line, a line per EC2
/// instance (`ec2` gives each projection's values in instance order).
fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    y_label: &str,
    bands: &[Band],
    ec2_names: &[String],
    ec2: impl Fn(&Projection) -> Vec<f64>,
    sweep: &[Projection],
) -> Result<(), ChartError> {
    let x_range = (
        sweep.first().map_or(60.0, |p| p.inputs.video_seconds),
        sweep.last().map_or(36_000.0, |p| p.inputs.video_seconds),
    );
    let tops = bands
        .last()
        .map(|band| {
            band.points
                .iter()
                .map(|&(_, _, top)| top)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let values = tops
        .iter()
        .copied()
        .chain(sweep.iter().flat_map(&ec2))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (low, high) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    // The bottom band (analyze, or Lambda compute) must be visible: start a decade below the
    // smallest total.
    let y_low = decade_below(low / 10.0);
    let y_high = decade_above(high * 1.2);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x_range.0..x_range.1).log_scale(),
            (y_low..y_high).log_scale(),
        )
        .map_err(draw_error)?;
    // The x axis is labelled at round lengths (1 min, 10 min, 1 h, 10 h) drawn below, not at
    // the powers of ten of seconds plotters would pick.
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .x_desc("video length (log scale)")
        .y_desc(y_label)
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y}")
            }
        })
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(draw_error)?;
    for (band, colour) in bands.iter().zip(BAND_COLOURS.iter().cycle()) {
        // A band drawn from its bottom edge (or the axis) to its top edge, left to right then back.
        let mut outline: Vec<(f64, f64)> = band
            .points
            .iter()
            .map(|&(x, _, top)| (x, top.max(y_low)))
            .collect();
        outline.extend(
            band.points
                .iter()
                .rev()
                .map(|&(x, bottom, _)| (x, bottom.max(y_low))),
        );
        let colour = *colour;
        chart
            .draw_series(std::iter::once(Polygon::new(
                outline,
                colour.mix(0.85).filled(),
            )))
            .map_err(draw_error)?
            .label(format!("Lambda: {}", band.name))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
    }
    chart
        .draw_series(LineSeries::new(
            sweep
                .iter()
                .zip(&tops)
                .map(|(p, &top)| (p.inputs.video_seconds, top)),
            BLACK.stroke_width(2),
        ))
        .map_err(draw_error)?;
    for (index, (name, colour)) in ec2_names.iter().zip(EC2_COLOURS.iter().cycle()).enumerate() {
        let colour = *colour;
        let points = sweep
            .iter()
            .filter_map(|p| ec2(p).get(index).map(|&v| (p.inputs.video_seconds, v)));
        chart
            .draw_series(DashedLineSeries::new(points, 7, 4, colour.stroke_width(2)))
            .map_err(draw_error)?
            .label(format!("EC2 {name} (one ffmpeg)"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2))
            });
    }
    let grey = RGBColor(0x88, 0x88, 0x88);
    for seconds in LENGTH_TICKS
        .into_iter()
        .filter(|s| (x_range.0..=x_range.1).contains(s))
    {
        chart
            .draw_series(DashedLineSeries::new(
                [(seconds, y_low), (seconds, y_high)],
                3,
                3,
                grey.stroke_width(1),
            ))
            .map_err(draw_error)?;
        // Backend coordinates, made relative to this panel.
        let (x, y) = chart.backend_coord(&(seconds, y_low));
        let (base_x, base_y) = area.get_base_pixel();
        let (x, y) = (x - base_x, y - base_y);
        area.draw(&Text::new(
            length_label(seconds),
            (x - 14, y + 6),
            ("sans-serif", 12),
        ))
        .map_err(draw_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// Renders the sweep (projections at increasing video lengths, e.g. from
/// [`crate::model::sweep`] over [`crate::model::chart_lengths`]) as an SVG document.
pub fn render_svg(sweep: &[Projection]) -> Result<String, ChartError> {
    if sweep.len() < 2 {
        return Err(ChartError::TooFewPoints(sweep.len()));
    }
    let ec2_names: Vec<String> = sweep[0].ec2.iter().map(|e| e.name.clone()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (title, body) = root.split_vertically(34);
        let inputs = &sweep[0].inputs;
        title
            .draw(&Text::new(
                format!(
                    "MODEL, not a measurement: Lambda (black line: total) against EC2 — {:.2} CPU-s per video second, {:.1} Mb/s out, {} functions, counts from {}",
                    inputs.encode_cpu_seconds_per_video_second,
                    inputs.output_bytes_per_video_second * 8.0 / 1e6,
                    inputs.concurrency,
                    sweep[0].lambda.counts_from
                ),
                (12, 10),
                ("sans-serif", 13),
            ))
            .map_err(draw_error)?;
        let (upper, lower) = body.split_vertically((HEIGHT - 34) / 2);
        panel(
            &upper,
            "Wall time per job (Lambda stacked by stage)",
            "seconds (log scale)",
            &time_bands(sweep),
            &ec2_names,
            |p| p.ec2.iter().map(|e| e.wall_seconds).collect(),
            sweep,
        )?;
        panel(
            &lower,
            "Dollars per job (Lambda stacked by service)",
            "US dollars (log scale)",
            &dollar_bands(sweep),
            &ec2_names,
            |p| p.ec2.iter().map(|e| e.dollars).collect(),
            sweep,
        )?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{chart_lengths, sweep, ModelInputs};
    use proptest::prelude::*;

    #[test]
    fn the_chart_names_every_stage_service_and_instance() {
        let inputs = ModelInputs::default();
        let projections = sweep(&inputs, &chart_lengths(12)).expect("valid defaults");
        let svg = render_svg(&projections).expect("drawn");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for (stage, _) in projections[0].lambda.critical_path() {
            assert!(svg.contains(&format!("Lambda: {stage}")), "{stage}");
        }
        for service in ["Step Functions", "EFS", "S3 requests"] {
            assert!(svg.contains(&format!("Lambda: {service}")), "{service}");
        }
        for instance in &inputs.ec2 {
            assert!(
                svg.contains(&format!("EC2 {} (one ffmpeg)", instance.name)),
                "{}",
                instance.name
            );
        }
        assert!(svg.contains("1 min") && svg.contains("10 h"), "axis ends");
        assert!(svg.contains("MODEL, not a measurement"));
        // One filled polygon per band in each panel (6 stages, 4 services) plus legend keys.
        assert!(svg.matches("<polygon").count() >= 10, "bands drawn");
        assert!(matches!(
            render_svg(&projections[..1]),
            Err(ChartError::TooFewPoints(1))
        ));
    }

    proptest! {
        #[test]
        fn bands_stack_to_the_totals(minutes in 1.0f64..600.0, concurrency in 1u32..2000) {
            let inputs = ModelInputs { concurrency, ..ModelInputs::default() };
            let lengths = [60.0, minutes * 60.0, 36_000.0];
            let projections = sweep(&inputs, &lengths).expect("valid");
            let time = time_bands(&projections);
            let dollars = dollar_bands(&projections);
            for (index, projection) in projections.iter().enumerate() {
                let top = time.last().expect("bands").points[index].2;
                prop_assert!((top - projection.lambda.wall_seconds).abs() < 1e-9 * top.max(1.0));
                let cost = dollars.last().expect("bands").points[index].2;
                prop_assert!((cost - projection.lambda.dollars).abs() < 1e-9 * cost.max(1.0));
                for bands in [&time, &dollars] {
                    for pair in bands.windows(2) {
                        // Each band starts where the one below it ends.
                        prop_assert_eq!(pair[0].points[index].2, pair[1].points[index].1);
                    }
                }
            }
        }
    }
}
