//! The error names are the contract between the handlers and the state machine: every error the
//! AWS edge can produce (object store, state store, execution starter, the handlers' own kinds)
//! is pinned here to its stable name and retry class, and `statemachine/treemux.asl.json` is read
//! to check that its Retry and Catch lists treat each class as `RetryClass` says: transient names
//! retried by every task, fatal ones never retried and caught into job-failed and a Fail state,
//! a superseded job caught into a Succeed state. A corrupt job record in DynamoDB (on the local
//! stack) is fatal, not retried with backoff forever.

mod common;

use serde_json::Value;
use std::collections::BTreeSet;
use treemux_core::state::StateError;
use treemux_core::ErrorKind;
use treemux_functions::aws::{put_error, start_error, store_error};
use treemux_functions::error::{HandlerError, RetryClass, ERROR_KINDS};
use treemux_functions::ports::{ObjectError, StartError};

#[test]
fn every_error_kind_has_its_stable_name_and_retry_class() {
    let table = [
        (
            ErrorKind::InvalidInput,
            "TreemuxInvalidInput",
            RetryClass::Fatal,
        ),
        (
            ErrorKind::MediaFailure,
            "TreemuxMediaFailure",
            RetryClass::Fatal,
        ),
        (
            ErrorKind::Transient,
            "TreemuxTransient",
            RetryClass::Retried,
        ),
        (
            ErrorKind::Superseded,
            "TreemuxSuperseded",
            RetryClass::Stops,
        ),
        (ErrorKind::Internal, "TreemuxInternal", RetryClass::Fatal),
    ];
    assert_eq!(
        table.iter().map(|(kind, ..)| *kind).collect::<Vec<_>>(),
        ERROR_KINDS,
        "the table covers every kind"
    );
    for (kind, name, class) in table {
        assert_eq!(
            (kind.name(), RetryClass::of(kind)),
            (name, class),
            "{kind:?}"
        );
        let error = HandlerError::new(kind, "m");
        let diagnostic: lambda_runtime::Diagnostic = error.clone().into();
        assert_eq!(diagnostic.error_type, name, "the Lambda error type");
        assert_eq!(error.retry_class(), class);
    }
    let constructors = [
        (HandlerError::transient("m"), "TreemuxTransient"),
        (HandlerError::invalid("m"), "TreemuxInvalidInput"),
        (HandlerError::media("m"), "TreemuxMediaFailure"),
        (HandlerError::internal("m"), "TreemuxInternal"),
        (HandlerError::superseded("m"), "TreemuxSuperseded"),
    ];
    for (error, name) in constructors {
        assert_eq!(error.name(), name, "{error:?}");
    }
}

#[test]
fn every_error_of_the_aws_edge_maps_to_its_name() {
    let (bucket, key, name) = ("b".to_owned(), "k".to_owned(), "job".to_owned());
    let state = [
        (
            StateError::Unavailable("throttled".into()),
            "TreemuxTransient",
        ),
        (
            StateError::Corrupt {
                job: name.clone(),
                reason: "status: unknown variant".into(),
            },
            "TreemuxInternal",
        ),
        (
            StateError::Refused("no such table".into()),
            "TreemuxInternal",
        ),
        (
            StateError::MissingJob { job: name.clone() },
            "TreemuxInternal",
        ),
        (
            StateError::MissingPair {
                job: name.clone(),
                pair: treemux_core::tree::NodeId { level: 1, index: 0 },
            },
            "TreemuxInternal",
        ),
    ];
    for (error, expected) in state {
        let text = error.to_string();
        assert_eq!(HandlerError::from(error).name(), expected, "{text}");
    }
    let objects = [
        (
            ObjectError::NotFound {
                bucket: bucket.clone(),
                key: key.clone(),
            },
            "TreemuxInvalidInput",
        ),
        (
            ObjectError::Changed {
                bucket: bucket.clone(),
                key: key.clone(),
                expected: "etag".into(),
            },
            "TreemuxSuperseded",
        ),
        (
            ObjectError::Refused {
                bucket: bucket.clone(),
                key: key.clone(),
                message: "NoSuchBucket".into(),
            },
            "TreemuxInternal",
        ),
        (
            ObjectError::Failed {
                bucket: bucket.clone(),
                key: key.clone(),
                message: "503".into(),
            },
            "TreemuxTransient",
        ),
        (
            ObjectError::Local {
                path: "/mnt/efs/x".into(),
                source: std::io::Error::other("EIO"),
            },
            "TreemuxTransient",
        ),
    ];
    for (error, expected) in objects {
        let text = error.to_string();
        assert_eq!(HandlerError::from(error).name(), expected, "{text}");
    }
    let starts = [
        (
            StartError::Unavailable {
                name: name.clone(),
                message: "throttled".into(),
            },
            "TreemuxTransient",
        ),
        (
            StartError::Refused {
                name: name.clone(),
                message: "no such state machine".into(),
            },
            "TreemuxInternal",
        ),
    ];
    for (error, expected) in starts {
        let text = error.to_string();
        assert_eq!(HandlerError::from(error).name(), expected, "{text}");
    }
}

