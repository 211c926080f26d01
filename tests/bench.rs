//! `treemux bench` and `treemux model` from the command line. Only what they report is checked
//! here, never how fast anything was: timings belong in benchmarks, not tests.

mod common;

use common::*;

#[test]
fn bench_reports_both_sides_and_draws_the_timeline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("pattern.mp4");
    pattern_clip(&source, 8, 25);
    let chart = dir.path().join("timeline.svg");
    let tree = dir.path().join("tree.svg");
    let result = run(&[
        "bench",
        path(&source),
        "--preset",
        "ultrafast",
        "--segments-hint-ignored",
    ]);
    assert!(!result.status.success(), "unknown options are refused");

    let result = run(&[
        "bench",
        path(&source),
        "--preset",
        "ultrafast",
        "--repeat",
        "2",
        "--workers",
        "2",
        "--timeline",
        path(&chart),
        "--tree",
        path(&tree),
        "--temp-dir",
        path(dir.path()),
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let report = json(&result);
    for side in ["baseline", "treemux"] {
        let wall = report[side]["wall_s"].as_f64().expect("wall_s");
        assert!(wall > 0.0, "{side} wall {wall}");
        assert_eq!(report[side]["runs"].as_array().map(Vec::len), Some(2));
        assert_eq!(report[side]["frames"], 200, "{side} frames");
        assert!(report[side]["bytes"].as_u64() > Some(1000), "{side} bytes");
        assert!(report[side]["psnr_db"].as_f64() > Some(30.0), "{side} PSNR");
        assert!(report[side]["cpu_s"].as_f64() > Some(0.0), "{side} CPU");
    }
    let ratio = report["ratio"].as_f64().expect("ratio");
    let expected = report["treemux"]["wall_s"].as_f64().expect("wall")
        / report["baseline"]["wall_s"].as_f64().expect("wall");
    assert!((ratio - expected).abs() < 1e-9);
    assert!(report["parallel_efficiency"].as_f64() > Some(0.0));
    let detail = &report["treemux_detail"];
    assert_eq!(detail["verify_passed"], true);
    let share = detail["non_encode_share"].as_f64().expect("share");
    assert!((0.0..1.0).contains(&share), "{share}");
    let spans = detail["timeline"].as_array().expect("timeline").len();
    assert!(spans >= 2, "segments and merges appear in the timeline");
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert_eq!(svg.matches("<rect class=").count(), spans);
    let tree = std::fs::read_to_string(&tree).expect("merge tree written");
    assert!(tree.contains("seg 0") && tree.contains("root"), "{tree}");
    assert!(
        entries(dir.path())
            .iter()
            .all(|name| !name.starts_with("treemux-bench-")),
        "bench removes its outputs: {:?}",
        entries(dir.path())
    );

    // The model takes the measured costs from the report.
    let bench_json = dir.path().join("bench.json");
    std::fs::write(&bench_json, &result.stdout).expect("write");
    let result = run(&[
        "model",
        "--from-bench",
        path(&bench_json),
        "--video-seconds",
        "3600",
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let projection = json(&result);
    assert!(projection["note"]
        .as_str()
        .is_some_and(|n| n.contains("MODEL")));
    let single = report["single_thread_cpu_s"].as_f64().expect("reference");
    let per_second = projection["inputs"]["encode_cpu_seconds_per_video_second"]
        .as_f64()
        .expect("cost");
    assert!(
        (per_second - single / 8.0).abs() < 0.05 * per_second,
        "{per_second} vs {single}/8 s"
    );
    assert!(projection["lambda"]["wall_seconds"].as_f64() > Some(0.0));
    assert!(projection["lambda"]["dollars"].as_f64() > Some(0.0));
    assert!(projection["ec2"].as_array().is_some_and(|e| !e.is_empty()));
}

#[test]
fn model_inputs_are_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let result = run(&["model"]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(String::from_utf8_lossy(&result.stdout).contains("MODEL, not a measurement"));

    let inputs = dir.path().join("inputs.json");
    std::fs::write(&inputs, r#"{"segmentz": 4}"#).expect("write");
    let result = run(&["model", "--inputs", path(&inputs)]);
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(
        message.contains("inputs.json") && message.contains("segmentz"),
        "{message}"
    );

    std::fs::write(&inputs, r#"{"efs_client_bytes_per_second": 0}"#).expect("write");
    let result = run(&["model", "--inputs", path(&inputs)]);
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains("efs_client_bytes_per_second"),
        "{}",
        stderr(&result)
    );

    let result = run(&["model", "--from-bench", path(&inputs)]);
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains("inputs.json"),
        "{}",
        stderr(&result)
    );
}

#[test]
fn bench_on_a_bad_input_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video").expect("write");
    let result = run(&["bench", path(&text), "--repeat", "1", "--no-reference"]);
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(message.contains("notes.mp4"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
}

#[test]
fn diagram_draws_a_runs_merge_tree_from_its_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("pattern.mp4");
    pattern_clip(&source, 6, 25);
    let output = dir.path().join("out.mp4");
    // Three segments: four leaves, one a placeholder, so one node is a rename.
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--preset",
        "ultrafast",
        "--segments",
        "3",
        "--workers",
        "2",
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = dir.path().join("run.json");
    std::fs::write(&summary, &result.stdout).expect("write");
    let merges = json(&result)["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|span| span["kind"] == "merge" || span["kind"] == "rename")
        .count();
    assert_eq!(merges, 3, "L1-0, the rename L1-1 and the root");

    let (tree, timeline) = (dir.path().join("tree.svg"), dir.path().join("tl.svg"));
    let result = run(&[
        "diagram",
        path(&summary),
        "--tree",
        path(&tree),
        "--timeline",
        path(&timeline),
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let svg = std::fs::read_to_string(&tree).expect("tree drawn");
    for text in [
        "seg 0",
        "seg 2",
        "placeholder",
        "L2-0 root",
        "#3 merge",
        "rename",
    ] {
        assert!(svg.contains(text), "{text} missing from the diagram");
    }
    let chart = std::fs::read_to_string(&timeline).expect("timeline drawn");
    assert!(chart.matches("<rect class=").count() >= 3 + merges);

    // Not a run's JSON: named, one line.
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"hello": 1}"#).expect("write");
    let result = run(&["diagram", path(&other), "--tree", path(&tree)]);
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(
        message.contains("other.json") && message.contains("transcode --json"),
        "{message}"
    );
}

#[test]
fn model_scales_a_measured_data_path_and_draws_its_chart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-path.json");
    let chart = dir.path().join("model.svg");
    let result = run(&[
        "model",
        "--data-path",
        path(&fixture),
        "--chart",
        path(&chart),
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let projection = json(&result);
    let lambda = &projection["lambda"];
    assert_eq!(lambda["counts_from"], "data-path.json");
    let inputs = &projection["inputs"];
    let source = inputs["source_bytes_per_video_second"]
        .as_f64()
        .expect("rate")
        * inputs["video_seconds"].as_f64().expect("length");
    let read = lambda["s3_get_bytes"].as_f64().expect("bytes read");
    assert!((read / source - 1.07).abs() < 1e-6, "{read} / {source}");
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.contains("Lambda: encode") && svg.contains("EC2 c7i.16xlarge"));
    assert!(
        svg.contains("data-path.json"),
        "the chart says where its counts came from"
    );

    // The text names where the counts came from.
    let result = run(&["model", "--data-path", path(&fixture)]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(
        String::from_utf8_lossy(&result.stdout).contains("scaled from data-path.json (32 segments")
    );

    // A file with a field missing is refused, naming the file and the field.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"source_bytes": 1, "output_bytes": 1}"#).expect("write");
    let result = run(&["model", "--data-path", path(&broken)]);
    assert!(!result.status.success());
    let message = stderr(&result);
    assert!(
        message.contains("broken.json") && message.contains("segments"),
        "{message}"
    );
}

/// `model --input`: a real file probed (duration, size, bitrates) and planned as analyze plans
/// it, the projection run on that plan, Lambda beside EC2.
#[test]
fn model_plans_a_real_file_and_projects_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = dir.path().join("clip.mp4");
    // 20 s with a keyframe every 2 s: the deployed limits (segments of at least 4 s) make 5.
    pattern_clip(&clip, 20, 50);
    let result = run(&["model", "--input", path(&clip), "--json"]);
    assert!(result.status.success(), "{}", stderr(&result));
    let projection = json(&result);
    let input = &projection["input"];
    let number = |value: &serde_json::Value| value.as_f64().expect("a number");
    let seconds = number(&input["seconds"]);
    assert!((seconds - 20.0).abs() < 0.1, "{seconds}");
    let size = std::fs::metadata(&clip).expect("clip").len();
    assert_eq!(input["size_bytes"], size);
    assert!((number(&input["bits_per_second"]) * seconds / 8.0 - size as f64).abs() < 1.0);
    let video = number(&input["video_bits_per_second"]);
    let other = number(&input["other_bits_per_second"]);
    assert!(video > 0.0 && other > 0.0, "{input}");
    assert!((video + other - number(&input["bits_per_second"])).abs() < 1.0);
    let segments = input["segment_seconds"].as_array().expect("segments");
    assert_eq!(segments.len(), 5, "{input}");
    let planned: f64 = segments.iter().map(number).sum();
    assert!((planned - seconds).abs() < 0.05, "{planned} of {seconds}");
    assert_eq!(input["lead_in_segments"], 0, "cuts on the 2 s keyframes");
    // The projection runs on that file and that plan.
    let inputs = &projection["inputs"];
    assert_eq!(inputs["segments"], 5);
    assert!((number(&inputs["video_seconds"]) - seconds).abs() < 1e-9);
    assert!((number(&inputs["source_bytes_per_video_second"]) * seconds - size as f64).abs() < 1.0);
    assert!((number(&inputs["audio_bytes_per_video_second"]) - other / 8.0).abs() < 1e-6);
    assert!(number(&projection["lambda"]["wall_seconds"]) > 0.0);
    assert!(number(&projection["lambda"]["dollars"]) > 0.0);
    let ec2 = projection["ec2"].as_array().expect("EC2 beside it");
    assert!(!ec2.is_empty() && ec2.iter().all(|i| number(&i["dollars"]) > 0.0));

    // As text: the file, its bitrates and its plan before the projection.
    let result = run(&["model", "--input", path(&clip)]);
    assert!(result.status.success(), "{}", stderr(&result));
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(
        text.contains("planned as analyze plans it: 5 segments of"),
        "{text}"
    );
    assert!(
        text.contains("kb/s = video") && text.contains("EC2 c7i."),
        "{text}"
    );

    // The plan follows the model's limits; --segments overrides the count, not the plan shown.
    let limits = dir.path().join("limits.json");
    std::fs::write(&limits, r#"{"min_segment_seconds": 8}"#).expect("write");
    let result = run(&[
        "model",
        "--input",
        path(&clip),
        "--inputs",
        path(&limits),
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let projection = json(&result);
    let planned = projection["input"]["segment_seconds"]
        .as_array()
        .expect("plan")
        .len();
    assert!(
        (1..5).contains(&planned),
        "{planned} segments of at least 8 s"
    );
    assert_eq!(projection["inputs"]["segments"], planned);
    let result = run(&["model", "--input", path(&clip), "--segments", "3", "--json"]);
    let projection = json(&result);
    assert_eq!(projection["inputs"]["segments"], 3);
    assert_eq!(
        projection["input"]["segment_seconds"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );

    // Not a video: refused, naming the file.
    let text_file = dir.path().join("notes.mp4");
    std::fs::write(&text_file, "not a video").expect("write");
    let result = run(&["model", "--input", path(&text_file)]);
    assert!(!result.status.success());
    assert!(stderr(&result).contains("notes.mp4"), "{}", stderr(&result));
}

/// `bench --renditions`: one ladder run against a run per rung, both measured, the ratio theirs;
/// nothing left in the temporary directory. (How fast is not asserted.)
#[test]
fn bench_compares_a_ladder_with_one_run_per_rung() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("pattern.mp4");
    pattern_clip(&source, 2, 25);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir");
    let result = run(&[
        "bench",
        path(&source),
        "--renditions",
        "240,120:crf=30",
        "--preset",
        "ultrafast",
        "--repeat",
        "1",
        "--temp-dir",
        path(&scratch),
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let report = json(&result);
    assert_eq!(report["ladder"], "240,120:crf=30");
    let ladder = report["ladder_cpu_s"].as_f64().expect("ladder CPU");
    let singles = report["singles_cpu_s"].as_f64().expect("singles CPU");
    assert!(ladder > 0.0 && singles > 0.0, "{report}");
    let ratio = report["cpu_ratio"].as_f64().expect("ratio");
    assert!((ratio - ladder / singles).abs() < 1e-9, "{report}");
    assert!(
        entries(&scratch).is_empty(),
        "left: {:?}",
        entries(&scratch)
    );

    let result = run(&["bench", path(&source), "--renditions", "240,240"]);
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains("listed twice"),
        "{}",
        stderr(&result)
    );
}
