//! One test's isolated slice of the local stack: its own buckets, table, queues and state
//! machine on the shared moto server, and its own `treemux worker` process. In tests that kill
//! it ([`WorkerSetup::restart`]) a worker that dies is started again, as Lambda starts a new
//! sandbox; in any other test its exit is a failure.

use super::{endpoint, sdk};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use treemux_core::state::{JobRecord, JobStore};
use treemux_functions::asl;
use treemux_functions::aws::DynamoStore;

pub const CANARY_KEY_ID: &str = "AKIATREEMUXCANARY777";
pub const CANARY_SECRET: &str = "treemux-canary-secret-never-log-me";

/// Credentials and request signatures never reach the worker's log.
pub fn assert_no_secrets(log: &str) {
    for secret in [
        CANARY_KEY_ID,
        CANARY_SECRET,
        "X-Amz-Signature",
        "X-Amz-Credential",
        "Authorization:",
    ] {
        assert!(
            !log.contains(secret),
            "the worker log contains {secret:?}:\n{log}"
        );
    }
}

/// The value of field `name` in one text log line of the worker (`tracing`'s format:
/// `name=value`, or `name="value"` for a string), if it has one. A value runs to the next space
/// (the keys the tests use have none where it matters).
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or(""),
        None => rest.split(' ').next().unwrap_or(""),
    })
}

/// True when a line of `log` holds `message` and every one of `fields` with that value.
pub fn logged(log: &str, message: &str, fields: &[(&str, &str)]) -> bool {
    log.lines().any(|line| {
        line.contains(message)
            && fields
                .iter()
                .all(|(name, value)| field(line, name) == Some(*value))
    })
}

/// What the crash points in a worker's log say fired, in order (`after-segment:1`, …).
pub fn fired_crashes(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("injected crash, aborting"))
        .filter_map(|line| field(line, "crash_point"))
        .map(str::to_owned)
        .collect()
}

/// How a test's worker runs.
#[derive(Clone, Debug)]
pub struct WorkerSetup {
    /// `TREEMUX_WORKER_FAULTS`.
    pub faults: String,
    /// `TREEMUX_WORKER_VISIBILITY_SECONDS`: how soon a dead worker's tasks come back.
    pub visibility_seconds: u32,
    /// Start the worker again when it dies (tests that kill it). Otherwise a worker that exits
    /// fails the test: nothing may crash it by accident.
    pub restart: bool,
    /// More environment (`TREEMUX_CRF`, `TREEMUX_OUTPUT_PREFIX`, …), applied last.
    pub env: Vec<(String, String)>,
    /// Rewrites the rendered state machine before it is created (e.g. shorter retry delays, so a
    /// test of a retry policy's attempts does not wait its real minutes).
    pub definition: Option<fn(&mut serde_json::Value)>,
}

/// Calls `visit` on every retrier (each entry of a state's `Retry`) of `definition`.
pub fn for_each_retrier(
    definition: &mut serde_json::Value,
    visit: &mut impl FnMut(&mut serde_json::Value),
) {
    match definition {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(retriers)) = map.get_mut("Retry") {
                retriers.iter_mut().for_each(&mut *visit);
            }
            map.values_mut()
                .for_each(|value| for_each_retrier(value, visit));
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .for_each(|value| for_each_retrier(value, visit)),
        _ => {}
    }
}

/// Every retrier of `definition` waits one second between attempts, keeping its attempts: the
/// policy's shape at test speed.
pub fn one_second_retries(definition: &mut serde_json::Value) {
    for_each_retrier(definition, &mut |retrier| {
        retrier["IntervalSeconds"] = 1.into();
        retrier["BackoffRate"] = 1.0.into();
        if retrier.get("MaxDelaySeconds").is_some() {
            retrier["MaxDelaySeconds"] = 1.into();
        }
    });
}

impl WorkerSetup {
    pub fn faults(faults: &str) -> Self {
        Self {
            faults: faults.to_owned(),
            visibility_seconds: 60,
            restart: false,
            env: Vec::new(),
            definition: None,
        }
    }
}

struct Worker {
    child: Child,
    /// Fault rules the next start gets: the original ones minus the crashes that fired.
    faults: Vec<String>,
    restarts: u32,
}

