//! A local run's worker pool: segments encoded longest first, each worker confirming what it
//! finished and climbing the merge tree as far as it completes pairs (over the in-memory state
//! store and the engine's tasks), the audio beside them, the first failure or an interrupt
//! stopping the rest, and every task on the timeline.

use super::{Progress, TaskSpan};
use crate::engine::{self, JobSpec, Produced, ScratchLayout};
use crate::error::Error;
use crate::fault::CrashPlan;
use crate::media::audio::AudioReport;
use crate::media::convert::SegmentReport;
use crate::media::merge::MergeReport;
use crate::media::probe::MediaInfo;
use crate::media::source::Source;
use crate::names::TaskKind;
use crate::plan::SegmentPlan;
use crate::settings::EncodeSettings;
use crate::state::{InMemoryStateStore, StateStore};
use crate::steps::{mark_merged, NextStep};
use crate::tree::{MergeKind, MergeTree, NodeId};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
pub(super) struct Outcomes {
    pub(super) segments: Vec<SegmentReport>,
    pub(super) merges: Vec<(NodeId, MergeKind, Option<MergeReport>)>,
    pub(super) audio: Option<AudioReport>,
    pub(super) timeline: Vec<TaskSpan>,
    pub(super) reused: Vec<NodeId>,
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
pub(super) struct Run<'a> {
    pub(super) job: &'a JobSpec,
    pub(super) info: &'a MediaInfo,
    pub(super) plan: &'a SegmentPlan,
    pub(super) tree: MergeTree,
    /// The job's settings with this machine's encoder threads per worker.
    pub(super) settings: &'a EncodeSettings,
    pub(super) layout: ScratchLayout,
    pub(super) crashes: CrashPlan,
    pub(super) interrupt: Option<Arc<AtomicBool>>,
    pub(super) store: InMemoryStateStore,
    pub(super) started: Instant,
    pub(super) failure: Mutex<Option<Error>>,
    pub(super) cancelled: AtomicBool,
    pub(super) outcomes: Mutex<Outcomes>,
    pub(super) on_progress: &'a (dyn Fn(Progress) + Sync),
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

    pub(super) fn execute(&self, workers: usize, resume: bool) -> Result<Outcomes, Error> {
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
        kind: TaskKind,
        target: String,
        work: impl FnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let start = self.started.elapsed().as_secs_f64();
        let result = work()?;
        let span = TaskSpan {
            kind,
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
        let produced = self.timed(TaskKind::Audio, "all tracks".into(), || {
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
    pub(super) fn finish_audio(
        &self,
        source: &Source,
        outcomes: &mut Outcomes,
    ) -> Result<(), Error> {
        let start_seconds = self.started.elapsed().as_secs_f64();
        match engine::finish_audio(source, self.job, &self.layout)? {
            Produced::Made(Some(report)) => {
                outcomes.audio = Some(report);
                outcomes.timeline.push(TaskSpan {
                    kind: TaskKind::Audio,
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
        let produced = self.timed(TaskKind::Segment, index.to_string(), || {
            engine::produce_segment(
                &Source::file(&self.job.info.path)?,
                self.job,
                self.settings,
                &self.layout,
                index,
                &self.crashes,
                &engine::KeptInScratch,
                &on_frame,
            )
        })?;
        // Every frame of a segment encoded here was reported as it was encoded.
        let unreported_frames = match produced {
            Produced::Made(report) => {
                self.outcomes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .segments
                    .push(report);
                0
            }
            Produced::Found => self
                .plan
                .segments
                .get(index as usize)
                .map_or(0, |segment| segment.frames),
        };
        (self.on_progress)(Progress::SegmentDone {
            index,
            unreported_frames,
        });
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
            MergeKind::Rename => TaskKind::Rename,
            _ => TaskKind::Merge,
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
