//! Injected faults, for tests and soak runs.
//!
//! `TREEMUX_WORKER_FAULTS`, comma-separated:
//! `fail-once:FUNCTION[:SEGMENT]` answers the first matching task with `TreemuxTransient`
//! without running it; `fail-always:FUNCTION[:SEGMENT]` answers every matching task with
//! `TreemuxMediaFailure`; `duplicate:FUNCTION` runs every matching task twice, as a duplicated
//! delivery would, and answers with the second result (Step Functions keeps a task's last
//! invocation's result; the claim protocol relies on that); `crash:POINT` kills the whole worker
//! process with `abort` at a [`CrashPoint`] inside a handler (e.g. `crash:after-segment:1`,
//! `crash:mid-encode:2:5`, `crash:after-merge:0`), as a Lambda sandbox that vanishes would. The
//! task's message is not deleted, so it comes back after the visibility timeout to whichever
//! worker polls next, carrying the same task token. `lose:FUNCTION` takes every matching task and
//! never answers it, as an invocation lost on the way: the execution stops making progress and
//! waits for its `TimeoutSeconds` or a StopExecution. `throttle:FUNCTION:TIMES` answers the
//! first TIMES attempts of each task of FUNCTION (each segment's, for split-and-convert) with `Lambda.TooManyRequestsException` without running them, as
//! Lambda does when the account's concurrency is used up: the state machine's throttling retrier
//! must outlast them.
//!
//! `fail-reads` makes every object read fail as S3 answering 503 would (transient): analyze then
//! fails after it created the job record, on every attempt.

use serde_json::Value;
use std::collections::HashSet;
use std::sync::Mutex;
use treemux_core::fault::{CrashPlan, CrashPoint};
use treemux_core::names::Function;
use treemux_functions::error::HandlerError;
use treemux_functions::ports::{ObjectError, ObjectHead, ObjectStore, ObjectVersion};
use treemux_functions::upload::MultipartStore;

#[derive(Clone, Debug, PartialEq, Eq)]
enum FaultRule {
    FailOnce {
        function: Function,
        segment: Option<u32>,
    },
    FailAlways {
        function: Function,
        segment: Option<u32>,
    },
    Duplicate {
        function: Function,
    },
    /// The task is never answered, as an invocation lost on the way: the execution waits until
    /// its `TimeoutSeconds` (or a StopExecution).
    Lose {
        function: Function,
    },
    /// The first `times` attempts of each task are refused as Lambda refuses an invocation over
    /// the account's concurrency.
    Throttle {
        function: Function,
        times: u32,
    },
}

/// The error a `fail-reads` fault answers every object read with.
pub const FAILED_READ: &str = "injected fault: S3 answered 503 Slow Down";

/// The error Lambda's service answers a throttled invocation with (the state machine's
/// throttling retrier matches it).
pub const THROTTLED_ERROR: &str = "Lambda.TooManyRequestsException";

/// Injected faults (see the module docs).
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
    fired: Mutex<HashSet<(Function, Option<u32>)>>,
    /// Times each task (function, segment) was throttled so far.
    throttled: Mutex<std::collections::HashMap<(Function, Option<u32>), u32>>,
    crash_points: Vec<CrashPoint>,
    /// `fail-reads`: every object read fails with a transient error ([`FaultyObjects`]).
    fail_reads: bool,
}

/// What to do with one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    Run,
    RunTwice,
    Fail(HandlerError),
    /// Leave the task unanswered.
    Lose,
    /// Answer with [`THROTTLED_ERROR`] without running the task.
    Throttle,
}

