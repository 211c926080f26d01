//! The model's unit and property tests.

use super::*;
use proptest::prelude::*;

/// The fixture of a measured run (`target/bench/data-path.json`'s fields): 64 s of 720p in
/// 32 segments on the local stack.
fn measured() -> MeasuredDataPath {
    let measurement: DataPathMeasurement =
        serde_json::from_str(include_str!("../../tests/fixtures/data-path.json"))
            .expect("the fixture parses");
    measurement.scaled("data-path.json").expect("valid")
}

#[test]
fn the_default_hour_of_1080p() {
    let inputs = ModelInputs::default();
    let projection = project(&inputs).expect("valid defaults");
    let lambda = &projection.lambda;
    assert_eq!(
        projection.inputs.segments, 900,
        "one hour in segments of 4 s"
    );
    assert_eq!(lambda.tree_levels, 10);
    assert_eq!(lambda.waves, 1, "900 segments on 1000 functions");
    // 7200 CPU-s / 900 segments / (2 × 0.9) ≈ 4.4 s of encoding per segment.
    assert!((lambda.segment_seconds - 4.4).abs() < 1.0, "{lambda:?}");
    assert!(projection.warnings.is_empty(), "{:?}", projection.warnings);
    assert!(
        projection.verdict.starts_with("Lambda: ") && projection.verdict.contains("c7i.16xlarge"),
        "{}",
        projection.verdict
    );
    let jobs = projection
        .break_even_jobs_per_month
        .expect("an always-on instance costs more");
    assert!(jobs > 1.0);
    let small = &projection.ec2[0];
    assert!(
        (small.wall_seconds - 7200.0 / (2.0 * 0.9)).abs() < 200.0,
        "{small:?}"
    );
    assert!(projection.note.contains("MODEL"));
    assert_eq!(lambda.counts_from, "design");

    // Every byte moves once: the source read once (plus its index and the audio's ranges),
    // the video kept in the segment bucket once and read from it once, only the audio and the
    // small indexes on EFS, the output uploaded once.
    let source = inputs.source_bytes_per_video_second * inputs.video_seconds;
    let output = inputs.output_bytes_per_video_second * inputs.video_seconds;
    let index = inputs.index_bytes_per_video_second * inputs.video_seconds;
    let audio = inputs.audio_bytes_per_video_second * inputs.video_seconds;
    assert!((lambda.s3_get_bytes - (source + index + audio)).abs() < 1.0);
    // The audio three times (pieces, joined, the root's copies), the shared index stored
    // compressed (0.4 of it), each of the ten levels' indexes in full.
    assert!((lambda.efs_bytes_written - (3.0 * audio + 10.4 * index)).abs() < 1.0);
    assert!((lambda.segment_object_bytes - (output - audio)).abs() < 1.0);
    // A PUT per segment and two deletes per thousand (before the success and after scratch is
    // gone); a GET per segment and the layout's first.
    assert_eq!(lambda.segment_object_requests, 900.0 + 2.0 + 901.0);
    assert!((lambda.s3_put_bytes - output).abs() < 1.0);
    assert!(lambda.s3_get_bytes < 1.02 * source && lambda.efs_bytes_written < 0.1 * output);
    // Issue 13's target for this hour: at most 30 s and $0.45 a job.
    assert!(
        lambda.wall_seconds <= 30.0 && lambda.dollars <= 0.45,
        "{lambda:?}"
    );
    // Merges move indexes, not video, inside the task that completes each pair: no cold start
    // or transition per level, the tail under a second.
    assert!(lambda.merge_tail_seconds < 1.0, "{lambda:?}");
    assert!(lambda.merge_tail_seconds > 0.0, "{lambda:?}");
    // The root lays the output out and 40 upload-parts tasks share the 2.25 GB: at least one
    // task's share at EFS speed, far from one function streaming it all (22.5 s).
    assert!(
        lambda.merge_audio_seconds > 2.25e9 / 40.0 / 100e6,
        "{lambda:?}"
    );
    assert!(
        lambda.merge_audio_seconds < 2.25e9 / 100e6 / 4.0,
        "{lambda:?}"
    );
    assert!(
        lambda.wall_seconds < 60.0 && lambda.dollars < 1.0,
        "{lambda:?}"
    );
    assert_eq!(lambda.output_parts, (2.25e9 / (16.0 * MIB)).ceil());
}

