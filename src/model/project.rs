//! The formulas: a projection of the serverless run and the EC2 baselines from [`ModelInputs`].

use super::inputs::{HOURS_PER_MONTH, MIB};
use super::*;
use serde::{Deserialize, Serialize};

/// The serverless run, stage by stage (seconds), in dollars, and what it moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaProjection {
    /// Reads the source's index (ranged GETs) and writes it once to EFS.
    pub analyze_seconds: f64,
    /// Reads the audio's byte ranges once and writes them to EFS; runs beside the Map.
    pub split_audio_seconds: f64,
    pub map_start_seconds: f64,
    /// One segment's function: cold start, its byte range of the source from S3, the shared
    /// index from EFS, encode, the segment written once to EFS.
    pub segment_seconds: f64,
    /// Segments one after another on the busiest function slot.
    pub waves: u32,
    pub encode_seconds: f64,
    /// After the last segment: the merges up the tree on the critical path; each combines only
    /// its children's indexes.
    pub merge_tail_seconds: f64,
    pub tree_levels: u32,
    /// The root (merge-audio): lays the output out (the indexes and the audio read, no video)
    /// and uploads the header part; then the slowest of the upload-parts tasks, which read and
    /// upload the other parts in parallel; then the task completing the upload.
    pub merge_audio_seconds: f64,
    pub wall_seconds: f64,
    pub lambda_dollars: f64,
    pub step_functions_dollars: f64,
    pub efs_dollars: f64,
    pub s3_request_dollars: f64,
    pub dollars: f64,
    pub state_transitions: f64,
    pub s3_get_bytes: f64,
    pub s3_get_requests: f64,
    pub s3_put_bytes: f64,
    pub s3_put_requests: f64,
    /// Parts of the output's multipart upload.
    pub output_parts: f64,
    pub efs_bytes_written: f64,
    pub efs_bytes_read: f64,
    /// The segment files kept in the segment bucket between tasks: bytes (written once, read
    /// once) and requests. S3 bills the requests, not the bytes, inside a region.
    pub segment_object_bytes: f64,
    pub segment_object_requests: f64,
    /// `design` or the measurement the counts were scaled from.
    pub counts_from: String,
}

impl LambdaProjection {
    /// The wall time as consecutive stages on the critical path, summing to `wall_seconds`:
    /// analyze, Map start, encode, merge tail, the part of split-audio that outlasts the Map
    /// (usually none), merge-audio.
    pub fn critical_path(&self) -> [(&'static str, f64); 6] {
        let map = self.map_start_seconds + self.encode_seconds + self.merge_tail_seconds;
        [
            ("analyze", self.analyze_seconds),
            ("Map start", self.map_start_seconds),
            ("encode", self.encode_seconds),
            ("merge tail", self.merge_tail_seconds),
            (
                "split-audio beyond the Map",
                (self.split_audio_seconds - map).max(0.0),
            ),
            ("merge-audio (root)", self.merge_audio_seconds),
        ]
    }
}

/// The baseline on one EC2 instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ec2Projection {
    pub name: String,
    pub vcpus: f64,
    pub wall_seconds: f64,
    pub dollars: f64,
    /// The instance left running all month (dollars).
    pub always_on_monthly_dollars: f64,
}

/// Inputs and both projections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub note: String,
    pub inputs: ModelInputs,
    pub lambda: LambdaProjection,
    pub ec2: Vec<Ec2Projection>,
    /// Stages that would exceed Lambda's 900 s limit, and uploads beyond S3's multipart limits,
    /// one sentence each.
    pub warnings: Vec<String>,
    /// Serverless against the fastest EC2 instance, e.g. `Lambda: 1.2× faster than c7i.16xlarge
    /// at 12.8× the cost per job`.
    pub verdict: String,
    /// Jobs per month below which the stack (fixed cost + per-job cost) is cheaper than keeping
    /// the fastest instance running all month; `None` when a job costs more on Lambda than a
    /// month of the instance.
    pub break_even_jobs_per_month: Option<f64>,
}

