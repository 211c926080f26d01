//! Per-job settings through analyze, with in-memory fakes: the stack's defaults overridden by a
//! template, a job spec beside the upload (`<key>.treemux.json`) and the upload's object
//! metadata (`x-amz-meta-treemux-*`), in that order; each bad setting a FAILED job naming the
//! key and the setting before any work; the effective settings on the job record; a job spec's
//! own upload starts nothing; a re-upload with new settings is a new job.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use treemux_core::settings::{Container, RateControl, VideoCodec};
use treemux_core::state::JobStatus;
use treemux_functions::events::S3Event;
use treemux_functions::handlers;
use treemux_functions::job_settings::parse_templates;

mod handler_fakes;
use handler_fakes::{drive, fixture, job, services, started_input, TestServices};

const BUCKET: &str = "treemux-input";
/// The fixture event's key, decoded (the sample is 320x180).
const KEY: &str = "uploads/café clip.webm";

/// The fixture's event for the fixture's key as upload `sequencer` (another sequencer: another
/// upload of the key).
fn event(sequencer: &str) -> S3Event {
    event_for("uploads/caf%C3%A9+clip.webm", sequencer)
}

fn event_for(encoded_key: &str, sequencer: &str) -> S3Event {
    let text = fixture("s3-object-created.json")
        .replace("uploads/caf%C3%A9+clip.webm", encoded_key)
        .replace("0055AED6DCD90281E5", sequencer);
    serde_json::from_str(&text).expect("event")
}

fn set_metadata(services: &TestServices, pairs: &[(&str, &str)]) {
    let metadata: BTreeMap<String, String> = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    services
        .objects
        .put_metadata(BUCKET, KEY, &metadata)
        .expect("metadata");
}

fn put_spec(services: &TestServices, json: &str) {
    let path = services
        .objects
        .root
        .join(BUCKET)
        .join(format!("{KEY}.treemux.json"));
    std::fs::write(path, json).expect("job spec");
}

/// The upload's job after analyze: its record and how analyze ended.
async fn analyzed(
    services: &TestServices,
    sequencer: &str,
) -> (treemux_core::state::JobRecord, Result<String, String>) {
    let outcome = handlers::analyze(services, event(sequencer)).await;
    let id = handlers::event_jobs(&services.config, &event(sequencer))
        .find_map(|job| match job {
            Ok(handlers::EventJob::Job { id, .. }) => Some(id),
            _ => None,
        })
        .expect("a job");
    let outcome = outcome
        .map(|outcome| outcome.jobs[0].outcome.clone())
        .map_err(|error| format!("{}: {}", error.name(), error.message));
    (job(&services.store, &id).await, outcome)
}

/// `codec_name,width,height` of the first video stream, by ffprobe.
fn ffprobe_video(path: &Path) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe {}", path.display());
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn metadata_settings_make_the_output_and_are_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    set_metadata(
        &services,
        &[
            ("treemux-container", "webm"),
            ("treemux-height", "120"),
            ("treemux-crf", "45"),
            ("treemux-preset", "8"),
        ],
    );
    let (record, outcome) = analyzed(&services, "0055AED6DCD90281E5").await;
    assert_eq!(outcome.as_deref(), Ok("started"));
    let settings = record.settings.clone().expect("settings recorded");
    assert_eq!(settings.container, Container::WebM);
    assert_eq!(
        settings.encode.codec,
        VideoCodec::Vp9,
        "the container's codec"
    );
    assert_eq!(settings.encode.rate, RateControl::Crf(45));
    assert_eq!(settings.encode.height, Some(120));
    assert_eq!(settings.encode.preset, "8");
    assert_eq!(record.settings_from["crf"], "x-amz-meta-treemux-crf");
    assert_eq!(
        record.settings_from["codec"],
        "the webm container's default"
    );
    assert_eq!(
        record.output, "s3://treemux-output/transcoded/uploads/café clip.webm.webm",
        "the extension follows the container"
    );

    drive(&services, &started_input(&services)).await;
    let record = job(&services.store, &record.job_id).await;
    assert_eq!(record.status, JobStatus::Succeeded, "{:?}", record.error);
    let output = dir
        .path()
        .join("buckets/treemux-output/transcoded/uploads/café clip.webm.webm");
    let probed = ffprobe_video(&output);
    let fields: Vec<&str> = probed.split(',').collect();
    assert_eq!((fields[0], fields[2]), ("vp9", "120"), "{probed}");
    // The width follows the source's 16:9 (213.3), kept even.
    let width: u32 = fields[1].parse().expect("width");
    assert!(width % 2 == 0 && width.abs_diff(213) <= 2, "{probed}");
}

