//! The local runner: the whole pipeline on one machine, with a pool of segment workers.
//!
//! It is the same flow the AWS functions follow, with the in-memory state store: probe, plan,
//! then a pool that encodes segments longest first (for MP4/MOV each also copies its share of
//! the audio; for other containers one task extracts the audio beside them); the worker that
//! completes a pair merges it at once (so merges run while other segments still encode) and
//! climbs the tree as far as it can; finally the audio is joined and the root muxed with it.

use crate::engine::{self, JobSpec, Produced, ScratchLayout};
use crate::error::Error;
use crate::fault::{CrashPlan, CrashPoint};
use crate::media::audio::{AudioAction, AudioReport};
use crate::media::convert::SegmentReport;
use crate::media::merge::MergeReport;
use crate::media::probe::{self, MediaInfo};
use crate::media::remux::{MuxTarget, RemuxReport};
use crate::media::source::Source;
use crate::plan::{PlanOptions, SegmentPlan};
use crate::settings::{Container, EncodeSettings};
use crate::state::{InMemoryStateStore, StateStore};
use crate::steps::{mark_merged, NextStep};
use crate::tree::{MergeKind, MergeTree, NodeId};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the user asked for, beyond the input and output paths.
#[derive(Clone, Debug)]
pub struct TranscodeOptions {
    /// Encoder settings; `threads` is replaced by the per-worker share of `cores`.
    pub settings: EncodeSettings,
    pub plan: PlanOptions,
    /// Segment workers; `None` = one per core.
    pub workers: Option<usize>,
    /// CPU cores to share between workers (workers × encoder threads ≈ cores).
    pub cores: usize,
    /// Keep the scratch directory (segments, merges, audio) instead of deleting it.
    pub keep_temp: bool,
    /// Where the scratch directory is created; `None` = the system temporary directory.
    pub temp_root: Option<PathBuf>,
    /// Keep the scratch directory of a failed or killed run under a name derived from the input,
    /// the settings and the plan, and reuse its finished segments, merges and audio when run
    /// again with the same input and options.
    pub resume: bool,
    /// What to do when the output file already exists (checked before any work).
    pub existing_output: ExistingOutput,
    /// Crash on purpose at this point (fault injection for robustness tests; never in normal use).
    pub fault: Option<CrashPoint>,
    /// Set (from a signal handler) to stop the run: encodes stop at their next frame, merges and
    /// the audio at their end, no new work starts, and the run returns [`Error::Interrupted`]
    /// after removing its scratch directory (kept with `resume`) and writing no output.
    pub interrupt: Option<Arc<AtomicBool>>,
}

impl TranscodeOptions {
    /// Defaults for `settings` on this machine.
    pub fn new(settings: EncodeSettings) -> Self {
        Self {
            settings,
            plan: PlanOptions::default(),
            workers: None,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            keep_temp: false,
            temp_root: None,
            resume: false,
            existing_output: ExistingOutput::Refuse,
            fault: None,
            interrupt: None,
        }
    }
}

/// What a run does when its output file already exists. Either way it never overwrites its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExistingOutput {
    /// Refuse, saying how to replace it (`-y`): the command line's default, as in ffmpeg when
    /// nobody can be asked.
    #[default]
    Refuse,
    /// Refuse because the user said never to overwrite (`-n`).
    Keep,
    /// Replace it once the new output is complete (`-y`).
    Replace,
}

/// Progress events, sent from whichever worker makes the progress.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Progress {
    /// The plan is made: this many frames to encode, segments and pair merges to run, and the
    /// source's duration in seconds (for the speed against real time).
    Planned {
        frames: u64,
        segments: u32,
        merges: u32,
        duration_seconds: f64,
    },
    /// One more frame encoded.
    FrameEncoded,
    SegmentDone {
        index: u32,
    },
    MergeDone {
        node: NodeId,
    },
    AudioDone,
    /// Writing the final file.
    Muxing,
}

/// One task of the run, for the timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpan {
    /// `segment`, `merge`, `rename` or `audio`.
    pub kind: String,
    /// Segment index, or the merged node as `L<level>-<index>`.
    pub target: String,
    /// Pool thread that ran it.
    pub worker: usize,
    /// Seconds since the run started.
    pub start_seconds: f64,
    pub end_seconds: f64,
}

