//! The command line as ffmpeg users expect it: existing outputs are refused unless `-y`, a
//! closed pipe ends a command quietly, progress lines where stderr is no terminal, `-q`/`-v`,
//! option checks (`--workers 0`, `--height` above the source, preset ranges) and errors that
//! name the user's OUTPUT, never an internal file.

mod common;

use common::*;
use std::path::Path;
use std::process::Stdio;
use treemux_core::settings::VideoCodec;

/// A small clip with audio: 320x240, 25 fps, keyframes every 25 frames.
fn clip(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let source = dir.join("source.mp4");
    pattern_clip(&source, seconds, 25);
    source
}

#[test]
fn an_existing_output_is_refused_unless_y_and_kept_with_n() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path(), 2);
    let output = dir.path().join("out.mp4");
    std::fs::write(&output, b"the user's own file").expect("write");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir");
    let common = ["--preset", "ultrafast", "--temp-dir", path(&scratch)];

    for (flags, said) in [
        (&[][..], "add -y (--overwrite) to replace it"),
        (&["-n"][..], "-n (--no-overwrite) keeps it"),
        (&["--no-overwrite"][..], "-n (--no-overwrite) keeps it"),
    ] {
        let mut args = vec!["transcode", path(&source), path(&output)];
        args.extend_from_slice(flags);
        args.extend_from_slice(&common);
        let result = run(&args);
        let message = stderr(&result);
        assert!(
            !result.status.success(),
            "{flags:?}: an existing output was replaced"
        );
        assert!(
            message.contains("out.mp4")
                && message.contains("already exists")
                && message.contains(said),
            "{flags:?}: {message}"
        );
        assert_eq!(
            std::fs::read(&output).expect("still there"),
            b"the user's own file",
            "{flags:?}: the existing output was touched"
        );
        assert!(
            entries(&scratch).is_empty(),
            "work started: {:?}",
            entries(&scratch)
        );
    }

    // Checked before any work: a file that is not media is not even opened.
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video\n").expect("write");
    let result = run(&["transcode", path(&text), path(&output)]);
    assert!(
        stderr(&result).contains("already exists"),
        "{}",
        stderr(&result)
    );

    // -y and -n contradict each other.
    let result = run(&["transcode", path(&source), path(&output), "-y", "-n"]);
    assert!(!result.status.success());
    assert_eq!(
        std::fs::read(&output).expect("kept"),
        b"the user's own file"
    );

    for flag in ["-y", "--overwrite"] {
        let mut args = vec!["transcode", path(&source), path(&output), flag];
        args.extend_from_slice(&common);
        let result = run(&args);
        assert!(result.status.success(), "{flag}: {}", stderr(&result));
        assert_verifies(&source, &output);
    }
}

/// `treemux probe FILE | head`: the reader is gone before treemux writes. The command ends as it
/// would have (exit 0), without a panic (exit 101) or a message about the pipe.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path(), 2);
    for args in [
        vec!["probe", path(&source)],
        vec!["probe", path(&source), "--json"],
        vec!["verify", path(&source), path(&source)],
        vec!["model", "--video-seconds", "60"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let result = treemux()
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("treemux runs");
        let message = stderr(&result);
        assert_eq!(result.status.code(), Some(0), "{args:?}: {message}");
        assert!(
            !message.contains("panicked") && !message.contains("pipe"),
            "{args:?}: {message}"
        );
    }
}

fn progress_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| is_progress_line(line))
        .collect()
}

/// With stderr a pipe (a log, CI), a run prints plain progress lines of at most 80 columns:
/// frames, rate with one decimal, speed against real time, segments, merges, ETA; the last one
/// is the finished run's.
#[test]
fn progress_lines_where_stderr_is_no_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path(), 4);
    let output = dir.path().join("out.mkv");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--segments",
        "2",
        "--workers",
        "1",
        "--preset",
        "medium",
        "--stats-period",
        "0.1",
    ]);
    let log = stderr(&result);
    assert!(result.status.success(), "{log}");
    let lines = progress_lines(&log);
    assert!(!lines.is_empty(), "no progress line: {log:?}");
    for line in &lines {
        assert!(line.chars().count() <= 80, "longer than 80 columns: {line}");
        let fields: Vec<&str> = line.split(' ').collect();
        let fps = fields
            .iter()
            .position(|field| *field == "fps")
            .map(|at| fields[at - 1])
            .unwrap_or_else(|| panic!("no fps: {line}"));
        assert!(
            fps.split_once('.')
                .is_some_and(|(_, decimals)| decimals.len() == 1),
            "fps with one decimal: {line}"
        );
        let speed = fields
            .iter()
            .find_map(|field| field.strip_prefix("speed="))
            .unwrap_or_else(|| panic!("no speed: {line}"));
        assert!(
            speed.ends_with('x') && speed.trim_end_matches('x').parse::<f64>().is_ok(),
            "speed=N.Nx: {line}"
        );
        assert!(line.contains(" seg ") && line.contains(" merge "), "{line}");
    }
    let last = lines.last().expect("checked");
    assert!(
        last.starts_with("frame 100/100 100% ") && last.contains("seg 2/2 merge 1/1"),
        "the last line is the finished run's: {last}"
    );
    // The summary on stdout says the same rate and speed, in the singular where it is one.
    let summary = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(
        summary.contains("100 frames in 2 segments (1 worker × ") && summary.contains("speed="),
        "{summary}"
    );
}