#[tokio::test]
async fn metadata_over_the_job_spec_over_the_template_over_the_stack() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    services.config.templates = parse_templates(
        r#"{"small": {"height": 144, "crf": 28, "preset": "ultrafast"},
            "tiny": {"height": 90}}"#,
    )
    .expect("templates");
    put_spec(
        &services,
        r#"{"template": "small", "crf": 30, "height": 120}"#,
    );
    set_metadata(&services, &[("treemux-crf", "32")]);
    let (record, outcome) = analyzed(&services, "0055AED6DCD90281E5").await;
    assert_eq!(outcome.as_deref(), Ok("started"));
    let settings = record.settings.expect("settings").encode;
    assert_eq!(settings.rate, RateControl::Crf(32), "metadata's");
    assert_eq!(settings.height, Some(120), "the spec's");
    assert_eq!(settings.preset, "ultrafast", "the template's");
    assert_eq!(settings.codec, VideoCodec::H264, "the stack's");
    let spec = "s3://treemux-input/uploads/café clip.webm.treemux.json";
    let from = &record.settings_from;
    assert_eq!(from["crf"], "x-amz-meta-treemux-crf");
    assert_eq!(from["height"], format!("{spec}: height"));
    assert_eq!(from["preset"], "TREEMUX_TEMPLATES template small: preset");
    assert_eq!(from["template"], format!("{spec}: template"));
    assert!(!from.contains_key("codec"), "the stack's default: {from:?}");

    // The metadata's template wins over the spec's: a new upload of the key.
    set_metadata(&services, &[("treemux-template", "tiny")]);
    let (record, outcome) = analyzed(&services, "0055AED6DCD90281E6").await;
    assert_eq!(outcome.as_deref(), Ok("started"));
    let settings = record.settings.expect("settings").encode;
    assert_eq!(settings.height, Some(120), "the spec still sets the height");
    assert_eq!(settings.rate, RateControl::Crf(30), "the spec's crf");
    assert_eq!(
        settings.preset, "veryfast",
        "tiny sets no preset: the stack's"
    );
    assert_eq!(
        record.settings_from["template"],
        "x-amz-meta-treemux-template"
    );
}

/// Metadata, a job spec, and what the job's error must say.
type BadCase = (
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
    &'static [&'static str],
);

#[tokio::test]
async fn each_bad_setting_fails_the_job_naming_the_key_and_the_setting() {
    let cases: [BadCase; 8] = [
        (
            &[("treemux-qualty", "20")],
            None,
            &["unknown setting \"qualty\"", "x-amz-meta-treemux-qualty"],
        ),
        (
            &[("treemux-crf", "high")],
            None,
            &[
                "x-amz-meta-treemux-crf",
                "crf=\"high\": expected a whole number",
            ],
        ),
        (
            &[("treemux-height", "720")],
            None,
            &[
                "height 720 is above the source's height of 180 pixels",
                "set upscale (x-amz-meta-treemux-upscale: true",
                "height from x-amz-meta-treemux-height",
            ],
        ),
        (
            &[("treemux-container", "webm"), ("treemux-codec", "h264")],
            None,
            &[
                "a .webm file cannot hold h264 video",
                "container from x-amz-meta-treemux-container",
            ],
        ),
        (
            &[("treemux-preset", "sluggish")],
            None,
            &["preset sluggish", "preset from x-amz-meta-treemux-preset"],
        ),
        (
            &[("treemux-template", "web")],
            None,
            &["template \"web\" is not one of the stack's templates"],
        ),
        (
            &[],
            Some(r#"{"crf": 20, "bitrate": "2M"}"#),
            &[
                "uploads/café clip.webm.treemux.json",
                "crf and bitrate are both set",
            ],
        ),
        (
            &[],
            Some("crf: 20"),
            &[
                "uploads/café clip.webm.treemux.json",
                "not a JSON object of settings",
            ],
        ),
    ];
    for (metadata, spec, expected) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
        set_metadata(&services, metadata);
        if let Some(spec) = spec {
            put_spec(&services, spec);
        }
        let (record, outcome) = analyzed(&services, "0055AED6DCD90281E5").await;
        let error = outcome.expect_err("refused");
        assert!(error.starts_with("TreemuxInvalidInput: "), "{error}");
        let recorded = record.error.clone().unwrap_or_default();
        assert_eq!(record.status, JobStatus::Failed, "{metadata:?}");
        assert_eq!(recorded, error, "the job record says why");
        assert!(recorded.contains("s3://treemux-input/uploads/café clip.webm"));
        for part in expected {
            assert!(recorded.contains(part), "{recorded:?} lacks {part:?}");
        }
        assert!(
            services.executions.started.lock().expect("lock").is_empty(),
            "no work started: {metadata:?}"
        );
        assert_eq!(record.segments, 0);
    }
}