/// Wall-clock seconds per stage. Encoding, merging and audio overlap in time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageSeconds {
    pub probe: f64,
    pub plan: f64,
    /// From the first segment start to the last segment end.
    pub convert: f64,
    /// Sum of merge durations.
    pub merge: f64,
    pub audio: f64,
    pub remux: f64,
    pub total: f64,
}

/// Everything a finished run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TranscodeReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub source: MediaInfo,
    pub plan: SegmentPlan,
    pub tree: MergeTree,
    pub workers: usize,
    pub settings: EncodeSettings,
    pub segments: Vec<SegmentReport>,
    pub merges: Vec<(NodeId, MergeKind, Option<MergeReport>)>,
    pub audio: Option<AudioReport>,
    pub remux: RemuxReport,
    /// One line per stream, tag or attachment of the source the output does not keep (from
    /// [`streams::plan`]); everything else of the source is in the output.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub stages: StageSeconds,
    pub timeline: Vec<TaskSpan>,
    pub output_bytes: u64,
    /// Nodes (segments or merges) a `--resume` run found finished and reused.
    #[serde(default)]
    pub reused: Vec<NodeId>,
    /// The scratch directory, when kept.
    pub temp_dir: Option<PathBuf>,
}

/// Checks the output path before any work: a known container, a writable directory, not the
/// input itself (the input is never overwritten), and not an existing file unless `existing`
/// says to replace it.
pub fn check_output_path(
    input: &Path,
    output: &Path,
    existing: ExistingOutput,
) -> Result<Container, Error> {
    let container = Container::from_path(output).ok_or_else(|| {
        Error::request(
            output,
            "unknown output type: the name must end in .mp4, .m4v, .mov, .mkv or .webm",
        )
    })?;
    if output.is_dir() {
        return Err(Error::request(
            output,
            "is a directory; name an output file",
        ));
    }
    let directory = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    if !directory.is_dir() {
        return Err(Error::request(
            output,
            format!("directory {} does not exist", directory.display()),
        ));
    }
    probe_writable(&directory).map_err(|source| {
        Error::request(
            output,
            format!(
                "cannot write to directory {}: {}",
                directory.display(),
                os_reason(&source)
            ),
        )
    })?;
    let same_file = match (
        std::fs::canonicalize(input),
        std::fs::canonicalize(&directory),
    ) {
        (Ok(input), Ok(directory)) => output
            .file_name()
            .is_some_and(|name| directory.join(name) == input),
        _ => false,
    };
    if same_file || is_same_inode(input, output) {
        return Err(Error::request(
            output,
            "is the input file; choose a different output (treemux never overwrites its input)",
        ));
    }
    // A dangling symbolic link counts as existing: replacing it needs -y as well.
    if std::fs::symlink_metadata(output).is_ok() {
        match existing {
            ExistingOutput::Replace => {}
            ExistingOutput::Refuse => {
                return Err(Error::request(
                    output,
                    "already exists; add -y (--overwrite) to replace it",
                ))
            }
            ExistingOutput::Keep => {
                return Err(Error::request(
                    output,
                    "already exists and -n (--no-overwrite) keeps it; nothing done",
                ))
            }
        }
    }
    Ok(container)
}