#[test]
fn the_stages_add_up_to_the_wall_time() {
    let projection = project(&ModelInputs::default()).expect("valid");
    let sum: f64 = projection
        .lambda
        .critical_path()
        .iter()
        .map(|(_, s)| s)
        .sum();
    assert!((sum - projection.lambda.wall_seconds).abs() < 1e-9);
    let lambda = &projection.lambda;
    let services = lambda.lambda_dollars
        + lambda.step_functions_dollars
        + lambda.efs_dollars
        + lambda.s3_request_dollars;
    assert!((services - lambda.dollars).abs() < 1e-12);
}

#[test]
fn measured_counts_scale_to_the_modelled_video() {
    let inputs = ModelInputs {
        measured_data_path: Some(measured()),
        ..ModelInputs::default()
    };
    let projection = project(&inputs).expect("valid");
    let lambda = &projection.lambda;
    let source = inputs.source_bytes_per_video_second * inputs.video_seconds;
    let output = inputs.output_bytes_per_video_second * inputs.video_seconds;
    assert_eq!(lambda.counts_from, "data-path.json");
    assert!((lambda.s3_get_bytes - 1.07 * source).abs() < 1.0);
    assert!((lambda.s3_put_bytes - 1.01 * output).abs() < 1.0);
    assert!((lambda.efs_bytes_written - 1.12 * output).abs() < 1.0);
    // 16,588,800 read ÷ 15,360,000 output.
    assert!((lambda.efs_bytes_read - 1.08 * output).abs() < 1.0);
    // 170 transitions over 32 segments, for 900.
    assert!((lambda.state_transitions - 170.0 / 32.0 * 900.0).abs() < 1e-6);
    // Requests at the measured bytes per request: 21,913,600 / 104 per GET.
    let per_get = 21_913_600.0 / 104.0;
    assert_eq!(lambda.s3_get_requests, (1.07 * source / per_get).ceil());
    let per_put = 15_513_600.0 / 5.0;
    assert_eq!(lambda.s3_put_requests, (1.01 * output / per_put).ceil());

    // A run that kept its segments as objects: their bytes and requests scale the same way.
    let mut kept = measured();
    kept.segment_write_ratio = 0.99;
    kept.segment_read_ratio = 1.02;
    kept.segment_puts_per_segment = 33.0 / 32.0;
    kept.segment_gets_per_segment = 33.0 / 32.0;
    let with_kept = project(&ModelInputs {
        measured_data_path: Some(kept),
        ..ModelInputs::default()
    })
    .expect("valid");
    assert!((with_kept.lambda.segment_object_bytes - 0.99 * output).abs() < 1.0);
    assert!((with_kept.lambda.segment_object_requests - 2.0 * 33.0 / 32.0 * 900.0).abs() < 1e-6);
    assert!(with_kept.lambda.s3_request_dollars > lambda.s3_request_dollars);

    // Without the transitions counted, the definition's count stands in.
    let mut uncounted = measured();
    uncounted.transitions_per_segment = None;
    let projection = project(&ModelInputs {
        measured_data_path: Some(uncounted),
        ..ModelInputs::default()
    })
    .expect("valid");
    assert_eq!(projection.lambda.state_transitions, 3.0 * 900.0 + 10.0);
}

