//! **Plain data.** The names both runners share: the pipeline's stages (the seconds a run
//! reports), the kinds of task on a run's timeline, and the Lambda functions (the state
//! machine's tasks, which the SQS worker dispatches by name). One enum each, so a stage, a task
//! or a function is called the same everywhere; their serde names are the strings the JSON
//! forms (`transcode --json`, the job record, bench reports) have always used, except where the
//! runners disagreed (see [`Stage`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stage of a run, whose wall-clock seconds both runners report: the local runner in
/// [`crate::local::StageSeconds`] (one field per stage it has), the Lambda runner in the job
/// record's `stage_seconds` (summed over tasks, keyed by these names).
///
/// The job record used `split_audio` and `merge_audio` where the local run said `audio` and
/// `remux`; both now say `audio` and `remux` (old records still read: the old names are aliases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading the source's index and packets (local runner; the Lambda runner's
    /// [`Stage::Analyze`] includes it).
    Probe,
    /// Planning the segments (local runner; inside [`Stage::Analyze`] on Lambda).
    Plan,
    /// The Lambda runner's analyze task: probe, plan and starting the execution.
    Analyze,
    /// Encoding the segments (local: the first segment's start to the last one's end; Lambda:
    /// the sum over segment tasks).
    Convert,
    /// Merging pairs (the sum over merges and renames).
    Merge,
    /// Extracting or joining the audio (local: the audio task; Lambda: split-audio).
    #[serde(alias = "split_audio")]
    Audio,
    /// Writing the output (local: the final mux; Lambda: merge-audio, which also joins the
    /// segments' audio pieces when they carried the audio, and uploads).
    #[serde(alias = "merge_audio")]
    Remux,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Probe,
        Stage::Plan,
        Stage::Analyze,
        Stage::Convert,
        Stage::Merge,
        Stage::Audio,
        Stage::Remux,
    ];

    /// The stage's name in JSON and logs, e.g. `convert`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Probe => "probe",
            Stage::Plan => "plan",
            Stage::Analyze => "analyze",
            Stage::Convert => "convert",
            Stage::Merge => "merge",
            Stage::Audio => "audio",
            Stage::Remux => "remux",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a task on a run's timeline did ([`crate::local::TaskSpan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Encoded a segment (target: its index).
    Segment,
    /// Joined a pair of nodes (target: the node, `L<level>-<index>`).
    Merge,
    /// Took a pair's left child as the pair (its right child is a placeholder).
    Rename,
    /// Extracted or joined every audio track.
    Audio,
}

impl TaskKind {
    pub const ALL: [TaskKind; 4] = [
        TaskKind::Segment,
        TaskKind::Merge,
        TaskKind::Rename,
        TaskKind::Audio,
    ];