#[tokio::test]
async fn a_height_above_the_source_is_made_when_upscale_is_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    set_metadata(
        &services,
        &[("treemux-height", "240"), ("treemux-upscale", "true")],
    );
    let (record, outcome) = analyzed(&services, "0055AED6DCD90281E5").await;
    assert_eq!(outcome.as_deref(), Ok("started"), "{:?}", record.error);
    let settings = record.settings.expect("settings").encode;
    assert_eq!((settings.height, settings.upscale), (Some(240), true));
}

#[tokio::test]
async fn a_job_specs_own_upload_starts_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    put_spec(&services, r#"{"crf": 30}"#);
    let event = event_for(
        "uploads/caf%C3%A9+clip.webm.treemux.json",
        "0055AED6DCD90281E7",
    );
    let outcome = handlers::analyze(&services, event.clone())
        .await
        .expect("analyze");
    assert_eq!(outcome.jobs.len(), 1);
    assert_eq!(outcome.jobs[0].outcome, "job-spec");
    assert_eq!(outcome.jobs[0].job_id, "");
    assert!(services.executions.started.lock().expect("lock").is_empty());
    assert!(!dir.path().join("efs/jobs").exists(), "no scratch, no job");
    // job-failed given up on such an event names no job either.
    assert!(handlers::event_jobs(&services.config, &event)
        .all(|job| matches!(job, Ok(handlers::EventJob::Spec(_)))));
}

#[tokio::test]
async fn a_re_upload_with_new_settings_is_a_new_job_and_a_repeated_event_is_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    set_metadata(&services, &[("treemux-crf", "30")]);
    let (first, outcome) = analyzed(&services, "0055AED6DCD90281E5").await;
    assert_eq!(outcome.as_deref(), Ok("started"));
    // The same event again (a duplicate delivery): the same job, nothing new started.
    let (again, outcome) = analyzed(&services, "0055AED6DCD90281E5").await;
    assert_eq!(outcome.as_deref(), Ok("duplicate"));
    assert_eq!(again.job_id, first.job_id);
    // The key uploaded again with other metadata: a new job with its own settings, and the
    // first one superseded.
    set_metadata(&services, &[("treemux-crf", "35")]);
    let (second, outcome) = analyzed(&services, "0055AED6DCD90281E6").await;
    assert_eq!(outcome.as_deref(), Ok("started"));
    assert_ne!(second.job_id, first.job_id);
    let rate =
        |record: &treemux_core::state::JobRecord| record.settings.as_ref().map(|s| s.encode.rate);
    assert_eq!(rate(&second), Some(RateControl::Crf(35)));
    assert_eq!(rate(&first), Some(RateControl::Crf(30)));
    let first = job(&services.store, &first.job_id).await;
    assert_eq!(first.status, JobStatus::Superseded);
    // A stack with other templates makes a new job of the same event.
    let mut other = services.config.clone();
    other.templates = parse_templates(r#"{"t": {"crf": 20}}"#).expect("templates");
    let id = |config| {
        handlers::event_jobs(config, &event("0055AED6DCD90281E6"))
            .find_map(|job| match job {
                Ok(handlers::EventJob::Job { id, .. }) => Some(id),
                _ => None,
            })
            .expect("job")
    };
    assert_eq!(id(&services.config), second.job_id);
    assert_ne!(id(&other), second.job_id);
}

/// A submitted job (`treemux submit`): the request's settings over the object's metadata, the
/// job's id the request's own, the settings recorded with `treemux submit` as their origin; it
/// takes the key, and an upload after it supersedes it.
#[tokio::test]
async fn a_submitted_job_runs_with_its_settings_over_the_metadata() {
    use treemux_functions::submit::SubmitRequest;
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    set_metadata(
        &services,
        &[("treemux-crf", "30"), ("treemux-height", "90")],
    );
    let mut settings = serde_json::Map::new();
    settings.insert("crf".into(), 20.into());
    settings.insert("container".into(), "mkv".into());
    let request = SubmitRequest {
        bucket: BUCKET.into(),
        key: KEY.into(),
        request_id: "request-1".into(),
        settings,
        ..SubmitRequest::default()
    };
    let submitted = S3Event {
        submit: Some(Box::new(request.clone())),
        ..S3Event::default()
    };
    let outcome = handlers::analyze(&services, submitted)
        .await
        .expect("analyze");
    assert_eq!(outcome.jobs.len(), 1);
    assert_eq!(outcome.jobs[0].job_id, request.job_id());
    assert_eq!(outcome.jobs[0].outcome, "started");
    let record = job(&services.store, &request.job_id()).await;
    let recorded = record.settings.clone().expect("settings");
    assert_eq!(recorded.encode.rate, RateControl::Crf(20));
    assert_eq!(
        recorded.encode.height,
        Some(90),
        "the metadata's, not overridden"
    );
    assert_eq!(recorded.container, Container::Matroska);
    assert_eq!(record.settings_from["crf"], "treemux submit: crf");
    assert_eq!(record.settings_from["height"], "x-amz-meta-treemux-height");
    assert_eq!(record.upload, "submit:request-1");
    assert!(record.output.ends_with(".mkv"), "{}", record.output);
    // An upload of the key after the submission is newer: it supersedes the submitted job.
    handlers::analyze(&services, event("0055AED6DCD90281E6"))
        .await
        .expect("a later upload");
    assert_eq!(
        job(&services.store, &request.job_id()).await.status,
        JobStatus::Superseded
    );
}