#[test]
fn a_broken_measurement_is_named() {
    let mut measurement: DataPathMeasurement =
        serde_json::from_str(include_str!("../../tests/fixtures/data-path.json"))
            .expect("the fixture parses");
    measurement.s3_get_requests = 0.0;
    let error = measurement.scaled("x.json").expect_err("no requests");
    assert!(error.to_string().contains("s3_get_requests"), "{error}");
    measurement.s3_get_requests = 10.0;
    measurement.scratch_write_ratio = f64::NAN;
    let error = measurement.scaled("x.json").expect_err("not a number");
    assert!(error.to_string().contains("scratch_write_ratio"), "{error}");
    let missing = serde_json::from_str::<DataPathMeasurement>(r#"{"source_bytes": 1}"#);
    assert!(missing.is_err(), "every field is required");
}

#[test]
fn uploading_a_part_per_subtree_takes_the_root_off_the_critical_path() {
    let root = project(&ModelInputs::default()).expect("valid");
    let subtrees = project(&ModelInputs {
        upload_by_subtrees: true,
        ..ModelInputs::default()
    })
    .expect("valid");
    // 2.25 GB in 900 segments: 2.5 MB each, so a 16 MiB part holds 8 leaves (level 3).
    assert_eq!(subtrees.lambda.output_parts, (900.0f64 / 8.0).ceil());
    assert!(
        subtrees.lambda.merge_audio_seconds < 1.0,
        "{:?}",
        subtrees.lambda
    );
    // Both keep the whole output off one function: neither root stage is near streaming
    // 2.25 GB alone (22.5 s at EFS speed).
    assert!(subtrees.lambda.wall_seconds < root.lambda.wall_seconds + 5.0);
    assert!(root.lambda.merge_audio_seconds < 2.25e9 / 100e6 / 4.0);
    // The same bytes move either way.
    assert_eq!(subtrees.lambda.efs_bytes_read, root.lambda.efs_bytes_read);
    assert_eq!(subtrees.lambda.s3_put_bytes, root.lambda.s3_put_bytes);
}

#[test]
fn segments_follow_the_deployed_plan() {
    assert_eq!(planned_segments(60.0, 4.0, 1024), 15);
    assert_eq!(
        planned_segments(2.0, 4.0, 1024),
        1,
        "a short clip is one segment"
    );
    assert_eq!(planned_segments(36_000.0, 4.0, 1024), 1024, "capped");
}

#[test]
fn limits_beyond_lambda_and_s3_are_named() {
    // A hundred hours: 225 GB in 16 MiB parts is more than S3's 10,000, and each of the 40
    // upload-parts tasks moves 5.6 GB, still within Lambda's limit.
    let inputs = ModelInputs {
        video_seconds: 360_000.0,
        segments: planned_segments(360_000.0, 4.0, 1024),
        ..ModelInputs::default()
    };
    let projection = project(&inputs).expect("valid");
    assert!(
        projection
            .warnings
            .iter()
            .all(|w| !w.starts_with("merge-audio") && !w.starts_with("one upload-parts")),
        "{:?}",
        projection.warnings
    );
    assert!(
        projection.warnings.iter().any(|w| w.contains("parts")),
        "{:?}",
        projection.warnings
    );
    // Ten hours fit: nothing reads or copies the whole source in one function any more.
    let ten_hours = project(&ModelInputs {
        video_seconds: 36_000.0,
        segments: 1024,
        ..ModelInputs::default()
    })
    .expect("valid");
    assert!(ten_hours.warnings.is_empty(), "{:?}", ten_hours.warnings);
}

#[test]
fn bad_inputs_are_named() {
    let inputs = ModelInputs {
        segments: 0,
        ..ModelInputs::default()
    };
    assert!(project(&inputs).is_err());
    let inputs = ModelInputs {
        efs_client_bytes_per_second: 0.0,
        ..ModelInputs::default()
    };
    let error = project(&inputs).expect_err("zero throughput");
    assert!(error.to_string().contains("efs_client_bytes_per_second"));
    let mut broken = measured();
    broken.put_bytes_per_request = 0.0;
    let error = project(&ModelInputs {
        measured_data_path: Some(broken),
        ..ModelInputs::default()
    })
    .expect_err("zero bytes per request");
    assert!(error.to_string().contains("measured_data_path"), "{error}");
}

#[test]
fn the_sweep_spans_one_minute_to_ten_hours() {
    let lengths = chart_lengths(5);
    assert_eq!(lengths.len(), 5);
    assert!((lengths[0] - 60.0).abs() < 1e-9 && (lengths[4] - 36_000.0).abs() < 1e-6);
    let projections = sweep(&ModelInputs::default(), &lengths).expect("valid");
    assert_eq!(
        projections[0].inputs.segments, 15,
        "the plan at each length"
    );
    assert!(projections
        .windows(2)
        .all(|pair| pair[0].lambda.dollars < pair[1].lambda.dollars));
}

proptest! {
    #[test]
    fn more_concurrency_is_never_slower_and_costs_stay_positive(
        segments in 1u32..2048,
        concurrency in 1u32..1000,
        extra in 1u32..1000,
        minutes in 1.0f64..600.0,
        subtrees in any::<bool>(),
        use_measured in any::<bool>(),
    ) {
        let base = ModelInputs {
            segments,
            concurrency,
            video_seconds: minutes * 60.0,
            upload_by_subtrees: subtrees,
            measured_data_path: use_measured.then(measured),
            ..ModelInputs::default()
        };
        let more = ModelInputs { concurrency: concurrency + extra, ..base.clone() };
        let (a, b) = (project(&base).expect("valid"), project(&more).expect("valid"));
        prop_assert!(b.lambda.encode_seconds <= a.lambda.encode_seconds + 1e-9);
        prop_assert!(a.lambda.dollars > 0.0 && a.lambda.wall_seconds > 0.0);
        prop_assert!(a.ec2.iter().all(|e| e.dollars > 0.0 && e.wall_seconds > 0.0));
        // Encoding cost does not depend on how many functions run at once.
        prop_assert!((a.lambda.lambda_dollars - b.lambda.lambda_dollars).abs() < 1e-6 * a.lambda.lambda_dollars.max(1.0));
        let sum: f64 = a.lambda.critical_path().iter().map(|(_, s)| s).sum();
        prop_assert!((sum - a.lambda.wall_seconds).abs() < 1e-9 * sum.max(1.0));
        prop_assert!(a.lambda.critical_path().iter().all(|(_, s)| *s >= 0.0));
        prop_assert!(a.lambda.output_parts >= 1.0);
    }

    #[test]
    fn moving_more_bytes_never_costs_less(
        minutes in 1.0f64..600.0,
        read in 1.0f64..3.0,
        write in 1.0f64..10.0,
        more in 0.01f64..2.0,
    ) {
        let mut measured = measured();
        measured.source_read_ratio = read;
        measured.scratch_write_ratio = write;
        let video_seconds = minutes * 60.0;
        let base = ModelInputs {
            video_seconds,
            segments: planned_segments(video_seconds, 4.0, 1024),
            measured_data_path: Some(measured.clone()),
            ..ModelInputs::default()
        };
        let a = project(&base).expect("valid");
        for change in [
            MeasuredDataPath { source_read_ratio: read + more, ..measured.clone() },
            MeasuredDataPath { scratch_write_ratio: write + more, ..measured.clone() },
            MeasuredDataPath { scratch_read_ratio: measured.scratch_read_ratio + more, ..measured.clone() },
            MeasuredDataPath { output_upload_ratio: measured.output_upload_ratio + more, ..measured.clone() },
        ] {
            let b = project(&ModelInputs { measured_data_path: Some(change), ..base.clone() }).expect("valid");
            prop_assert!(b.lambda.dollars >= a.lambda.dollars - 1e-12);
            prop_assert!(b.lambda.wall_seconds >= a.lambda.wall_seconds - 1e-9);
        }
    }
}
