//! The state machine definition (`statemachine/treemux.asl.json`, the one source of truth) and
//! its two renderings: for AWS, the `${XxxFunctionArn}` placeholders become Lambda ARNs (what
//! SAM's DefinitionSubstitutions do); for the local stack, each Lambda task becomes an SQS
//! `sendMessage.waitForTaskToken` task whose message names the function, carries the task token
//! and the task's input, and is answered by `treemux worker`.
//!
//! Numbers that come from the template's parameters (the Map's `MaxConcurrency`, the execution's
//! `TimeoutSeconds`) are quoted placeholders in the committed file, `"${SegmentConcurrency}"`,
//! so that it stays JSON for the linters and this module. CloudFormation's DefinitionSubstitutions
//! replace text, and a quoted number would stay a string, so the artifact SAM deploys
//! ([`render_for_template`]) has them unquoted; the other renderings put the numbers in.

use serde_json::{json, Map, Value};
use treemux_core::names::Function;

/// The definition as committed.
pub const DEFINITION: &str = include_str!("../../statemachine/treemux.asl.json");

/// The functions the state machine calls: placeholder name → function (its name is the
/// worker's dispatch key and the Lambda binary's name). Analyze is started by S3, not by it.
pub const FUNCTIONS: [(&str, Function); 6] = [
    ("SplitAudio", Function::SplitAudio),
    ("SplitAndConvert", Function::SplitAndConvert),
    ("MergeVideo", Function::MergeVideo),
    ("MergeAudio", Function::MergeAudio),
    ("UploadParts", Function::UploadParts),
    ("JobFailed", Function::JobFailed),
];

/// The number placeholders (see the module doc), each a template parameter of the same name.
pub const NUMBER_PLACEHOLDERS: [&str; 2] = ["SegmentConcurrency", "ExecutionTimeoutSeconds"];

/// Values of the number placeholders where no template supplies them (the local stack, the
/// linters). The defaults are the template's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The distributed Map's `MaxConcurrency`: segments (child executions) running at once.
    pub segment_concurrency: u32,
    /// The whole execution's `TimeoutSeconds`, after which Step Functions ends it `TIMED_OUT`.
    pub execution_timeout_seconds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            segment_concurrency: 200,
            execution_timeout_seconds: 21_600,
        }
    }
}

impl Limits {
    fn value(&self, placeholder: &str) -> Option<u32> {
        match placeholder {
            "SegmentConcurrency" => Some(self.segment_concurrency),
            "ExecutionTimeoutSeconds" => Some(self.execution_timeout_seconds),
            _ => None,
        }
    }
}

/// Replaces every string value `"${Name}"` of a number placeholder by its value.
fn substitute_numbers(value: &mut Value, limits: &Limits, unknown: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            if let Some(name) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
                if let Some(number) = limits.value(name) {
                    *value = json!(number);
                } else if !name.ends_with("FunctionArn") {
                    unknown.push(text.clone());
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| substitute_numbers(item, limits, unknown)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|field| substitute_numbers(field, limits, unknown)),
        _ => {}
    }
}

/// The definition as SAM uploads it for CloudFormation (`DefinitionUri`): the committed text with
/// each number placeholder unquoted, so that CloudFormation's text substitution leaves a number.
/// Not JSON until substituted.
pub fn render_for_template() -> Result<String, String> {
    let mut text = DEFINITION.to_owned();
    for name in NUMBER_PLACEHOLDERS {
        let quoted = format!("\"${{{name}}}\"");
        if !text.contains(&quoted) {
            return Err(format!(
                "statemachine/treemux.asl.json: no {quoted} (the template substitutes it)"
            ));
        }
        text = text.replace(&quoted, &format!("${{{name}}}"));
    }
    Ok(text)
}