#[test]
fn quiet_prints_only_problems_and_verbose_prints_each_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path(), 2);
    let quiet = run(&[
        "transcode",
        path(&source),
        path(&dir.path().join("quiet.mp4")),
        "-q",
        "--preset",
        "ultrafast",
        "--stats-period",
        "0.01",
    ]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "-q printed: {}{}",
        String::from_utf8_lossy(&quiet.stdout),
        stderr(&quiet)
    );
    // Errors still show.
    let refused = run(&[
        "transcode",
        path(&source),
        path(&dir.path().join("quiet.mp4")),
        "-q",
    ]);
    assert!(
        stderr(&refused).contains("already exists"),
        "{}",
        stderr(&refused)
    );

    let verbose = run(&[
        "transcode",
        path(&source),
        path(&dir.path().join("verbose.mp4")),
        "-v",
        "--segments",
        "2",
        "--preset",
        "ultrafast",
    ]);
    let log = stderr(&verbose);
    assert!(verbose.status.success(), "{log}");
    for expected in [
        "treemux: plan: 50 frames",
        "in 2 segments, 1 merge",
        "treemux: segment 0 encoded",
        "treemux: segment 1 encoded",
        "treemux: merge L1-0 done (1/1)",
    ] {
        assert!(log.contains(expected), "-v lacks {expected:?}: {log}");
    }
    let summary = String::from_utf8_lossy(&verbose.stdout).into_owned();
    assert!(summary.contains("  segment 1: 25 frames"), "{summary}");
}

#[test]
fn one_is_singular() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path(), 1);
    let result = run(&[
        "transcode",
        path(&source),
        path(&dir.path().join("out.mp4")),
        "--segments",
        "1",
        "--workers",
        "1",
        "--preset",
        "ultrafast",
    ]);
    let summary = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(summary.contains(" in 1 segment (1 worker × "), "{summary}");
    let probe = run(&["probe", path(&source), "--segments", "1"]);
    assert!(
        String::from_utf8_lossy(&probe.stdout).contains("plan: 1 segment\n"),
        "{}",
        String::from_utf8_lossy(&probe.stdout)
    );
}

#[test]
fn zero_workers_are_refused() {
    let source = bundled("06_bbb_vp9_opus_320x180.webm");
    for args in [
        vec![
            "transcode",
            path(&source),
            "/tmp/never-written-cli.mp4",
            "--workers",
            "0",
        ],
        vec!["probe", path(&source), "--workers", "0"],
        vec!["bench", path(&source), "--workers", "0"],
    ] {
        let result = run(&args);
        assert!(!result.status.success(), "{args:?} accepted");
        assert!(
            stderr(&result).contains("--workers") && stderr(&result).contains("at least 1"),
            "{args:?}: {}",
            stderr(&result)
        );
    }
    assert!(!Path::new("/tmp/never-written-cli.mp4").exists());
}

#[test]
fn a_height_above_the_source_needs_upscale() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path(), 1);
    let output = dir.path().join("out.mp4");
    let result = run(&["transcode", path(&source), path(&output), "--height", "480"]);
    let message = stderr(&result);
    assert!(!result.status.success(), "upscaled silently");
    assert!(
        message.contains("source.mp4")
            && message.contains("--height 480")
            && message.contains("240")
            && message.contains("--upscale"),
        "{message}"
    );
    assert!(!output.exists());
    // The source's own height is no upscale.
    let same = dir.path().join("same.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&same),
        "--height",
        "240",
        "--preset",
        "ultrafast",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));

    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--height",
        "480",
        "--upscale",
        "--preset",
        "ultrafast",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let probe = json(&run(&["probe", path(&output), "--json"]));
    assert_eq!(probe["source"]["video"]["height"], 480);
    assert_eq!(probe["source"]["video"]["width"], 640);
}