#[test]
fn service_error_codes_are_classified_by_whether_a_retry_can_help() {
    let dynamodb = [
        (None, "TreemuxTransient"),
        (Some("ThrottlingException"), "TreemuxTransient"),
        (
            Some("ProvisionedThroughputExceededException"),
            "TreemuxTransient",
        ),
        (Some("RequestLimitExceeded"), "TreemuxTransient"),
        (Some("InternalServerError"), "TreemuxTransient"),
        (Some("TransactionConflictException"), "TreemuxTransient"),
        (Some("ResourceNotFoundException"), "TreemuxInternal"),
        (Some("ValidationException"), "TreemuxInternal"),
        (Some("AccessDeniedException"), "TreemuxInternal"),
    ];
    for (code, expected) in dynamodb {
        let error = HandlerError::from(store_error(code, "m".into()));
        assert_eq!(error.name(), expected, "DynamoDB {code:?}");
    }
    let s3_writes = [
        (None, "TreemuxTransient"),
        (Some("SlowDown"), "TreemuxTransient"),
        (Some("InternalError"), "TreemuxTransient"),
        (Some("RequestTimeout"), "TreemuxTransient"),
        (Some("NoSuchBucket"), "TreemuxInternal"),
        (Some("AccessDenied"), "TreemuxInternal"),
    ];
    for (code, expected) in s3_writes {
        let error = HandlerError::from(put_error("b", "k", code, "m".into()));
        assert_eq!(error.name(), expected, "S3 PUT {code:?}");
    }
    let step_functions = [
        (None, "TreemuxTransient"),
        (Some("ThrottlingException"), "TreemuxTransient"),
        (Some("ExecutionLimitExceeded"), "TreemuxTransient"),
        (Some("ServiceUnavailable"), "TreemuxTransient"),
        (Some("StateMachineDoesNotExist"), "TreemuxInternal"),
        (Some("InvalidExecutionInput"), "TreemuxInternal"),
        (Some("InvalidName"), "TreemuxInternal"),
        (Some("AccessDeniedException"), "TreemuxInternal"),
    ];
    for (code, expected) in step_functions {
        let error = HandlerError::from(start_error("job", code, "m".into()));
        assert_eq!(error.name(), expected, "Step Functions {code:?}");
    }
}

/// One Task state and what catches its errors.
struct TaskState {
    path: String,
    state: Value,
    /// The Catch list that applies (the state's own, else the enclosing Parallel's) and the
    /// states its `Next` names live among.
    catchers: Option<(Vec<Value>, Value)>,
}

/// Every Task state of `states` (recursing into Parallel branches and Map item processors).
fn tasks(
    states: &Value,
    path: &str,
    enclosing: Option<(Vec<Value>, Value)>,
    found: &mut Vec<TaskState>,
) {
    for (name, state) in states.as_object().expect("States is an object") {
        let here = format!("{path}/{name}");
        let own = state
            .get("Catch")
            .and_then(Value::as_array)
            .map(|catch| (catch.clone(), states.clone()));
        match state["Type"].as_str() {
            Some("Task") => found.push(TaskState {
                path: here,
                state: state.clone(),
                catchers: own.or_else(|| enclosing.clone()),
            }),
            Some("Parallel") => {
                for branch in state["Branches"].as_array().expect("branches") {
                    tasks(&branch["States"], &here, own.clone(), found);
                }
            }
            // A distributed Map's failed child fails the Map with its own error name
            // (States.ExceedToleratedFailureThreshold): names do not cross it, so each child
            // must catch what it means to handle.
            Some("Map") => tasks(&state["ItemProcessor"]["States"], &here, None, found),
            _ => {}
        }
    }
}

fn error_names(list: &Value) -> BTreeSet<String> {
    list["ErrorEquals"]
        .as_array()
        .expect("ErrorEquals")
        .iter()
        .map(|name| name.as_str().expect("a name").to_owned())
        .collect()
}

