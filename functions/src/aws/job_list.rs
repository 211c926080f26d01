//! Listing a table's job records (`treemux jobs`): a scan of the job items, newest first.

use super::dynamo::job_from_item;
use super::DynamoStore;
use aws_sdk_dynamodb::types::AttributeValue;
use treemux_core::state::{JobRecord, StateError};

impl DynamoStore {
    /// The `limit` most recently created jobs of the table, newest first. A scan (the table
    /// has no index by time): it reads every item, which is fine for the days a record lives
    /// (`TREEMUX_TTL_DAYS`).
    pub async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobRecord>, StateError> {
        let mut jobs = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("kind = :job")
                .expression_attribute_values(":job", AttributeValue::S("job".to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| {
                    StateError::Unavailable(
                        aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
                    )
                })?;
            for item in page.items() {
                let id = item
                    .get("job_id")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                jobs.push(job_from_item(&id, item)?.0);
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        jobs.sort_by(|a, b| (b.created_at, &b.job_id).cmp(&(a.created_at, &a.job_id)));
        jobs.truncate(limit);
        Ok(jobs)
    }
}