fn placeholder_function(resource: &str) -> Option<&'static str> {
    let name = resource.strip_prefix("${")?.strip_suffix("FunctionArn}")?;
    FUNCTIONS
        .iter()
        .find(|(placeholder, _)| *placeholder == name)
        .map(|(_, function)| function.name())
}

/// Walks every state, including those inside Parallel branches and Map item processors.
fn for_each_state(definition: &mut Value, visit: &mut impl FnMut(&mut Map<String, Value>)) {
    let Some(states) = definition.get_mut("States").and_then(Value::as_object_mut) else {
        return;
    };
    for state in states.values_mut() {
        if let Some(branches) = state.get_mut("Branches").and_then(Value::as_array_mut) {
            for branch in branches {
                for_each_state(branch, visit);
            }
        }
        for nested in ["ItemProcessor", "Iterator"] {
            if let Some(processor) = state.get_mut(nested) {
                for_each_state(processor, visit);
            }
        }
        if let Some(object) = state.as_object_mut() {
            visit(object);
        }
    }
}

/// The committed definition, parsed, with the number placeholders set from `limits`.
fn definition_with(limits: &Limits) -> Result<Value, String> {
    let mut definition: Value = serde_json::from_str(DEFINITION)
        .map_err(|e| format!("statemachine/treemux.asl.json: {e}"))?;
    let mut unknown = Vec::new();
    substitute_numbers(&mut definition, limits, &mut unknown);
    if unknown.is_empty() {
        Ok(definition)
    } else {
        Err(format!("unknown placeholders: {}", unknown.join(", ")))
    }
}

/// The definition with each `${XxxFunctionArn}` replaced by `arn_for(function name)` and the
/// default [`Limits`].
pub fn render_for_lambda(arn_for: impl Fn(&str) -> String) -> Result<Value, String> {
    render_for_lambda_with(arn_for, &Limits::default())
}

/// [`render_for_lambda`] with the given limits.
pub fn render_for_lambda_with(
    arn_for: impl Fn(&str) -> String,
    limits: &Limits,
) -> Result<Value, String> {
    let mut definition = definition_with(limits)?;
    let mut unknown = Vec::new();
    for_each_state(&mut definition, &mut |state| {
        if let Some(resource) = state
            .get("Resource")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            match placeholder_function(&resource) {
                Some(function) => {
                    state.insert("Resource".into(), json!(arn_for(function)));
                }
                None if resource.starts_with("${") => unknown.push(resource),
                None => {}
            }
        }
    });
    if unknown.is_empty() {
        Ok(definition)
    } else {
        Err(format!("unknown placeholders: {}", unknown.join(", ")))
    }
}

/// The definition for the local stack: Lambda tasks become SQS callback tasks on `queue_url`;
/// the default [`Limits`].
pub fn render_for_worker(queue_url: &str) -> Result<Value, String> {
    render_for_worker_with(queue_url, &Limits::default())
}