    /// The kind's name in JSON, e.g. `segment`.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Segment => "segment",
            TaskKind::Merge => "merge",
            TaskKind::Rename => "rename",
            TaskKind::Audio => "audio",
        }
    }

    /// The stage the task's seconds count towards.
    pub fn stage(self) -> Stage {
        match self {
            TaskKind::Segment => Stage::Convert,
            TaskKind::Merge | TaskKind::Rename => Stage::Merge,
            TaskKind::Audio => Stage::Audio,
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Lambda function of the serverless runner: a task of the state machine
/// (`statemachine/treemux.asl.json`), a binary in `functions/src/bin/`, and what the SQS worker
/// dispatches a task message's `function` by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    Analyze,
    SplitAudio,
    SplitAndConvert,
    MergeVideo,
    MergeAudio,
    /// Fills and uploads a group of the output's parts (the root's parallel upload).
    UploadParts,
    JobFailed,
}

impl Function {
    pub const ALL: [Function; 7] = [
        Function::Analyze,
        Function::SplitAudio,
        Function::SplitAndConvert,
        Function::MergeVideo,
        Function::MergeAudio,
        Function::UploadParts,
        Function::JobFailed,
    ];

    /// The function's name (its binary, its log lines, the worker's messages), e.g.
    /// `split-and-convert`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Analyze => "analyze",
            Function::SplitAudio => "split-audio",
            Function::SplitAndConvert => "split-and-convert",
            Function::MergeVideo => "merge-video",
            Function::MergeAudio => "merge-audio",
            Function::UploadParts => "upload-parts",
            Function::JobFailed => "job-failed",
        }
    }

    /// The function called `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|function| function.name() == name)
    }

    /// The stage whose seconds the function's tasks add to the job record; `None` for
    /// job-failed, which does no work of the pipeline.
    pub fn stage(self) -> Option<Stage> {
        match self {
            Function::Analyze => Some(Stage::Analyze),
            Function::SplitAudio => Some(Stage::Audio),
            Function::SplitAndConvert => Some(Stage::Convert),
            Function::MergeVideo => Some(Stage::Merge),
            Function::MergeAudio => Some(Stage::Remux),
            // Part of the root's remux stage, which merge-audio records.
            Function::UploadParts | Function::JobFailed => None,
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_name<T: Serialize>(value: T) -> String {
        match serde_json::to_value(value).expect("serializes") {
            serde_json::Value::String(name) => name,
            other => panic!("not a string: {other}"),
        }
    }

    #[test]
    fn stage_names_round_trip() {
        let names: Vec<&str> = Stage::ALL.iter().map(|stage| stage.name()).collect();
        assert_eq!(
            names,
            ["probe", "plan", "analyze", "convert", "merge", "audio", "remux"]
        );
        for stage in Stage::ALL {
            assert_eq!(json_name(stage), stage.name());
            assert_eq!(stage.to_string(), stage.name());
            let back: Stage = serde_json::from_value(json_name(stage).into()).expect("reads");
            assert_eq!(back, stage);
        }
    }

    /// Job records written before the names were shared still read, as the shared names.
    #[test]
    fn the_old_lambda_stage_names_read_as_the_shared_ones() {
        let old = r#"{"analyze": 1.0, "split_audio": 2.0, "convert": 3.0, "merge": 4.0,
            "merge_audio": 5.0}"#;
        let seconds: std::collections::BTreeMap<Stage, f64> =
            serde_json::from_str(old).expect("old record");
        assert_eq!(seconds.get(&Stage::Audio), Some(&2.0));
        assert_eq!(seconds.get(&Stage::Remux), Some(&5.0));
        let written = serde_json::to_string(&seconds).expect("write");
        assert_eq!(
            written,
            r#"{"analyze":1.0,"convert":3.0,"merge":4.0,"audio":2.0,"remux":5.0}"#
        );
    }

    #[test]
    fn task_kind_names_round_trip() {
        let names: Vec<&str> = TaskKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(names, ["segment", "merge", "rename", "audio"]);
        for kind in TaskKind::ALL {
            assert_eq!(json_name(kind), kind.name());
            let back: TaskKind = serde_json::from_value(json_name(kind).into()).expect("reads");
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn function_names_round_trip() {
        let names: Vec<&str> = Function::ALL
            .iter()
            .map(|function| function.name())
            .collect();
        assert_eq!(
            names,
            [
                "analyze",
                "split-audio",
                "split-and-convert",
                "merge-video",
                "merge-audio",
                "upload-parts",
                "job-failed"
            ]
        );
        for function in Function::ALL {
            assert_eq!(json_name(function), function.name());
            assert_eq!(Function::parse(function.name()), Some(function));
            let back: Function = serde_json::from_value(json_name(function).into()).expect("reads");
            assert_eq!(back, function);
        }
        assert_eq!(Function::parse("split_audio"), None);
        assert_eq!(Function::parse(""), None);
    }

    /// Every function but job-failed and upload-parts (within the root's remux stage) reports
    /// its own stage, and no two the same one.
    #[test]
    fn each_function_reports_one_stage() {
        let stages: Vec<Stage> = Function::ALL.iter().filter_map(|f| f.stage()).collect();
        let distinct: std::collections::BTreeSet<Stage> = stages.iter().copied().collect();
        assert_eq!(stages.len(), Function::ALL.len() - 2);
        assert_eq!(Function::UploadParts.stage(), None);
        assert_eq!(distinct.len(), stages.len());
    }
}