fn check(inputs: &ModelInputs) -> Result<(), ModelError> {
    let positive = [
        ("video_seconds", inputs.video_seconds),
        (
            "encode_cpu_seconds_per_video_second",
            inputs.encode_cpu_seconds_per_video_second,
        ),
        ("function_vcpus", inputs.function_vcpus),
        (
            "function_thread_efficiency",
            inputs.function_thread_efficiency,
        ),
        (
            "map_child_starts_per_second",
            inputs.map_child_starts_per_second,
        ),
        ("s3_bytes_per_second", inputs.s3_bytes_per_second),
        (
            "efs_client_bytes_per_second",
            inputs.efs_client_bytes_per_second,
        ),
        ("s3_get_bytes_per_request", inputs.s3_get_bytes_per_request),
        ("s3_put_bytes_per_request", inputs.s3_put_bytes_per_request),
        ("convert_memory_mb", inputs.convert_memory_mb),
        ("task_memory_mb", inputs.task_memory_mb),
        ("baseline_efficiency", inputs.baseline_efficiency),
        (
            "baseline_max_useful_threads",
            inputs.baseline_max_useful_threads,
        ),
    ];
    for (name, value) in positive {
        if !(value.is_finite() && value > 0.0) {
            return Err(ModelError(format!("{name} must be positive, not {value}")));
        }
    }
    let non_negative = [
        (
            "source_bytes_per_video_second",
            inputs.source_bytes_per_video_second,
        ),
        (
            "output_bytes_per_video_second",
            inputs.output_bytes_per_video_second,
        ),
        (
            "index_bytes_per_video_second",
            inputs.index_bytes_per_video_second,
        ),
        ("saved_index_ratio", inputs.saved_index_ratio),
        (
            "audio_bytes_per_video_second",
            inputs.audio_bytes_per_video_second,
        ),
        ("cold_start_seconds", inputs.cold_start_seconds),
        (
            "layout_cpu_seconds_per_video_second",
            inputs.layout_cpu_seconds_per_video_second,
        ),
        ("transition_seconds", inputs.transition_seconds),
        ("s3_first_byte_seconds", inputs.s3_first_byte_seconds),
        ("lambda_per_gb_second", inputs.lambda_per_gb_second),
        ("lambda_per_request", inputs.lambda_per_request),
        ("transition_price", inputs.transition_price),
        ("efs_read_per_gb", inputs.efs_read_per_gb),
        ("efs_write_per_gb", inputs.efs_write_per_gb),
        ("s3_get_price", inputs.s3_get_price),
        ("s3_put_price", inputs.s3_put_price),
    ];
    for (name, value) in non_negative {
        if !(value.is_finite() && value >= 0.0) {
            return Err(ModelError(format!(
                "{name} must be zero or more, not {value}"
            )));
        }
    }
    if inputs.segments == 0 || inputs.concurrency == 0 || inputs.upload_streams == 0 {
        return Err(ModelError(
            "segments, concurrency and upload_streams must be at least 1".into(),
        ));
    }
    if inputs.function_thread_efficiency > 1.0 || inputs.baseline_efficiency > 1.0 {
        return Err(ModelError("efficiencies are at most 1".into()));
    }
    if let Some(measured) = &inputs.measured_data_path {
        let values = [
            ("source_read_ratio", measured.source_read_ratio),
            ("scratch_write_ratio", measured.scratch_write_ratio),
            ("scratch_read_ratio", measured.scratch_read_ratio),
            ("output_upload_ratio", measured.output_upload_ratio),
            ("get_bytes_per_request", measured.get_bytes_per_request),
            ("put_bytes_per_request", measured.put_bytes_per_request),
            ("segment_write_ratio", measured.segment_write_ratio),
            ("segment_read_ratio", measured.segment_read_ratio),
            (
                "segment_puts_per_segment",
                measured.segment_puts_per_segment,
            ),
            (
                "segment_gets_per_segment",
                measured.segment_gets_per_segment,
            ),
            (
                "transitions_per_segment",
                measured.transitions_per_segment.unwrap_or(1.0),
            ),
        ];
        for (name, value) in values {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ModelError(format!(
                    "measured_data_path.{name} must be zero or more, not {value}"
                )));
            }
        }
        if measured.get_bytes_per_request <= 0.0 || measured.put_bytes_per_request <= 0.0 {
            return Err(ModelError(
                "measured_data_path bytes per request must be positive".into(),
            ));
        }
    }
    Ok(())
}