/// A submitted job with a setting treemux does not know: FAILED before any work, naming the
/// setting and `treemux submit`.
#[tokio::test]
async fn a_submitted_job_with_an_unknown_setting_fails_naming_it() {
    use treemux_functions::submit::SubmitRequest;
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    let mut settings = serde_json::Map::new();
    settings.insert("colour".into(), "red".into());
    let request = SubmitRequest {
        bucket: BUCKET.into(),
        key: KEY.into(),
        request_id: "request-2".into(),
        settings,
        ..SubmitRequest::default()
    };
    let event = S3Event {
        submit: Some(Box::new(request.clone())),
        ..S3Event::default()
    };
    let error = handlers::analyze(&services, event)
        .await
        .expect_err("an unknown setting");
    assert_eq!(error.name(), "TreemuxInvalidInput");
    let record = job(&services.store, &request.job_id()).await;
    assert_eq!(record.status, JobStatus::Failed);
    let cause = record.error.unwrap_or_default();
    assert!(
        cause.contains("treemux submit") && cause.contains("unknown setting \"colour\""),
        "{cause}"
    );
    assert!(services.executions.started.lock().expect("lock").is_empty());
}

/// `poster` and `thumbnails` as settings: read from metadata and job specs, the later layer
/// winning, a thumbnail interval bringing the poster; a bad value refused naming it.
#[test]
fn poster_and_thumbnail_settings_resolve_by_layer() {
    use treemux_core::settings::EncodeSettings;
    use treemux_core::thumbnails::ThumbnailRequest;
    use treemux_functions::job_settings::{resolve, SettingsLayer, Templates};
    let defaults = EncodeSettings::new(VideoCodec::H264);
    let metadata = |pairs: &[(&str, &str)]| {
        SettingsLayer::from_metadata(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    };
    let spec = SettingsLayer::from_spec(br#"{"poster": true}"#, "s3://in/a.mp4.treemux.json")
        .expect("spec");
    let none = metadata(&[]).expect("empty");
    let resolved = resolve(
        &defaults,
        Container::Mp4,
        &Templates::new(),
        Some(&spec),
        &none,
    )
    .expect("resolves");
    assert_eq!(
        resolved.settings.thumbnails,
        Some(ThumbnailRequest::default()),
        "the poster alone"
    );
    assert_eq!(
        resolved.from["poster"],
        "s3://in/a.mp4.treemux.json: poster"
    );
    let tiles = metadata(&[("treemux-thumbnails", "2.5")]).expect("seconds");
    let resolved = resolve(
        &defaults,
        Container::Mp4,
        &Templates::new(),
        Some(&spec),
        &tiles,
    )
    .expect("resolves");
    assert_eq!(
        resolved.settings.thumbnails.and_then(|t| t.interval_ms),
        Some(2500)
    );
    let off = metadata(&[("treemux-poster", "false")]).expect("flag");
    let resolved = resolve(
        &defaults,
        Container::Mp4,
        &Templates::new(),
        Some(&spec),
        &off,
    )
    .expect("resolves");
    assert_eq!(resolved.settings.thumbnails, None, "metadata over the spec");
    let untouched =
        resolve(&defaults, Container::Mp4, &Templates::new(), None, &none).expect("resolves");
    assert_eq!(untouched.settings.thumbnails, None, "none by default");
    for bad in ["0", "-3", "often", "NaN"] {
        let error = metadata(&[("treemux-thumbnails", bad)]).expect_err(bad);
        assert!(
            error.to_string().contains(&format!(
                "x-amz-meta-treemux-thumbnails: thumbnails={bad:?}"
            )),
            "{error}"
        );
    }
    assert!(metadata(&[("treemux-poster", "maybe")]).is_err());
}