pub struct Stack {
    pub name: String,
    /// Where the worker's job events arrive (EventBridge bus → rule → SQS).
    pub job_events: super::job_events::JobEventQueue,
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub store: DynamoStore,
    pub state_machine: String,
    pub upload_queue: String,
    pub input_bucket: String,
    pub output_bucket: String,
    /// Where the worker keeps segment files between tasks (TREEMUX_SEGMENT_BUCKET).
    pub segment_bucket: String,
    pub dir: tempfile::TempDir,
    worker_env: Mutex<WorkerEnv>,
    worker: Mutex<Worker>,
    restart: bool,
}

/// Everything a worker process of one stack is started with, apart from its faults.
struct WorkerEnv {
    table: String,
    output_bucket: String,
    state_machine: String,
    task_queue: String,
    upload_queue: String,
    scratch: PathBuf,
    segment_bucket: String,
    local_dir: PathBuf,
    event_bus: String,
    log: PathBuf,
    visibility_seconds: u32,
    extra: Vec<(String, String)>,
}

impl WorkerEnv {
    fn spawn(&self, faults: &[String]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        // `TREEMUX_TEST_WORKER_BIN`: another build of the worker (a measurement of an older one).
        let worker = std::env::var_os("TREEMUX_TEST_WORKER_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_treemux-worker").into());
        Command::new(worker)
            .arg("run")
            .env("AWS_ENDPOINT_URL", endpoint())
            // Canary credentials (moto accepts any): no log may ever contain them.
            .env("AWS_ACCESS_KEY_ID", CANARY_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", CANARY_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("TREEMUX_TABLE", &self.table)
            .env("TREEMUX_OUTPUT_BUCKET", &self.output_bucket)
            .env("TREEMUX_STATE_MACHINE_ARN", &self.state_machine)
            .env("TREEMUX_TASK_QUEUE_URL", &self.task_queue)
            .env("TREEMUX_UPLOAD_QUEUE_URL", &self.upload_queue)
            .env("TREEMUX_SCRATCH_DIR", &self.scratch)
            .env("TREEMUX_SEGMENT_BUCKET", &self.segment_bucket)
            .env("TREEMUX_LOCAL_DIR", &self.local_dir)
            .env("TREEMUX_EVENT_BUS", &self.event_bus)
            .env("TREEMUX_PROGRESS_EVENT_SECONDS", "0")
            .env("TREEMUX_PRESET", "veryfast")
            .env("TREEMUX_THREADS", "1")
            .env("TREEMUX_MAX_SEGMENTS", "4")
            .env("TREEMUX_MIN_SEGMENT_SECONDS", "1")
            .env("TREEMUX_WORKER_CONCURRENCY", "2")
            .env(
                "TREEMUX_WORKER_VISIBILITY_SECONDS",
                self.visibility_seconds.to_string(),
            )
            .env("TREEMUX_WORKER_FAULTS", faults.join(","))
            .envs(self.extra.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("worker starts")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let worker = self.worker.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }
}

impl Stack {
    pub async fn new(test: &str, faults: &str) -> Self {
        Self::with_worker(test, WorkerSetup::faults(faults)).await
    }