/// Creates and removes a file in `directory`, proving that the output can be written there
/// before any work starts. The file's name is never shown: errors carry the OS's reason only.
fn probe_writable(directory: &Path) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let mut attempt = 0;
    loop {
        let probe = directory.join(format!(
            ".treemux-write-check.{}.{nanos}.{attempt}",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => return std::fs::remove_file(&probe),
            // Left by a killed run with the same process id: try another name.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The operating system's reason for `error` without its `(os error N)` code, e.g.
/// `Permission denied`.
fn os_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(end) if text.ends_with(')') => text[..end].to_owned(),
        _ => text,
    }
}

#[cfg(unix)]
fn is_same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// Chooses workers and encoder threads per worker so that workers × threads ≈ cores.
pub fn choose_parallelism(
    requested_workers: Option<usize>,
    cores: usize,
    segments: usize,
) -> (usize, u32) {
    let cores = cores.max(1);
    let workers = requested_workers.unwrap_or(cores).clamp(1, segments.max(1));
    let threads = (cores / workers).max(1);
    (workers, threads as u32)
}

/// Transcodes `input` to `output` on this machine.
///
/// On success `output` holds the finished file; on failure nothing is written there and the
/// scratch directory is removed (unless `keep_temp`). The input is only ever read.
pub fn transcode(
    input: &Path,
    output: &Path,
    options: &TranscodeOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> Result<TranscodeReport, Error> {
    let started = Instant::now();
    let container = check_output_path(input, output, options.existing_output)?;
    // A run of this command that was SIGKILLed while writing the output left its partial file.
    crate::atomic_file::AtomicFile::remove_stale(output);
    // The settings are checked before the (possibly long) probe; prepare_job checks them again
    // with everything else, as the Lambda runner's analyze does.
    if !container.allows(options.settings.codec) {
        return Err(Error::request(
            output,
            format!(
                "a .{} file cannot hold {} video",
                container.muxer_name(),
                options.settings.codec
            ),
        ));
    }
    options
        .settings
        .validate()
        .map_err(|problem| Error::request(output, problem))?;
    let mut stages = StageSeconds::default();

    let info = probe::probe(input)?;
    stages.probe = started.elapsed().as_secs_f64();
    let planning = Instant::now();
    let job = engine::prepare_job(
        &Source::file(input)?,
        info,
        input,
        output,
        container,
        &options.settings,
        &options.plan,
    )?;
    let (plan, tree, info) = (&job.plan, job.tree, &job.info);
    let (workers, threads) =
        choose_parallelism(options.workers, options.cores, plan.segments.len());
    let settings = EncodeSettings {
        threads,
        ..job.settings.clone()
    };
    stages.plan = planning.elapsed().as_secs_f64();
    on_progress(Progress::Planned {
        frames: plan.frame_count,
        segments: plan.segments.len() as u32,
        merges: tree.merges_needed(),
        duration_seconds: info.video.duration_seconds(),
    });

    let scratch = if options.resume {
        Scratch::Named(resume_dir(
            &options.temp_root.clone().unwrap_or_else(std::env::temp_dir),
            resume_key(input, container, &settings, plan, &job.audio_actions),
        )?)
    } else {
        Scratch::Temp(
            match &options.temp_root {
                Some(root) => tempfile::Builder::new().prefix("treemux-").tempdir_in(root),
                None => tempfile::Builder::new().prefix("treemux-").tempdir(),
            }
            .map_err(|source| Error::Io {
                path: options.temp_root.clone().unwrap_or_else(std::env::temp_dir),
                source,
            })?,
        )
    };
    let run = Run {
        job: &job,
        info,
        plan,
        tree,
        settings: &settings,
        layout: ScratchLayout::new(scratch.path()),
        crashes: CrashPlan::new(options.fault.into_iter().collect()),
        interrupt: options.interrupt.clone(),
        store: InMemoryStateStore::new(),
        started,
        failure: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        outcomes: Mutex::new(Outcomes::default()),
        on_progress,
    };
    let result = run
        .execute(workers, options.resume)
        .and_then(|mut outcomes| {
            let source = Source::file(&job.info.path)?;
            run.finish_audio(&source, &mut outcomes)?;
            on_progress(Progress::Muxing);
            let muxing = Instant::now();
            let remux = engine::finish_root(
                &source,
                &job,
                &run.layout,
                MuxTarget::File(output.to_owned()),
            )?;
            Ok((outcomes, remux, muxing.elapsed().as_secs_f64()))
        });
    let temp_dir = if options.keep_temp {
        Some(scratch.keep())
    } else {
        // A resumable scratch directory outlives a failure (run again with --resume to reuse
        // it) and goes with success.
        scratch.finish(result.is_ok());
        None
    };
    let (outcomes, remux, remux_seconds) = result?;

    stages.remux = remux_seconds;
    stages.convert = span_of(&outcomes.timeline, "segment");
    stages.merge = outcomes
        .timeline
        .iter()
        .filter(|t| t.kind == "merge" || t.kind == "rename")
        // A fold from +0.0: an empty f64 `sum` is -0.0, which prints as "-0.00".
        .fold(0.0, |total, t| total + (t.end_seconds - t.start_seconds));
    stages.audio = outcomes.audio.as_ref().map_or(0.0, |a| a.seconds);
    stages.total = started.elapsed().as_secs_f64();
    let mut segments = outcomes.segments;
    segments.sort_by_key(|s| s.index);
    // What the output cannot keep, as the Lambda runner records it.
    let warnings = job.warnings();
    let JobSpec { info, plan, .. } = job;
    Ok(TranscodeReport {
        input: input.to_owned(),
        output: output.to_owned(),
        output_bytes: remux.bytes,
        source: info,
        plan,
        tree,
        workers,
        settings,
        segments,
        merges: outcomes.merges,
        audio: outcomes.audio,
        remux,
        warnings,
        stages,
        timeline: outcomes.timeline,
        reused: outcomes.reused,
        temp_dir,
    })
}

/// The scratch directory: a fresh temporary one, or the named one `--resume` reuses.
enum Scratch {
    Temp(tempfile::TempDir),
    Named(PathBuf),
}

impl Scratch {
    fn path(&self) -> &Path {
        match self {
            Self::Temp(dir) => dir.path(),
            Self::Named(dir) => dir,
        }
    }

    fn keep(self) -> PathBuf {
        match self {
            Self::Temp(dir) => dir.keep(),
            Self::Named(dir) => dir,
        }
    }

    /// Removes the directory, except a resumable one after a failure.
    fn finish(self, succeeded: bool) {
        match self {
            Self::Temp(dir) => drop(dir),
            Self::Named(dir) if succeeded => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Named(_) => {}
        }
    }
}

/// A stable 64-bit FNV-1a hash (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Identifies a run for `--resume`: the same input file (path, size, modification time), the
/// same output container, encoder settings, plan and audio actions give the same key; anything
/// else gives another, so stale work is never reused.
fn resume_key(
    input: &Path,
    container: Container,
    settings: &EncodeSettings,
    plan: &SegmentPlan,
    audio_actions: &[AudioAction],
) -> u64 {
    let file = std::fs::canonicalize(input).unwrap_or_else(|_| input.to_owned());
    let (size, modified) = std::fs::metadata(input).map_or((0, 0), |meta| {
        let modified = meta
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos());
        (meta.len(), modified)
    });
    let identity = format!(
        "{}\n{size}\n{modified}\n{}\n{}\n{}\n{audio_actions:?}",
        file.display(),
        container.muxer_name(),
        serde_json::to_string(settings).unwrap_or_default(),
        serde_json::to_string(&plan.segments).unwrap_or_default(),
    );
    fnv1a(identity.as_bytes(), 0xcbf2_9ce4_8422_2325)
}

/// Creates (or, resuming, accepts) `root/treemux-resume-<key>`, private to this user.
fn resume_dir(root: &Path, key: u64) -> Result<PathBuf, Error> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let dir = root.join(format!("treemux-resume-{key:016x}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            // The name is predictable, so only a directory this user made, that nobody else
            // can write, is trusted with work to reuse.
            let meta = std::fs::symlink_metadata(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.is_dir() && meta.uid() == me && meta.mode() & 0o077 == 0 {
                Ok(dir)
            } else {
                Err(Error::request(
                    &dir,
                    "exists but is not a private directory of this user; remove it to resume",
                ))
            }
        }
        Err(source) => Err(Error::Io { path: dir, source }),
    }
}

fn span_of(timeline: &[TaskSpan], kind: &str) -> f64 {
    let spans = timeline.iter().filter(|t| t.kind == kind);
    let start = spans
        .clone()
        .map(|t| t.start_seconds)
        .fold(f64::INFINITY, f64::min);
    let end = spans
        .map(|t| t.end_seconds)
        .fold(f64::NEG_INFINITY, f64::max);
    if end >= start {
        end - start
    } else {
        0.0
    }
}

#[derive(Default)]
struct Outcomes {
    segments: Vec<SegmentReport>,
    merges: Vec<(NodeId, MergeKind, Option<MergeReport>)>,
    audio: Option<AudioReport>,
    timeline: Vec<TaskSpan>,
    reused: Vec<NodeId>,
}

/// What a resumed run found in its scratch directory.
#[derive(Default)]
struct Resumed {
    /// Finished nodes with no finished ancestor: the workers climb on from these.
    frontier: Vec<NodeId>,
    /// Leaves that are done or under a done node: not encoded again.
    covered_leaves: std::collections::BTreeSet<u32>,
    /// The report of an audio extraction that finished (its file and its report are both on
    /// disk): the audio is muxed from that file, not extracted again.
    audio: Option<AudioReport>,
}

/// One run's shared state, borrowed by every worker task.
struct Run<'a> {
    job: &'a JobSpec,
    info: &'a MediaInfo,
    plan: &'a SegmentPlan,
    tree: MergeTree,
    /// The job's settings with this machine's encoder threads per worker.
    settings: &'a EncodeSettings,
    layout: ScratchLayout,
    crashes: CrashPlan,
    interrupt: Option<Arc<AtomicBool>>,
    store: InMemoryStateStore,
    started: Instant,
    failure: Mutex<Option<Error>>,
    cancelled: AtomicBool,
    outcomes: Mutex<Outcomes>,
    on_progress: &'a (dyn Fn(Progress) + Sync),
}

