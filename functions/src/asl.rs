//! The state machine definition (`statemachine/treemux.asl.json`, the one source of truth) and
//! its two renderings: for AWS, the `${XxxFunctionArn}` placeholders become Lambda ARNs (what
//! SAM's DefinitionSubstitutions do); for the local stack, each Lambda task becomes an SQS
//! `sendMessage.waitForTaskToken` task whose message names the function, carries the task token
//! and the task's input, and is answered by `treemux worker`.

use serde_json::{json, Map, Value};

/// The definition as committed.
pub const DEFINITION: &str = include_str!("../../statemachine/treemux.asl.json");

/// The functions the state machine calls: placeholder name → function name (the worker's
/// dispatch key and the Lambda binary's name).
pub const FUNCTIONS: [(&str, &str); 5] = [
    ("SplitAudio", "split-audio"),
    ("SplitAndConvert", "split-and-convert"),
    ("MergeVideo", "merge-video"),
    ("MergeAudio", "merge-audio"),
    ("JobFailed", "job-failed"),
];

fn placeholder_function(resource: &str) -> Option<&'static str> {
    let name = resource.strip_prefix("${")?.strip_suffix("FunctionArn}")?;
    FUNCTIONS
        .iter()
        .find(|(placeholder, _)| *placeholder == name)
        .map(|(_, function)| *function)
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

/// The definition with each `${XxxFunctionArn}` replaced by `arn_for(function name)`.
pub fn render_for_lambda(arn_for: impl Fn(&str) -> String) -> Result<Value, String> {
    let mut definition: Value = serde_json::from_str(DEFINITION)
        .map_err(|e| format!("statemachine/treemux.asl.json: {e}"))?;
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

/// The definition for the local stack: Lambda tasks become SQS callback tasks on `queue_url`.
pub fn render_for_worker(queue_url: &str) -> Result<Value, String> {
    let mut definition: Value = serde_json::from_str(DEFINITION)
        .map_err(|e| format!("statemachine/treemux.asl.json: {e}"))?;
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
}