/// Bytes a job moves and the requests it makes.
struct DataMovement {
    s3_get_bytes: f64,
    s3_get_requests: f64,
    s3_put_bytes: f64,
    s3_put_requests: f64,
    efs_written: f64,
    efs_read: f64,
    /// The segment files kept as objects in the segment bucket: bytes written (and read, once
    /// each, by the part writers) and the requests (PUTs, and GETs with the first segment's
    /// by the layout pass; the deletes at the job's end, two per thousand, counted as PUTs).
    segment_object_bytes: f64,
    segment_object_puts: f64,
    segment_object_gets: f64,
    /// What the root's part writers read (the segments from the segment bucket, the audio
    /// from EFS) and upload.
    root_read: f64,
    root_upload: f64,
    /// What one segment reads from S3 and writes (its file, to the segment bucket).
    segment_get: f64,
    segment_write: f64,
    transitions: f64,
    put_bytes_per_request: f64,
}

/// The design's own counts, or a measurement's ratios scaled to this video.
fn data_movement(inputs: &ModelInputs, tree_levels: u32) -> DataMovement {
    let n = f64::from(inputs.segments);
    let levels = f64::from(tree_levels);
    let v = inputs.video_seconds;
    let (source, output) = (
        inputs.source_bytes_per_video_second * v,
        inputs.output_bytes_per_video_second * v,
    );
    let (index, audio) = (
        inputs.index_bytes_per_video_second * v,
        inputs.audio_bytes_per_video_second * v,
    );
    // The definition's transitions: three per Map child (convert, choice, end) and ten for the
    // job around them. Merges add none: the task that completes a pair merges it, and the pairs
    // above, inside its own invocation (a merge-video task only past its time budget).
    let definition_transitions = 3.0 * n + 10.0;
    match &inputs.measured_data_path {
        None => {
            // Analyze reads the index, the segment workers their byte ranges (the whole source
            // once between them), split-audio the audio's ranges.
            let s3_get_bytes = index + source + audio;
            let per_request = inputs.s3_get_bytes_per_request;
            let s3_get_requests = (index / per_request).ceil()
                + n * (source / n / per_request).ceil()
                + (audio / per_request).ceil();
            let s3_put_bytes = output;
            let parts = (output / inputs.s3_put_bytes_per_request).ceil().max(1.0);
            DataMovement {
                s3_get_bytes,
                s3_get_requests,
                s3_put_bytes,
                // The parts, plus creating and completing the upload.
                s3_put_requests: parts + 2.0,
                // No video: the audio three times (the segments' pieces, joined once, the
                // root's per-track copies), the shared index (stored compressed), and each
                // tree level's combined indexes (the whole index once per level).
                efs_written: 3.0 * audio + index * (inputs.saved_index_ratio + levels),
                // The audio three times (joined from the pieces, laid out, read by the part
                // writers); every worker opens the shared (compressed) index; each level's
                // merges read their children's indexes, the root the whole.
                efs_read: 3.0 * audio + index * (n * inputs.saved_index_ratio + levels + 1.0),
                segment_object_bytes: (output - audio).max(0.0),
                segment_object_puts: n + 2.0 * (n / 1000.0).ceil(),
                segment_object_gets: n + 1.0,
                root_read: output + index,
                root_upload: output,
                segment_get: source / n,
                segment_write: (output - audio).max(0.0) / n,
                transitions: definition_transitions,
                put_bytes_per_request: inputs.s3_put_bytes_per_request,
            }
        }
        Some(measured) => {
            let s3_get_bytes = measured.source_read_ratio * source;
            let s3_put_bytes = measured.output_upload_ratio * output;
            let efs_written = measured.scratch_write_ratio * output;
            let efs_read = measured.scratch_read_ratio * output;
            DataMovement {
                s3_get_bytes,
                s3_get_requests: (s3_get_bytes / measured.get_bytes_per_request)
                    .ceil()
                    .max(n),
                s3_put_bytes,
                s3_put_requests: (s3_put_bytes / measured.put_bytes_per_request)
                    .ceil()
                    .max(1.0),
                efs_written,
                efs_read,
                segment_object_bytes: measured.segment_write_ratio * output,
                segment_object_puts: measured.segment_puts_per_segment * n,
                segment_object_gets: measured.segment_gets_per_segment * n,
                // Conservative: every byte read from scratch or the segment bucket is read by
                // the root, every byte written is written by the segments.
                root_read: efs_read + measured.segment_read_ratio * output,
                root_upload: s3_put_bytes,
                segment_get: s3_get_bytes / n,
                segment_write: (efs_written + measured.segment_write_ratio * output) / n,
                transitions: measured
                    .transitions_per_segment
                    .map_or(definition_transitions, |per_segment| per_segment * n),
                put_bytes_per_request: measured.put_bytes_per_request,
            }
        }
    }
}