/// [`render_for_worker`] with the given limits.
pub fn render_for_worker_with(queue_url: &str, limits: &Limits) -> Result<Value, String> {
    let mut definition = definition_with(limits)?;
    for_each_state(&mut definition, &mut |state| {
        let Some(function) = state
            .get("Resource")
            .and_then(Value::as_str)
            .and_then(placeholder_function)
        else {
            return;
        };
        let input = state.remove("Parameters");
        let mut body = Map::new();
        body.insert("function".into(), json!(function));
        body.insert("token.$".into(), json!("$$.Task.Token"));
        match input {
            Some(parameters) => body.insert("input".into(), parameters),
            None => body.insert("input.$".into(), json!("$")),
        };
        state.insert(
            "Resource".into(),
            json!("arn:aws:states:::sqs:sendMessage.waitForTaskToken"),
        );
        state.insert(
            "Parameters".into(),
            json!({ "QueueUrl": queue_url, "MessageBody": Value::Object(body) }),
        );
    });
    Ok(definition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(definition: &mut Value) -> Vec<String> {
        let mut found = Vec::new();
        for_each_state(definition, &mut |state| {
            if let Some(resource) = state.get("Resource").and_then(Value::as_str) {
                found.push(resource.to_owned());
            }
        });
        found
    }

    #[test]
    fn every_placeholder_is_a_known_function() {
        let mut definition = render_for_lambda(|function| {
            format!("arn:aws:lambda:us-east-1:123456789012:function:treemux-{function}")
        })
        .expect("render");
        let found = resources(&mut definition);
        assert!(found.len() >= 6, "{found:?}");
        assert!(
            found.iter().all(|r| r.starts_with("arn:aws:lambda:")),
            "{found:?}"
        );
    }

    /// What CloudFormation does with DefinitionSubstitutions: `${Name}` replaced in the text.
    fn substitute_text(template: &str, values: &[(String, String)]) -> String {
        values
            .iter()
            .fold(template.to_owned(), |text, (name, value)| {
                text.replace(&format!("${{{name}}}"), value)
            })
    }

    #[test]
    fn the_template_artifact_substitutes_to_the_lambda_rendering() {
        let arn =
            |function: &str| format!("arn:aws:lambda:us-east-1:123456789012:function:{function}");
        let limits = Limits {
            segment_concurrency: 37,
            execution_timeout_seconds: 5400,
        };
        let mut values: Vec<(String, String)> = FUNCTIONS
            .iter()
            .map(|(placeholder, function)| {
                (format!("{placeholder}FunctionArn"), arn(function.name()))
            })
            .collect();
        values.push(("SegmentConcurrency".into(), "37".into()));
        values.push(("ExecutionTimeoutSeconds".into(), "5400".into()));
        let artifact = render_for_template().expect("artifact");
        assert!(
            serde_json::from_str::<Value>(&artifact).is_err(),
            "unquoted placeholders: not JSON before substitution"
        );
        let deployed: Value = serde_json::from_str(&substitute_text(&artifact, &values))
            .expect("JSON after substitution");
        assert_eq!(
            deployed,
            render_for_lambda_with(arn, &limits).expect("render")
        );
        assert_eq!(deployed["TimeoutSeconds"], 5400);
        let map = &deployed["States"]["Transcode"]["Branches"][1]["States"]["Segments"];
        assert_eq!(map["MaxConcurrency"], 37, "a number, not a string");
    }

    /// The `Default:` of a top-level parameter of infra/template.yaml.
    fn template_default(template: &str, parameter: &str) -> Option<u32> {
        let block = template.split(&format!("\n  {parameter}:\n")).nth(1)?;
        let line = block
            .lines()
            .find(|l| l.trim_start().starts_with("Default:"))?;
        line.trim_start()
            .trim_start_matches("Default:")
            .trim()
            .parse()
            .ok()
    }

    #[test]
    fn the_local_limits_are_the_templates_defaults_and_every_placeholder_is_substituted() {
        let template = include_str!("../../infra/template.yaml");
        let limits = Limits::default();
        assert_eq!(
            template_default(template, "SegmentConcurrency"),
            Some(limits.segment_concurrency)
        );
        assert_eq!(
            template_default(template, "ExecutionTimeoutSeconds"),
            Some(limits.execution_timeout_seconds)
        );
        let substitutions = template
            .split("DefinitionSubstitutions:")
            .nth(1)
            .expect("DefinitionSubstitutions in the template");
        let names = NUMBER_PLACEHOLDERS.iter().map(|n| n.to_string()).chain(
            FUNCTIONS
                .iter()
                .map(|(placeholder, _)| format!("{placeholder}FunctionArn")),
        );
        for name in names {
            assert!(
                substitutions.contains(&format!("\n        {name}: ")),
                "the template does not substitute {name}"
            );
        }
    }

    #[test]
    fn throttling_gets_long_jittered_backoff_on_every_task() {
        let mut definition =
            render_for_lambda(|f| format!("arn:aws:lambda:::function:{f}")).expect("render");
        let mut tasks = 0;
        for_each_state(&mut definition, &mut |state| {
            if state.get("Type").and_then(Value::as_str) != Some("Task") {
                return;
            }
            tasks += 1;
            let retriers = state["Retry"].as_array().expect("Retry");
            let throttle = retriers
                .iter()
                .find(|r| {
                    r["ErrorEquals"]
                        .as_array()
                        .is_some_and(|e| e.contains(&json!("Lambda.TooManyRequestsException")))
                })
                .expect("a retrier for throttling");
            // The longest a throttled task keeps trying: the sum of the capped delays.
            let (interval, rate, cap) = (
                throttle["IntervalSeconds"].as_f64().expect("interval"),
                throttle["BackoffRate"].as_f64().expect("rate"),
                throttle["MaxDelaySeconds"].as_f64().expect("cap"),
            );
            let attempts = throttle["MaxAttempts"].as_i64().expect("attempts") as i32;
            let longest: f64 = (0..attempts)
                .map(|n| (interval * rate.powi(n)).min(cap))
                .sum();
            assert!(
                longest >= 1800.0,
                "throttling retried for {longest} s at most"
            );
            assert_eq!(throttle["JitterStrategy"], "FULL");
            assert!(
                throttle["ErrorEquals"]
                    .as_array()
                    .is_some_and(|e| e.contains(&json!("Lambda.ServiceException"))),
                "{throttle}"
            );
        });
        assert!(tasks >= 6, "{tasks} tasks");
    }

    #[test]
    fn the_worker_rendering_keeps_inputs_and_shape() {
        let mut definition =
            render_for_worker("http://127.0.0.1:5055/123456789012/tasks").expect("render");
        assert!(resources(&mut definition)
            .iter()
            .all(|r| r == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"));
        let convert = &definition["States"]["Transcode"]["Branches"][1]["States"]["Segments"]
            ["ItemProcessor"]["States"]["SplitAndConvert"];
        assert_eq!(
            convert["Parameters"]["MessageBody"]["function"],
            "split-and-convert"
        );
        assert_eq!(
            convert["Parameters"]["MessageBody"]["input"]["segment.$"],
            "$.segment"
        );
        assert_eq!(
            convert["Retry"][0]["ErrorEquals"][0], "TreemuxTransient",
            "retry policy kept"
        );
        let map = &definition["States"]["Transcode"]["Branches"][1]["States"]["Segments"];
        assert_eq!(
            map["ItemProcessor"]["ProcessorConfig"]["Mode"],
            "DISTRIBUTED"
        );
    }

    /// Every function has a Lambda binary of its name (functions/Cargo.toml), the state machine
    /// calls every one but analyze (which S3 starts), and each binary starts as its function.
    #[test]
    fn every_function_is_a_binary_and_the_state_machine_calls_the_rest() {
        let manifest = include_str!("../Cargo.toml");
        let binaries: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|bin| bin.lines().find_map(|line| line.strip_prefix("name = ")))
            .map(|name| name.trim_matches('"'))
            .collect();
        let names: Vec<&str> = Function::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(binaries, names);
        let called: Vec<Function> = FUNCTIONS.iter().map(|(_, function)| *function).collect();
        let expected: Vec<Function> = Function::ALL
            .into_iter()
            .filter(|function| *function != Function::Analyze)
            .collect();
        assert_eq!(called, expected);
        for function in Function::ALL {
            let file = function.name().replace('-', "_");
            let path = format!("{}/src/bin/{file}.rs", env!("CARGO_MANIFEST_DIR"));
            let main = std::fs::read_to_string(&path).expect("the binary's source");
            let variant = format!("{function:?}");
            assert!(
                main.contains(&format!("startup::prepare(Function::{variant})")),
                "{path} starts as {variant}"
            );
        }
    }
}