impl Faults {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        let mut crash_points = Vec::new();
        let mut fail_reads = false;
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            if rule == "fail-reads" {
                fail_reads = true;
                continue;
            }
            if let Some(point) = rule.strip_prefix("crash:") {
                crash_points.push(CrashPoint::parse(point).ok_or_else(|| {
                    format!(
                        "fault {rule:?}: expected crash:POINT, POINT one of {}",
                        CrashPoint::SYNTAX
                    )
                })?);
                continue;
            }
            let parts: Vec<&str> = rule.split(':').collect();
            let function_named = |name: &str| {
                Function::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = Function::ALL.iter().map(|f| f.name()).collect();
                    format!(
                        "fault {rule:?}: no function named {name:?} ({})",
                        known.join(", ")
                    )
                })
            };
            if let ["throttle", function, times] = parts.as_slice() {
                rules.push(FaultRule::Throttle {
                    function: function_named(function)?,
                    times: times
                        .parse()
                        .map_err(|_| format!("fault {rule:?}: TIMES must be a number"))?,
                });
                continue;
            }
            let segment = match parts.get(2) {
                Some(text) => Some(
                    text.parse()
                        .map_err(|_| format!("fault {rule:?}: segment must be a number"))?,
                ),
                None => None,
            };
            let function = function_named(
                parts
                    .get(1)
                    .ok_or_else(|| format!("fault {rule:?}: expected KIND:FUNCTION[:SEGMENT]"))?,
            )?;
            rules.push(match parts[0] {
                "fail-once" => FaultRule::FailOnce { function, segment },
                "fail-always" => FaultRule::FailAlways { function, segment },
                "duplicate" => FaultRule::Duplicate { function },
                "lose" => FaultRule::Lose { function },
                kind => {
                    return Err(format!(
                        "fault {rule:?}: unknown kind {kind:?} (fail-once, fail-always, duplicate, lose, throttle, crash, fail-reads)"
                    ))
                }
            });
        }
        Ok(Self {
            rules,
            fired: Mutex::new(HashSet::new()),
            throttled: Mutex::new(std::collections::HashMap::new()),
            crash_points,
            fail_reads,
        })
    }

    /// `objects` with the `fail-reads` fault applied (unchanged without it).
    pub fn objects<O: ObjectStore>(&self, objects: O) -> FaultyObjects<O> {
        FaultyObjects {
            inner: objects,
            fail_reads: self.fail_reads,
        }
    }

    /// The `crash:` points, for the handlers' [`treemux_functions::handlers::Config::crashes`].
    pub fn crash_plan(&self) -> CrashPlan {
        CrashPlan::new(self.crash_points.clone())
    }

    /// Decides what happens to a task of `function` with `input`.
    pub fn decide(&self, function: Function, input: &Value) -> FaultAction {
        let segment = input
            .get("segment")
            .and_then(Value::as_u64)
            .map(|s| s as u32);
        let matches = |name: &Function, wanted: &Option<u32>| {
            *name == function && (wanted.is_none() || *wanted == segment)
        };
        for rule in &self.rules {
            match rule {
                FaultRule::FailOnce {
                    function: name,
                    segment: wanted,
                } if matches(name, wanted) => {
                    let mut fired = self.fired.lock().unwrap_or_else(|p| p.into_inner());
                    if fired.insert((function, segment)) {
                        return FaultAction::Fail(HandlerError::transient(format!(
                            "injected fault: {function} fails once"
                        )));
                    }
                }
                FaultRule::FailAlways {
                    function: name,
                    segment: wanted,
                } if matches(name, wanted) => {
                    return FaultAction::Fail(HandlerError::media(format!(
                        "injected fault: {function} always fails"
                    )));
                }
                FaultRule::Duplicate { function: name } if *name == function => {
                    return FaultAction::RunTwice
                }
                FaultRule::Lose { function: name } if *name == function => {
                    return FaultAction::Lose
                }
                FaultRule::Throttle {
                    function: name,
                    times,
                } if *name == function => {
                    let mut throttled = self.throttled.lock().unwrap_or_else(|p| p.into_inner());
                    let count = throttled.entry((function, segment)).or_insert(0);
                    if *count < *times {
                        *count += 1;
                        return FaultAction::Throttle;
                    }
                }
                _ => {}
            }
        }
        FaultAction::Run
    }
}

/// An object store whose reads all fail with a transient error under the `fail-reads` fault, as
/// S3 answering 503 would: analyze then fails after it created the job record, on every attempt.
#[derive(Clone, Debug)]
pub struct FaultyObjects<O> {
    inner: O,
    fail_reads: bool,
}

impl<O> FaultyObjects<O> {
    /// Under `fail-reads`, the transient error every read answers.
    fn refuse_read(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        if self.fail_reads {
            return Err(ObjectError::Failed {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: FAILED_READ.to_owned(),
            });
        }
        Ok(())
    }
}