/// settings.rs is the one source of the preset ranges: the help, the README and the errors
/// state the same ones.
#[test]
fn preset_ranges_agree_in_help_readme_and_errors() {
    let help = String::from_utf8_lossy(&run(&["transcode", "--help"]).stdout).into_owned();
    // clap wraps long help; compare with the whitespace folded.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let source = bundled("06_bbb_vp9_opus_320x180.webm");
    for codec in VideoCodec::ALL {
        let range = codec.preset_range().to_string();
        let stated = format!("{range} (default {})", codec.default_preset());
        assert!(help.contains(&stated), "--help lacks {stated:?}: {help}");
        assert!(readme.contains(&stated), "README lacks {stated:?}");
        let result = run(&[
            "transcode",
            path(&source),
            "/tmp/never-written-cli.mkv",
            "--codec",
            &codec.to_string(),
            "--preset",
            "99",
        ]);
        assert!(!result.status.success());
        let message = stderr(&result);
        let listed = match codec.preset_range() {
            treemux_core::settings::PresetRange::Names(names) => names.join(", "),
            treemux_core::settings::PresetRange::Numbers { .. } => range.clone(),
        };
        assert!(
            message.contains("--preset 99") && message.contains(&listed),
            "{codec}: {message}"
        );
    }
}

/// An unwritable directory is named as such; no internal or temporary file name appears.
#[test]
fn unwritable_directories_and_late_write_failures_name_the_users_output() {
    let source = bundled("06_bbb_vp9_opus_320x180.webm");
    let result = run(&["transcode", path(&source), "/proc/treemux-out.mp4"]);
    let message = stderr(&result);
    assert!(!result.status.success());
    assert!(
        message.contains("/proc/treemux-out.mp4: cannot write to directory /proc: "),
        "{message}"
    );
    assert!(
        !message.contains(".treemux")
            && !message.contains("partial")
            && !message.contains("os error"),
        "an internal name or code: {message}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    // Root writes anyway; the permission case is for everyone else.
    if std::fs::write(locked.join("probe"), b"").is_err() {
        let output = locked.join("out.mp4");
        let result = run(&["transcode", path(&source), path(&output)]);
        assert_eq!(
            stderr(&result).trim(),
            format!(
                "treemux: error: {}: cannot write to directory {}: Permission denied",
                output.display(),
                locked.display()
            )
        );
    }

    // A failure while writing the final file (FFmpeg 5.1's MOV muxer takes no VP9) names OUTPUT,
    // not the hidden file it was being written under.
    let output = dir.path().join("out.mov");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--codec",
        "vp9",
        "--preset",
        "8",
    ]);
    if !result.status.success() {
        let message = stderr(&result);
        assert!(
            message.contains(&format!("{}:", output.display())) && !message.contains(".partial"),
            "{message}"
        );
        assert!(entries(dir.path())
            .iter()
            .all(|name| !name.ends_with(".partial")));
    }
}

/// `submit`, `status` and `jobs` say which stack they need before anything else: none named
/// (and no TREEMUX_LOCAL_STACK_ENDPOINT), an env file that is not there or not a local stack's,
/// an input that is not an s3:// address. (Against a stack: worker/tests/e2e_cli.rs.)
#[test]
fn stack_commands_name_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-env");
    let not_env = dir.path().join("env");
    std::fs::write(&not_env, "HELLO=1\n").expect("write");
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["jobs"], "which stack? --stack NAME"),
        (
            vec!["status", "abc", "--local", path(&missing)],
            "cannot read the local stack's env file",
        ),
        (vec!["jobs", "--local", path(&not_env)], "no TREEMUX_TABLE"),
        (
            vec!["submit", "in/a.mp4", "--local", path(&not_env)],
            "in/a.mp4: expected s3://bucket/key",
        ),
    ];
    for (args, said) in cases {
        let result = treemux()
            .args(&args)
            .env_remove("TREEMUX_LOCAL_STACK_ENDPOINT")
            .output()
            .expect("treemux runs");
        let message = stderr(&result);
        assert!(!result.status.success(), "{args:?}");
        assert!(message.contains(said), "{args:?}: {said:?} in {message}");
    }
}