const JOB_FAILED: &str = "${JobFailedFunctionArn}";

/// Where a Catch's `Next` leads: through job-failed tasks only, to a Succeed or Fail state.
fn ends_in<'a>(states: &'a Value, mut next: &'a str, path: &str) -> String {
    for _ in 0..10 {
        let state = &states[next];
        match state["Type"].as_str() {
            Some("Task") => {
                assert_eq!(
                    state["Resource"], JOB_FAILED,
                    "{path}: a Catch leads to {next}, which is not job-failed"
                );
                next = state["Next"]
                    .as_str()
                    .expect("a task after a Catch has a Next");
            }
            Some(end @ ("Succeed" | "Fail")) => return end.to_owned(),
            other => panic!("{path}: a Catch leads to {next}, a {other:?} state"),
        }
    }
    panic!("{path}: a Catch's path does not end");
}

#[test]
fn the_state_machine_retries_and_catches_each_class_as_the_handlers_mean_it() {
    let definition: Value =
        serde_json::from_str(treemux_functions::asl::DEFINITION).expect("definition");
    let mut found = Vec::new();
    tasks(&definition["States"], "", None, &mut found);
    assert!(found.len() >= 7, "the definition's tasks: {}", found.len());
    let known: BTreeSet<&str> = ERROR_KINDS.iter().map(|kind| kind.name()).collect();
    for task in &found {
        let path = &task.path;
        let retried: BTreeSet<String> = task.state["Retry"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no Retry"))
            .iter()
            .flat_map(error_names)
            .collect();
        assert!(
            !retried.contains("States.ALL") && !retried.contains("States.TaskFailed"),
            "{path}: a catch-all Retry would retry fatal errors: {retried:?}"
        );
        for name in retried.iter().filter(|name| name.starts_with("Treemux")) {
            assert!(known.contains(name.as_str()), "{path}: unknown name {name}");
        }
        for kind in ERROR_KINDS {
            let (name, class) = (kind.name(), RetryClass::of(kind));
            assert_eq!(
                retried.contains(name),
                class == RetryClass::Retried,
                "{path}: {name} is {class:?}, its Retry lists {retried:?}"
            );
        }
        // job-failed's own tasks record failures; what fails there ends the execution.
        if task.state["Resource"] == JOB_FAILED {
            continue;
        }
        let (catchers, scope) = task
            .catchers
            .clone()
            .unwrap_or_else(|| panic!("{path}: nothing catches its errors"));
        let last = catchers.last().map(error_names).unwrap_or_default();
        assert!(
            last.contains("States.ALL"),
            "{path}: the last Catch is States.ALL"
        );
        for kind in ERROR_KINDS {
            let (name, class) = (kind.name(), RetryClass::of(kind));
            let catcher = catchers
                .iter()
                .find(|catcher| {
                    let names = error_names(catcher);
                    names.contains(name) || names.contains("States.ALL")
                })
                .expect("States.ALL catches every name");
            let next = catcher["Next"].as_str().expect("Catch Next");
            let end = ends_in(&scope, next, path);
            let wanted = if class == RetryClass::Stops {
                "Succeed"
            } else {
                "Fail"
            };
            assert_eq!(
                end, wanted,
                "{path}: {name} ({class:?}) is caught into {next}"
            );
        }
    }
}

/// A job record DynamoDB holds but treemux cannot read is `TreemuxInternal`: fatal, never the
/// transient error that was retried with backoff on every task.
#[tokio::test]
async fn a_corrupt_job_record_is_fatal_not_transient() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use treemux_core::state::JobStore;
    if !common::stack_available() {
        return;
    }
    let config = common::sdk().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("error-names-{}", std::process::id());
    common::create_table(&client, &table).await;
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("job#abc123".into()))
        .item("sk", AttributeValue::S("job".into()))
        .item("kind", AttributeValue::S("job".into()))
        .item("status", AttributeValue::S("EXPLODED".into()))
        .send()
        .await
        .expect("put");
    let store = treemux_functions::aws::DynamoStore {
        client: client.clone(),
        table: table.clone(),
        ttl_seconds: 60,
    };
    let error = store.get_job("abc123").await.expect_err("corrupt");
    assert!(matches!(error, StateError::Corrupt { .. }), "{error:?}");
    let error = HandlerError::from(error);
    assert_eq!(
        (error.name(), error.retry_class()),
        ("TreemuxInternal", RetryClass::Fatal),
        "{error}"
    );
    assert!(error.message.contains("abc123"), "{error}");
    let _ = client.delete_table().table_name(&table).send().await;
}