    pub async fn with_worker(test: &str, setup: WorkerSetup) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "e2e-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )
        .replace('_', "-");
        let config = sdk().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let sfn = aws_sdk_sfn::Client::new(&config);
        let (input_bucket, output_bucket, segment_bucket, table) = (
            format!("{name}-in"),
            format!("{name}-out"),
            format!("{name}-seg"),
            format!("{name}-jobs"),
        );
        for bucket in [&input_bucket, &output_bucket, &segment_bucket] {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("create bucket");
        }
        super::create_table(&dynamodb, &table).await;
        let mut queues = Vec::new();
        for suffix in ["tasks", "uploads"] {
            queues.push(
                sqs.create_queue()
                    .queue_name(format!("{name}-{suffix}"))
                    .send()
                    .await
                    .expect("queue")
                    .queue_url
                    .expect("url"),
            );
        }
        let (task_queue, upload_queue) = (queues[0].clone(), queues[1].clone());
        let upload_queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}-uploads");
        s3.put_bucket_notification_configuration()
            .bucket(&input_bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(upload_queue_arn)
                            .events(Event::from("s3:ObjectCreated:*"))
                            .build()
                            .expect("queue config"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("notification");
        let mut definition = asl::render_for_worker(&task_queue).expect("render");
        if let Some(rewrite) = setup.definition {
            rewrite(&mut definition);
        }
        let state_machine = sfn
            .create_state_machine()
            .name(&name)
            .definition(definition.to_string())
            .role_arn("arn:aws:iam::123456789012:role/treemux-local")
            .send()
            .await
            .expect("state machine")
            .state_machine_arn;
        let job_events = super::job_events::JobEventQueue::create(&config, &name).await;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("efs")).expect("scratch");
        let store = DynamoStore {
            client: dynamodb,
            table,
            ttl_seconds: 3600,
        };
        let faults: Vec<String> = setup
            .faults
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        let worker_env = WorkerEnv {
            table: store.table.clone(),
            output_bucket: output_bucket.clone(),
            state_machine: state_machine.clone(),
            task_queue: task_queue.clone(),
            upload_queue: upload_queue.clone(),
            scratch: dir.path().join("efs"),
            segment_bucket: segment_bucket.clone(),
            local_dir: dir.path().join("local"),
            event_bus: job_events.bus.clone(),
            log: dir.path().join("worker.log"),
            visibility_seconds: setup.visibility_seconds,
            extra: setup.env.clone(),
        };
        let child = worker_env.spawn(&faults);
        Stack {
            name,
            job_events,
            s3,
            sfn,
            store,
            state_machine,
            upload_queue,
            input_bucket,
            output_bucket,
            segment_bucket,
            dir,
            worker_env: Mutex::new(worker_env),
            worker: Mutex::new(Worker {
                child,
                faults,
                restarts: 0,
            }),
            restart: setup.restart,
        }
    }

    /// Starts the worker again if it died, without the crashes that already fired (a new
    /// sandbox runs the same code; the crash was the old one's).
    fn revive_worker(&self) {
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(Some(status)) = worker.child.try_wait() else {
            return;
        };
        assert!(
            self.restart,
            "{}: the worker exited ({status}) though nothing was meant to stop it; its log:\n{}",
            self.name,
            self.worker_log()
        );
        let mut remaining = worker.faults.clone();
        for fired in fired_crashes(&self.worker_log()) {
            if let Some(at) = remaining
                .iter()
                .position(|f| *f == format!("crash:{fired}"))
            {
                remaining.remove(at);
            }
        }
        worker.child = self
            .worker_env
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spawn(&remaining);
        worker.faults = remaining;
        worker.restarts += 1;
    }

    /// The running worker's process id (its `/proc/PID/io` counts what it wrote to scratch).
    pub fn worker_pid(&self) -> u32 {
        self.worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .child
            .id()
    }

    /// Kills the worker at once (SIGKILL); the supervisor starts a new one.
    pub fn kill_worker(&self) {
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }

    /// Stops the worker once it is idle and starts it again with `env` as its extra environment
    /// (other settings, as a redeploy would give the functions).
    pub fn restart_worker_with(&self, env: &[(&str, &str)]) {
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        let _ = worker.child.kill();
        let _ = worker.child.wait();
        let mut worker_env = self.worker_env.lock().unwrap_or_else(|p| p.into_inner());
        worker_env.extra = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        worker.child = worker_env.spawn(&worker.faults);
    }