/// Projects a serverless run and the EC2 baselines. See docs/performance.md for the formulas.
pub fn project(inputs: &ModelInputs) -> Result<Projection, ModelError> {
    check(inputs)?;
    let n = f64::from(inputs.segments);
    let source_bytes = inputs.source_bytes_per_video_second * inputs.video_seconds;
    let output_bytes = inputs.output_bytes_per_video_second * inputs.video_seconds;
    let index_bytes = inputs.index_bytes_per_video_second * inputs.video_seconds;
    let audio_bytes = inputs.audio_bytes_per_video_second * inputs.video_seconds;
    let (s3, efs) = (
        inputs.s3_bytes_per_second,
        inputs.efs_client_bytes_per_second,
    );
    let (cold, first_byte, transition) = (
        inputs.cold_start_seconds,
        inputs.s3_first_byte_seconds,
        inputs.transition_seconds,
    );
    let tree_levels = inputs.segments.next_power_of_two().trailing_zeros();
    let moved = data_movement(inputs, tree_levels);

    // Function durations (billed), then the transitions around them (not billed).
    let saved_index_bytes = index_bytes * inputs.saved_index_ratio;
    let analyze_billed = cold + first_byte + index_bytes / s3 + saved_index_bytes / efs;
    let split_audio_billed = cold + first_byte + audio_bytes / s3 + audio_bytes / efs;
    let encode_cpu = inputs.encode_cpu_seconds_per_video_second * inputs.video_seconds / n;
    let segment_billed = cold
        + first_byte
        + moved.segment_get / s3
        + saved_index_bytes / efs
        + encode_cpu / (inputs.function_vcpus * inputs.function_thread_efficiency)
        + moved.segment_write / efs.min(s3);
    // A merge at level l reads its children's indexes (together the index of 2^l segments) and
    // writes their combination, inside the segment task that completed the pair: no cold start.
    let merge_billed = |level: u32| {
        let combined = (index_bytes * f64::from(1u32 << level) / n).min(index_bytes);
        2.0 * combined / efs
    };
    // Where the output's bytes go up: from the root, or from the nodes at `part_level`, each
    // reading its leaves from EFS and uploading them as one part.
    let part_level = inputs.upload_by_subtrees.then(|| {
        let leaves_per_part =
            (moved.put_bytes_per_request * n / moved.root_upload.max(1.0)).max(1.0);
        (leaves_per_part.log2().ceil() as u32).min(tree_levels)
    });
    let part_upload_billed = |level: u32| {
        let share = f64::from(1u32 << level) / n;
        cold + (moved.root_read * share).min(moved.root_read) / efs.min(s3) + first_byte
    };
    // The root lays the output out: it reads the indexes and the audio (copying the audio per
    // track) but no video, and uploads the header part. Then up to 40 upload-parts tasks each
    // read their share of the scratch bytes and upload it (pipelined: the slower of the two sets
    // the pace), and a last task completes the upload. (The nodes at `part_level` upload their
    // own leaves instead, when modelled so.)
    let by_parts = part_level.is_none();
    let upload_tasks = if by_parts {
        ((moved.root_upload / moved.put_bytes_per_request).ceil() - 1.0).clamp(1.0, 40.0)
    } else {
        0.0
    };
    // Each task's share of what is read and uploaded: a 40th, or one part's worth when there
    // are fewer parts (nondecreasing in the bytes either way).
    let part = moved.put_bytes_per_request;
    let share = |bytes: f64| (bytes / 40.0).max(bytes.min(part));
    let group_stream = |read: f64, upload: f64| {
        (read / efs.min(s3)).max(upload / (f64::from(inputs.upload_streams) * s3))
    };
    let group_billed = if by_parts {
        cold + first_byte + group_stream(share(moved.root_read), share(moved.root_upload))
    } else {
        0.0
    };
    // All the tasks together: each starts once, the bytes stream once.
    let groups_billed = if by_parts {
        upload_tasks * (cold + first_byte) + group_stream(moved.root_read, moved.root_upload)
    } else {
        0.0
    };
    // The layout pass (a stand-in mux of every sample) runs on one thread.
    let layout_cpu = inputs.layout_cpu_seconds_per_video_second * inputs.video_seconds;
    let root_billed = if by_parts {
        cold + (index_bytes + 2.0 * audio_bytes) / efs + index_bytes / s3 + first_byte + layout_cpu
    } else {
        cold + index_bytes / s3 + first_byte
    };
    let complete_billed = if by_parts { cold + first_byte } else { 0.0 };

    let analyze_seconds = analyze_billed + 2.0 * transition;
    let split_audio_seconds = split_audio_billed + 2.0 * transition;
    let map_start_seconds =
        f64::from(inputs.concurrency.min(inputs.segments)) / inputs.map_child_starts_per_second;
    let segment_seconds = segment_billed + 2.0 * transition;
    let waves = inputs.segments.div_ceil(inputs.concurrency);
    let encode_seconds = f64::from(waves) * segment_seconds;
    // Merges run as soon as both halves exist, so only the path above the last segment to finish
    // is left: one merge per level.
    let merge_tail_seconds = (1..=tree_levels).map(merge_billed).sum::<f64>()
        + part_level.map_or(0.0, |level| part_upload_billed(level) - cold);
    // merge-audio, the Choice, the Map and its task, the completing task: their transitions.
    let merge_audio_seconds = root_billed
        + group_billed
        + complete_billed
        + if by_parts { 8.0 } else { 2.0 } * transition;
    let wall_seconds = analyze_seconds
        + split_audio_seconds.max(map_start_seconds + encode_seconds + merge_tail_seconds)
        + merge_audio_seconds;

    // Cost. About n − 1 merges, 2^(L − l) of them at level l, each moving a little index.
    let gb = |mb: f64| mb / 1024.0;
    let merges_billed = (1..=tree_levels)
        .map(|level| {
            let at_level = (n / f64::from(1u32 << level)).ceil();
            at_level * merge_billed(level)
        })
        .sum::<f64>()
        + part_level.map_or(0.0, |level| {
            (n / f64::from(1u32 << level)).ceil() * (part_upload_billed(level) - cold)
        });
    // The merges run inside split-and-convert invocations, at their memory.
    let lambda_dollars = inputs.lambda_per_gb_second
        * ((n * segment_billed + merges_billed) * gb(inputs.convert_memory_mb)
            + (analyze_billed
                + split_audio_billed
                + root_billed
                + groups_billed
                + complete_billed)
                * gb(inputs.task_memory_mb))
        + inputs.lambda_per_request * (n + 5.0 + upload_tasks);
    let step_functions_dollars = moved.transitions * inputs.transition_price;
    let efs_dollars = moved.efs_written / 1e9 * inputs.efs_write_per_gb
        + moved.efs_read / 1e9 * inputs.efs_read_per_gb;
    let s3_request_dollars = (moved.s3_get_requests + moved.segment_object_gets)
        * inputs.s3_get_price
        + (moved.s3_put_requests + moved.segment_object_puts) * inputs.s3_put_price;
    let output_parts = part_level.map_or_else(
        || {
            (moved.root_upload / moved.put_bytes_per_request)
                .ceil()
                .max(1.0)
        },
        |level| (n / f64::from(1u32 << level)).ceil(),
    );

    let ec2 = inputs
        .ec2
        .iter()
        .map(|instance| {
            let useful = instance.vcpus.min(inputs.baseline_max_useful_threads);
            let wall_seconds = source_bytes / s3
                + inputs.encode_cpu_seconds_per_video_second * inputs.video_seconds
                    / (useful * inputs.baseline_efficiency)
                + output_bytes / s3;
            Ec2Projection {
                name: instance.name.clone(),
                vcpus: instance.vcpus,
                wall_seconds,
                // Per-second billing with a one-minute minimum.
                dollars: instance.dollars_per_hour * wall_seconds.max(60.0) / 3600.0,
                always_on_monthly_dollars: instance.dollars_per_hour * HOURS_PER_MONTH,
            }
        })
        .collect::<Vec<Ec2Projection>>();

    let dollars = lambda_dollars + step_functions_dollars + efs_dollars + s3_request_dollars;
    let mut warnings: Vec<String> = [
        ("analyze", analyze_billed),
        ("split-audio", split_audio_billed),
        ("one split-and-convert", segment_billed),
        ("merge-audio (the root's layout)", root_billed),
        ("one upload-parts task", group_billed),
    ]
    .into_iter()
    .filter(|(_, seconds)| *seconds > LAMBDA_TIMEOUT_SECONDS)
    .map(|(stage, seconds)| {
        format!(
            "{stage} would take {seconds:.0} s, beyond Lambda's {LAMBDA_TIMEOUT_SECONDS:.0} s limit: the job would fail"
        )
    })
    .collect();
    if output_parts > MAX_UPLOAD_PARTS {
        warnings.push(format!(
            "the output's upload would need {output_parts:.0} parts of {:.0} MiB, beyond S3's {MAX_UPLOAD_PARTS:.0}: larger parts are needed",
            moved.put_bytes_per_request / MIB
        ));
    }
    if moved.put_bytes_per_request > MAX_PART_BYTES {
        warnings.push(format!(
            "parts of {:.1} GiB are beyond S3's 5 GiB per part",
            moved.put_bytes_per_request / (1024.0 * MIB)
        ));
    }
    let fastest = ec2
        .iter()
        .min_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds));
    let verdict = fastest.map_or_else(
        || "Lambda: no EC2 instance to compare with".to_owned(),
        |instance| {
            let speed = instance.wall_seconds / wall_seconds;
            let cost = dollars / instance.dollars;
            let speed_words = if speed >= 1.0 {
                format!("{speed:.1}× faster than")
            } else {
                format!("{:.1}× slower than", 1.0 / speed)
            };
            let cost_words = if cost >= 1.0 {
                format!("{cost:.1}× the cost per job")
            } else {
                format!("{:.0}% of the cost per job", cost * 100.0)
            };
            format!("Lambda: {speed_words} {} at {cost_words}", instance.name)
        },
    );
    let break_even_jobs_per_month = fastest
        .map(|instance| {
            (instance.always_on_monthly_dollars - inputs.fixed_monthly_dollars) / dollars
        })
        .filter(|jobs| *jobs >= 1.0);

    Ok(Projection {
        note: "MODEL, not a measurement: projected from the inputs shown".to_owned(),
        warnings,
        verdict,
        break_even_jobs_per_month,
        inputs: inputs.clone(),
        lambda: LambdaProjection {
            analyze_seconds,
            split_audio_seconds,
            map_start_seconds,
            segment_seconds,
            waves,
            encode_seconds,
            merge_tail_seconds,
            tree_levels,
            merge_audio_seconds,
            wall_seconds,
            lambda_dollars,
            step_functions_dollars,
            efs_dollars,
            s3_request_dollars,
            dollars,
            state_transitions: moved.transitions,
            s3_get_bytes: moved.s3_get_bytes,
            s3_get_requests: moved.s3_get_requests,
            s3_put_bytes: moved.s3_put_bytes,
            s3_put_requests: moved.s3_put_requests,
            output_parts,
            efs_bytes_written: moved.efs_written,
            efs_bytes_read: moved.efs_read,
            segment_object_bytes: moved.segment_object_bytes,
            segment_object_requests: moved.segment_object_puts + moved.segment_object_gets,
            counts_from: inputs
                .measured_data_path
                .as_ref()
                .map_or_else(|| "design".to_owned(), |m| m.source.clone()),
        },
        ec2,
    })
}

/// Video lengths from one minute to ten hours, evenly spaced on a log axis (`points` ≥ 2 of
/// them, both ends included), for [`sweep`].
pub fn chart_lengths(points: usize) -> Vec<f64> {
    let points = points.max(2);
    let (low, high) = (60f64.ln(), 36_000f64.ln());
    (0..points)
        .map(|i| match i {
            // Exact ends: exp(ln 60) is a hair under 60, which the planner would floor.
            0 => 60.0,
            i if i == points - 1 => 36_000.0,
            i => (low + (high - low) * i as f64 / (points - 1) as f64).exp(),
        })
        .collect()
}

/// The projection at each of `lengths` (seconds of video), everything else as in `inputs`,
/// with the segments the deployed plan makes of each length.
pub fn sweep(inputs: &ModelInputs, lengths: &[f64]) -> Result<Vec<Projection>, ModelError> {
    lengths
        .iter()
        .map(|&video_seconds| {
            project(&ModelInputs {
                video_seconds,
                segments: planned_segments(
                    video_seconds,
                    inputs.min_segment_seconds,
                    inputs.max_segments,
                ),
                ..inputs.clone()
            })
        })
        .collect()
}
