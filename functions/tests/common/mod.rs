//! Helpers for the tests that use the local AWS stack (`scripts/local-stack up`).
#![allow(dead_code)]

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use std::process::Command;

#[path = "../../../tests/common/browser.rs"]
pub mod browser;
#[path = "../../../tests/common/rng.rs"]
pub mod rng;

/// The local stack's endpoint: `TREEMUX_LOCAL_STACK_ENDPOINT`, else the one this checkout's
/// `scripts/local-stack up` wrote to `target/local-stack/env` (whatever port it was given), else
/// `http://127.0.0.1:5055`. Reading the env file keeps a checkout's tests on its own stack when
/// another checkout's owns the default port.
pub fn endpoint() -> String {
    if let Ok(endpoint) = std::env::var("TREEMUX_LOCAL_STACK_ENDPOINT") {
        return endpoint;
    }
    let env_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/local-stack/env");
    std::fs::read_to_string(env_file)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("TREEMUX_LOCAL_STACK_ENDPOINT="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "http://127.0.0.1:5055".to_owned())
}

/// True when the stack answers. Its absence skips a test locally, visibly ([`skip`]), and fails
/// it in CI.
pub fn stack_available() -> bool {
    let url = format!("{}/moto-api/", endpoint());
    let up = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .is_ok_and(|o| o.stdout == b"200");
    if !up && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "the local stack is not running at {}: CI starts it with scripts/local-stack up",
            endpoint()
        );
    }
    if !up {
        skip(&format!(
            "no local stack at {} (scripts/local-stack up)",
            endpoint()
        ));
    }
    up
}

/// Says that the running test is skipped and why, on the process's real stderr: the test harness
/// captures `eprintln!` and shows it only for failing tests, so a skip printed that way would
/// pass silently. The line names the test (libtest names each test's thread after it).
pub fn skip(reason: &str) {
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}

/// SDK configuration for the local stack, with test credentials.
pub async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// Creates a table with treemux's key schema (`pk`, `sk` strings).
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
}
