//! Job records as DynamoDB items (every field one attribute, JSON values as maps and lists) and
//! the optimistic update loop with its backoff.

use super::*;

/// Attributes of the job item that are not [`JobRecord`] fields (the last two: the last progress
/// event claimed, [`JobStore::claim_progress_event`]).
pub(super) const JOB_ITEM_EXTRAS: [&str; 7] = [
    "pk",
    "sk",
    "kind",
    "version",
    "expires_at",
    "progress_event_at",
    "progress_event_percent",
];

/// A JSON value as a DynamoDB attribute: objects become maps, arrays lists, numbers numbers.
pub(super) fn to_attribute(value: &serde_json::Value) -> AttributeValue {
    use serde_json::Value;
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(number) => AttributeValue::N(number.to_string()),
        Value::String(text) => AttributeValue::S(text.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute).collect()),
        Value::Object(fields) => AttributeValue::M(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), to_attribute(value)))
                .collect(),
        ),
    }
}

/// The inverse of [`to_attribute`] (string and number sets read as lists).
pub(super) fn from_attribute(value: &AttributeValue) -> serde_json::Value {
    use serde_json::Value;
    let number = |text: &str| {
        text.parse::<u64>()
            .map(Value::from)
            .or_else(|_| text.parse::<i64>().map(Value::from))
            .or_else(|_| text.parse::<f64>().map(Value::from))
            .unwrap_or(Value::Null)
    };
    match value {
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(text) => number(text),
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attribute).collect()),
        AttributeValue::M(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), from_attribute(value)))
                .collect(),
        ),
        AttributeValue::Ss(items) => Value::Array(items.iter().cloned().map(Value::from).collect()),
        AttributeValue::Ns(items) => Value::Array(items.iter().map(|n| number(n)).collect()),
        _ => Value::Null,
    }
}

/// Optimistic writes of one job record before giving up with a transient error.
pub(super) const UPDATE_ATTEMPTS: u32 = 50;

/// How long to wait before optimistic write `attempt` (from 1): uniformly random up to an
/// exponentially growing cap (5 ms doubling, at most 1 s).
pub(super) fn update_backoff(attempt: u32) -> std::time::Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    let cap_ms = 5u64 << attempt.min(8);
    // std's per-instance random hash keys are the only randomness needed here.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    std::time::Duration::from_millis(random % cap_ms.min(1_000) + 1)
}

impl DynamoStore {
    pub(super) fn latest_key(bucket: &str, key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("key#{bucket}/{key}"))),
            ("sk".to_owned(), s("latest")),
        ])
    }

    /// The whole job item: key, every record field, `version` and `expires_at`.
    pub(super) fn job_item(
        &self,
        record: &JobRecord,
        version: u64,
    ) -> Result<HashMap<String, AttributeValue>, StateError> {
        let serde_json::Value::Object(fields) =
            serde_json::to_value(record).map_err(|e| StateError::Corrupt {
                job: record.job_id.clone(),
                reason: e.to_string(),
            })?
        else {
            unreachable!("a JobRecord serializes as an object");
        };
        let mut item = Self::job_key(&record.job_id);
        item.extend(
            fields
                .iter()
                .filter(|(name, _)| !JOB_ITEM_EXTRAS.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), to_attribute(value))),
        );
        item.insert("kind".into(), s("job"));
        item.insert("version".into(), n(version));
        item.insert("expires_at".into(), self.expires());
        Ok(item)
    }

    pub(super) async fn read_job(
        &self,
        job_id: &str,
    ) -> Result<Option<(JobRecord, u64)>, StateError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::job_key(job_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(attributes) = item.item() else {
            return Ok(None);
        };
        job_from_item(job_id, attributes).map(Some)
    }
}

/// A job item's record and its optimistic `version`.
pub(crate) fn job_from_item(
    job_id: &str,
    attributes: &HashMap<String, AttributeValue>,
) -> Result<(JobRecord, u64), StateError> {
    {
        let unreadable = |e: serde_json::Error| StateError::Corrupt {
            job: job_id.to_owned(),
            reason: e.to_string(),
        };
        let record: JobRecord = match attributes.get("record").and_then(|v| v.as_s().ok()) {
            // Records written before the fields had attributes of their own held JSON here.
            Some(json) => serde_json::from_str(json).map_err(unreadable)?,
            None => serde_json::from_value(serde_json::Value::Object(
                attributes
                    .iter()
                    .filter(|(name, _)| !JOB_ITEM_EXTRAS.contains(&name.as_str()))
                    .map(|(name, value)| (name.clone(), from_attribute(value)))
                    .collect(),
            ))
            .map_err(unreadable)?,
        };
        let version = attributes
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((record, version))
    }
}