impl<O: ObjectStore> ObjectStore for FaultyObjects<O> {
    async fn get_to_path(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        path: &std::path::Path,
    ) -> Result<u64, ObjectError> {
        self.refuse_read(bucket, key)?;
        self.inner.get_to_path(bucket, key, version, path).await
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> Result<ObjectHead, ObjectError> {
        self.refuse_read(bucket, key)?;
        self.inner.head(bucket, key, version).await
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ObjectError> {
        self.refuse_read(bucket, key)?;
        self.inner
            .read_range(bucket, key, version, offset, len)
            .await
    }

    async fn put_from_path(
        &self,
        path: &std::path::Path,
        bucket: &str,
        key: &str,
    ) -> Result<(), ObjectError> {
        self.inner.put_from_path(path, bucket, key).await
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, ObjectError> {
        self.inner.exists(bucket, key).await
    }
    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), ObjectError> {
        self.inner.delete_objects(bucket, keys).await
    }
}

/// Uploads are not affected by `fail-reads`.
impl<O: MultipartStore> MultipartStore for FaultyObjects<O> {
    async fn create_upload(&self, bucket: &str, key: &str) -> Result<String, ObjectError> {
        self.inner.create_upload(bucket, key).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, ObjectError> {
        self.inner
            .upload_part(bucket, key, upload_id, number, bytes)
            .await
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ObjectError> {
        self.inner
            .complete_upload(bucket, key, upload_id, parts)
            .await
    }

    async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        self.inner.abort_upload(bucket, key, upload_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_fire_as_documented() {
        let faults =
            Faults::parse("fail-once:split-and-convert:1, duplicate:merge-video").expect("parse");
        let segment = |n: u32| serde_json::json!({"job_id": "a", "segment": n});
        assert!(
            matches!(faults.decide(Function::SplitAndConvert, &segment(1)), FaultAction::Fail(e) if e.name() == "TreemuxTransient")
        );
        assert_eq!(
            faults.decide(Function::SplitAndConvert, &segment(1)),
            FaultAction::Run,
            "only once"
        );
        assert_eq!(
            faults.decide(Function::SplitAndConvert, &segment(2)),
            FaultAction::Run
        );
        assert_eq!(
            faults.decide(Function::MergeVideo, &serde_json::json!({})),
            FaultAction::RunTwice
        );
        assert!(Faults::parse("explode:x").is_err());
        assert!(
            Faults::parse("fail-once:split_audio").is_err(),
            "no such function"
        );
        let losing = Faults::parse("lose:split-audio").expect("parse");
        assert_eq!(
            losing.decide(Function::SplitAudio, &serde_json::json!({})),
            FaultAction::Lose
        );
        assert_eq!(
            losing.decide(Function::MergeAudio, &serde_json::json!({})),
            FaultAction::Run
        );
        let crashing =
            Faults::parse("crash:after-segment:1,crash:mid-encode:0:5,fail-once:merge-video")
                .expect("parse");
        assert!(!crashing.crash_plan().is_empty());
        assert_eq!(
            crashing.decide(Function::SplitAndConvert, &segment(1)),
            FaultAction::Run,
            "a crash fires inside the handler, not before it"
        );
        assert!(Faults::parse("crash:after-everything").is_err());
        assert!(Faults::parse("").expect("parse").crash_plan().is_empty());
        let always = Faults::parse("fail-always:merge-audio").expect("parse");
        assert!(
            matches!(always.decide(Function::MergeAudio, &serde_json::json!({})), FaultAction::Fail(e) if e.name() == "TreemuxMediaFailure")
        );
        let throttling = Faults::parse("throttle:split-and-convert:2").expect("parse");
        let decisions: Vec<FaultAction> = (0..3)
            .map(|_| throttling.decide(Function::SplitAndConvert, &segment(0)))
            .collect();
        assert_eq!(
            decisions,
            [
                FaultAction::Throttle,
                FaultAction::Throttle,
                FaultAction::Run
            ]
        );
        assert!(Faults::parse("throttle:split-and-convert:many").is_err());
        assert!(Faults::parse("fail-reads").expect("parse").fail_reads);
        assert!(
            !Faults::parse("fail-once:analyze")
                .expect("parse")
                .fail_reads
        );
    }
}