const JOB: &str = "local";

impl Run<'_> {
    /// What an earlier run left in the scratch directory ([`engine::scan_finished`]): files are
    /// only ever renamed into place when complete, so a node is either done or not.
    fn scan_for_resume(&self) -> Resumed {
        let (frontier, covered_leaves) = engine::scan_finished(&self.tree, &self.layout);
        Resumed {
            frontier,
            covered_leaves,
            audio: self.layout.finished_audio(),
        }
    }

    fn execute(&self, workers: usize, resume: bool) -> Result<Outcomes, Error> {
        pollster::block_on(self.store.create_pairs(JOB, &self.tree))?;
        let resumed = if resume {
            self.scan_for_resume()
        } else {
            Resumed::default()
        };
        {
            let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
            outcomes.reused = resumed.frontier.clone();
            outcomes.audio = resumed.audio.clone();
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("treemux-worker-{i}"))
            .build()
            .map_err(|error| Error::Io {
                path: self.layout.dir.clone(),
                source: std::io::Error::other(error),
            })?;
        pool.scope_fifo(|scope| {
            // (When the segments carry the audio, it is joined after the pool instead.)
            if !self.info.audio.is_empty()
                && !self.job.audio_from_segments()
                && resumed.audio.is_none()
            {
                scope.spawn_fifo(|_| self.guarded(|| self.extract_audio()));
            }
            for &node in &resumed.frontier {
                scope.spawn_fifo(move |_| self.guarded(|| self.climb_from(node)));
            }
            for index in self.plan.encode_order() {
                if !resumed.covered_leaves.contains(&index) {
                    scope.spawn_fifo(move |_| self.guarded(|| self.encode_and_climb(index)));
                }
            }
        });
        if let Some(error) = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(error);
        }
        Ok(std::mem::take(
            &mut *self.outcomes.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// Runs a task unless the run already failed or was interrupted; records the first failure
    /// and stops the rest.
    fn guarded(&self, task: impl FnOnce() -> Result<(), Error>) {
        if self.cancelled.load(Ordering::SeqCst) {
            return;
        }
        let result = if self.interrupted() {
            Err(Error::Interrupted {
                path: self.info.path.clone(),
            })
        } else {
            task()
        };
        if let Err(error) = result {
            self.cancelled.store(true, Ordering::SeqCst);
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(error);
        }
    }

    fn timed<T>(
        &self,
        kind: &str,
        target: String,
        work: impl FnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let start = self.started.elapsed().as_secs_f64();
        let result = work()?;
        let span = TaskSpan {
            kind: kind.to_owned(),
            target,
            worker: rayon::current_thread_index().unwrap_or(0),
            start_seconds: start,
            end_seconds: self.started.elapsed().as_secs_f64(),
        };
        self.outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .timeline
            .push(span);
        Ok(result)
    }

    fn extract_audio(&self) -> Result<(), Error> {
        let produced = self.timed("audio", "all tracks".into(), || {
            engine::extract_audio(&Source::file(&self.job.info.path)?, self.job, &self.layout)
        })?;
        let report = match produced {
            Produced::Made(report) => report,
            Produced::Found => self.layout.finished_audio(),
        };
        self.outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .audio = report;
        (self.on_progress)(Progress::AudioDone);
        Ok(())
    }

    /// After the pool: the audio the segments carried, joined once (found when an earlier run
    /// joined it, or when it was extracted beside the segments), into `outcomes`.
    fn finish_audio(&self, source: &Source, outcomes: &mut Outcomes) -> Result<(), Error> {
        let start_seconds = self.started.elapsed().as_secs_f64();
        match engine::finish_audio(source, self.job, &self.layout)? {
            Produced::Made(Some(report)) => {
                outcomes.audio = Some(report);
                outcomes.timeline.push(TaskSpan {
                    kind: "audio".into(),
                    target: "all tracks".into(),
                    worker: 0,
                    start_seconds,
                    end_seconds: self.started.elapsed().as_secs_f64(),
                });
                (self.on_progress)(Progress::AudioDone);
            }
            Produced::Made(None) => {}
            Produced::Found => {
                if outcomes.audio.is_none() {
                    outcomes.audio = self.layout.finished_audio();
                }
            }
        }
        Ok(())
    }

    fn encode_and_climb(&self, index: u32) -> Result<(), Error> {
        let leaf = NodeId::leaf(index);
        let on_frame = |_frames: u64| {
            (self.on_progress)(Progress::FrameEncoded);
            if self.interrupted() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let produced = self.timed("segment", index.to_string(), || {
            engine::produce_segment(
                &Source::file(&self.job.info.path)?,
                self.job,
                self.settings,
                &self.layout,
                index,
                &self.crashes,
                &on_frame,
            )
        })?;
        if let Produced::Made(report) = produced {
            self.outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .segments
                .push(report);
        }
        (self.on_progress)(Progress::SegmentDone { index });
        self.climb_from(leaf)
    }

    /// `finished` is complete: confirm it to its pair and merge up the tree while this worker
    /// completes pairs.
    fn climb_from(&self, finished: NodeId) -> Result<(), Error> {
        let mut finished = finished;
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return Ok(());
            }
            if self.interrupted() {
                return Err(Error::Interrupted {
                    path: self.info.path.clone(),
                });
            }
            let next = pollster::block_on(engine::node_finished(
                &self.store,
                JOB,
                &self.tree,
                finished,
                &self.crashes,
            ))?;
            match next {
                NextStep::Merge { node, child } => {
                    self.merge(node)?;
                    pollster::block_on(mark_merged(&self.store, JOB, node, child))?;
                    (self.on_progress)(Progress::MergeDone { node });
                    finished = node;
                }
                NextStep::Done | NextStep::MergeAudio => return Ok(()),
            }
        }
    }

    /// Produces `node` from its children ([`engine::produce_pair`]: an index, no video copied).
    fn merge(&self, node: NodeId) -> Result<(), Error> {
        let label = match self.tree.merge_kind(node) {
            MergeKind::Rename => "rename",
            _ => "merge",
        };
        let produced = self.timed(label, node.to_string(), || {
            engine::produce_pair(&self.tree, &self.layout, node, &self.crashes)
        })?;
        if let Produced::Made((kind, report)) = produced {
            self.outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .merges
                .push((node, kind, report));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallelism_shares_cores_between_workers() {
        assert_eq!(choose_parallelism(None, 2, 8), (2, 1));
        assert_eq!(choose_parallelism(Some(1), 2, 8), (1, 2));
        assert_eq!(choose_parallelism(None, 8, 2), (2, 4));
        assert_eq!(choose_parallelism(Some(0), 4, 3), (1, 4));
    }
}