    /// Waits until `count` executions have ended; returns each one's status and job record,
    /// oldest first.
    pub async fn finished_jobs(&self, count: usize) -> Vec<(String, JobRecord)> {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            self.revive_worker();
            let mut executions = self
                .sfn
                .list_executions()
                .state_machine_arn(&self.state_machine)
                .send()
                .await
                .expect("list")
                .executions;
            let ended = executions
                .iter()
                .filter(|e| e.status.as_str() != "RUNNING")
                .count();
            if ended >= count {
                executions.sort_by_key(|e| {
                    e.start_date.secs() * 1_000 + i64::from(e.start_date.subsec_nanos() / 1_000_000)
                });
                let mut jobs = Vec::new();
                for execution in executions {
                    let job = self
                        .store
                        .get_job(&execution.name)
                        .await
                        .expect("read job")
                        .expect("job record");
                    jobs.push((execution.status.as_str().to_owned(), job));
                }
                return jobs;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {ended} of {count} executions finished in time; worker log:\n{}",
                self.name,
                self.worker_log()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// How often the worker was started again after dying.
    pub fn worker_restarts(&self) -> u32 {
        self.worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .restarts
    }

    pub async fn upload(&self, key: &str, file: &Path) {
        self.upload_with_metadata(key, file, &[]).await;
    }

    /// [`Stack::upload`] with user metadata: `(name, value)` sent as `x-amz-meta-<name>`.
    pub async fn upload_with_metadata(&self, key: &str, file: &Path, metadata: &[(&str, &str)]) {
        let body = aws_sdk_s3::primitives::ByteStream::from_path(file)
            .await
            .expect("read sample");
        let mut put = self
            .s3
            .put_object()
            .bucket(&self.input_bucket)
            .key(key)
            .body(body);
        for (name, value) in metadata {
            put = put.metadata(*name, *value);
        }
        put.send().await.expect("upload");
    }

    /// Waits for the first execution to end, keeping the worker alive; returns its status and
    /// the job record.
    pub async fn finished_job(&self) -> (String, JobRecord) {
        self.finished_job_within(Duration::from_secs(180)).await
    }

    /// [`Stack::finished_job`] with another time limit (a long measurement).
    pub async fn finished_job_within(&self, limit: Duration) -> (String, JobRecord) {
        let deadline = Instant::now() + limit;
        loop {
            self.revive_worker();
            let executions = self
                .sfn
                .list_executions()
                .state_machine_arn(&self.state_machine)
                .send()
                .await
                .expect("list")
                .executions;
            if let Some(execution) = executions.iter().find(|e| e.status.as_str() != "RUNNING") {
                let job = self
                    .store
                    .get_job(&execution.name)
                    .await
                    .expect("read job")
                    .expect("job record");
                return (execution.status.as_str().to_owned(), job);
            }
            assert!(
                Instant::now() < deadline,
                "{}: no execution finished in time; worker log:\n{}",
                self.name,
                self.worker_log()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn executions(&self) -> usize {
        self.sfn
            .list_executions()
            .state_machine_arn(&self.state_machine)
            .send()
            .await
            .expect("list")
            .executions
            .len()
    }

    /// This stack as the local stack's env file describes one (`treemux submit --local PATH`).
    pub fn write_env_file(&self) -> PathBuf {
        let path = self.dir.path().join("env");
        let text = format!(
            "AWS_ENDPOINT_URL={}\nAWS_REGION=us-east-1\nTREEMUX_TABLE={}\nTREEMUX_INPUT_BUCKET={}\n\
             TREEMUX_OUTPUT_BUCKET={}\nTREEMUX_UPLOAD_QUEUE_URL={}\n",
            endpoint(),
            self.store.table,
            self.input_bucket,
            self.output_bucket,
            self.upload_queue
        );
        std::fs::write(&path, text).expect("env file");
        path
    }

    pub async fn download(&self, key: &str) -> PathBuf {
        let object = self
            .s3
            .get_object()
            .bucket(&self.output_bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}: no output {key}: {}\nworker log:\n{}",
                    self.name,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                    self.worker_log()
                )
            });
        let bytes = object.body.collect().await.expect("body").into_bytes();
        let path = self.dir.path().join("downloaded.mp4");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    pub async fn output_keys(&self) -> Vec<String> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.output_bucket)
            .send()
            .await
            .expect("list");
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }

    /// Everything a job leaves while it runs: every file under the scratch root and the
    /// workers' local directory, and every kept segment object (as `s3://bucket/key`).
    pub async fn scratch_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.dir.path().join("efs"), &mut found);
        walk(&self.dir.path().join("local"), &mut found);
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.segment_bucket)
            .send()
            .await
            .expect("list the segment bucket");
        found.extend(listed.contents().iter().filter_map(|object| {
            let key = object.key()?;
            Some(PathBuf::from(format!("s3://{}/{key}", self.segment_bucket)))
        }));
        found
    }
}
