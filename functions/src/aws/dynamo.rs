//! DynamoDB as the [`StateStore`] (pair records) and the [`JobStore`] (job records).
//!
//! DynamoDB layout (one table, `pk`/`sk` string keys, TTL attribute `expires_at`, and `kind`
//! naming the item type so a scan can filter):
//! - job record: `pk = job#<id>`, `sk = job`, `kind = job`: every [`JobRecord`] field as its
//!   own attribute (`status`, `source`, `output`, `segments`, `segments_done`, `error`, …),
//!   readable with `aws dynamodb get-item`; plus `version` for optimistic updates;
//! - newest job per input key: `pk = key#<bucket>/<key>`, `sk = latest`, `kind = latest`, with
//!   `job_id`, `source` and `upload_order` (see [`JobStore::claim_latest`]);
//! - pair record: `pk = job#<id>`, `sk = pair#<level>#<index>`, `kind = pair`, with
//!   `confirmed` (string set of `left`/`right`), `claimed_by` and `merged`.
//!
//! Every write sets `expires_at` so finished jobs disappear on their own.

mod items;
pub(crate) use items::job_from_item;
use items::*;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};
use treemux_core::state::{
    apply_job_update, ClaimOutcome, JobRecord, JobStore, JobUpdate, LatestClaim, StateError,
    StateStore,
};
use treemux_core::tree::{MergeTree, NodeId, Side};

/// DynamoDB error codes that retrying the same request cannot change: a missing table, a
/// malformed request, a role without the permission. (Conditional check failures are answers,
/// handled where they are expected; throttling and service errors are worth retrying.)
pub const REFUSED_DYNAMODB_CODES: [&str; 5] = [
    "ValidationException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "SerializationException",
];

/// A failed DynamoDB request as a [`StateError`], by the service's error code.
pub fn store_error(code: Option<&str>, message: String) -> StateError {
    if code.is_some_and(|code| REFUSED_DYNAMODB_CODES.contains(&code)) {
        StateError::Refused(message)
    } else {
        StateError::Unavailable(message)
    }
}

/// DynamoDB as the [`StateStore`] and [`JobStore`].
#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    /// How long items live after their last write, in seconds.
    pub ttl_seconds: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Left => "left",
        Side::Right => "right",
    }
}

/// A DynamoDB request's failure, classified by [`store_error`].
fn unavailable<E, R>(error: SdkError<E, R>) -> StateError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = error
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned);
    store_error(
        code.as_deref(),
        aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
    )
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl DynamoStore {
    fn job_key(job: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("job#{job}"))),
            ("sk".to_owned(), s("job")),
        ])
    }

    fn pair_key(job: &str, pair: NodeId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("job#{job}"))),
            (
                "sk".to_owned(),
                s(format!("pair#{}#{}", pair.level, pair.index)),
            ),
        ])
    }

    fn expires(&self) -> AttributeValue {
        n(now() + self.ttl_seconds)
    }

    async fn add_confirmation(
        &self,
        job: &str,
        pair: NodeId,
        side: Side,
    ) -> Result<BTreeSet<Side>, StateError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::pair_key(job, pair)))
            .update_expression("ADD confirmed :side SET expires_at = :expires, kind = :kind")
            .expression_attribute_values(
                ":side",
                AttributeValue::Ss(vec![side_name(side).to_owned()]),
            )
            .expression_attribute_values(":kind", s("pair"))
            .expression_attribute_values(":expires", self.expires())
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(unavailable)?;
        let confirmed = output
            .attributes()
            .and_then(|a| a.get("confirmed"))
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        Ok(confirmed
            .iter()
            .filter_map(|name| match name.as_str() {
                "left" => Some(Side::Left),
                "right" => Some(Side::Right),
                _ => None,
            })
            .collect())
    }
}

impl StateStore for DynamoStore {
    async fn create_pairs(&self, job: &str, tree: &MergeTree) -> Result<(), StateError> {
        // Pair records appear with their first confirmation; only the placeholder confirmations
        // are written ahead (at most one per level).
        for (pair, side) in tree.initial_confirmations() {
            self.add_confirmation(job, pair, side).await?;
        }
        Ok(())
    }

    async fn confirm_child(
        &self,
        job: &str,
        pair: NodeId,
        side: Side,
    ) -> Result<BTreeSet<Side>, StateError> {
        self.add_confirmation(job, pair, side).await
    }

    async fn claim_merge(
        &self,
        job: &str,
        pair: NodeId,
        claimant: &str,
    ) -> Result<ClaimOutcome, StateError> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::pair_key(job, pair)))
            .update_expression("SET claimed_by = :claimant, expires_at = :expires")
            .condition_expression("(attribute_not_exists(claimed_by) OR claimed_by = :claimant) AND attribute_not_exists(merged)")
            .expression_attribute_values(":claimant", s(claimant))
            .expression_attribute_values(":expires", self.expires())
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(ClaimOutcome::Won),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::pair_key(job, pair)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(unavailable)?;
                let attributes = item.item().cloned().unwrap_or_default();
                if attributes
                    .get("merged")
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false)
                {
                    Ok(ClaimOutcome::AlreadyMerged)
                } else {
                    let holder = attributes
                        .get("claimed_by")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default();
                    Ok(ClaimOutcome::Lost { holder })
                }
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn mark_merged(&self, job: &str, pair: NodeId, claimant: &str) -> Result<(), StateError> {
        let marked = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::pair_key(job, pair)))
            .update_expression("SET merged = :yes, expires_at = :expires")
            .condition_expression("claimed_by = :claimant")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":claimant", s(claimant))
            .expression_attribute_values(":expires", self.expires())
            .send()
            .await;
        match marked {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StateError::NotClaimant {
                    job: job.to_owned(),
                    pair,
                    by: claimant.to_owned(),
                    holder: None,
                })
            }
            Err(error) => Err(unavailable(error)),
        }
    }
}

/// The job record is kept as one attribute per field (so `aws dynamodb get-item` shows it as
/// it is), updated by read-modify-write with an optimistic `version` check, so the rules of
/// [`apply_job_update`] are the only rules.
impl JobStore for DynamoStore {
    async fn create_job(&self, record: &JobRecord) -> Result<bool, StateError> {
        let item = self.job_item(record, 0)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StateError> {
        Ok(self.read_job(job_id).await?.map(|(record, _)| record))
    }

    async fn update_job(
        &self,
        job_id: &str,
        update: &JobUpdate,
        now: u64,
    ) -> Result<(), StateError> {
        // Concurrent tasks update the same record; retry the optimistic write a bounded number
        // of times (each attempt re-reads), backing off with full jitter so that a crowd of
        // tasks finishing together (a wide Map) spreads out instead of colliding again.
        for attempt in 0..UPDATE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(update_backoff(attempt)).await;
            }
            let Some((mut record, version)) = self.read_job(job_id).await? else {
                return Err(StateError::MissingJob {
                    job: job_id.to_owned(),
                });
            };
            apply_job_update(&mut record, update, now);
            // UpdateItem, not PutItem: the task functions are granted only UpdateItem on the
            // table (infra/template.yaml). Every field is set; none is ever removed.
            let mut fields = self.job_item(&record, version + 1)?;
            fields.remove("pk");
            fields.remove("sk");
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::job_key(job_id)))
                .condition_expression("#version = :version")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":version", n(version));
            let mut assignments = Vec::with_capacity(fields.len());
            for (index, (name, value)) in fields.into_iter().enumerate() {
                assignments.push(format!("#f{index} = :f{index}"));
                request = request
                    .expression_attribute_names(format!("#f{index}"), name)
                    .expression_attribute_values(format!(":f{index}"), value);
            }
            let written = request
                .update_expression(format!("SET {}", assignments.join(", ")))
                .send()
                .await;
            match written {
                Ok(_) => return Ok(()),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    continue
                }
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(StateError::Unavailable(format!(
            "job {job_id}: the record kept changing under {UPDATE_ATTEMPTS} attempts to update it"
        )))
    }

    async fn claim_latest(
        &self,
        bucket: &str,
        key: &str,
        job_id: &str,
        order: &str,
    ) -> Result<LatestClaim, StateError> {
        let mut item = Self::latest_key(bucket, key);
        item.insert("kind".into(), s("latest"));
        item.insert("job_id".into(), s(job_id));
        item.insert("source".into(), s(format!("s3://{bucket}/{key}")));
        item.insert("upload_order".into(), s(order));
        item.insert("expires_at".into(), self.expires());
        // The rule of treemux_core::state::latest_claim, as one conditional write.
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR upload_order <= :order OR job_id = :job",
            )
            .expression_attribute_values(":order", s(order))
            .expression_attribute_values(":job", s(job_id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match put {
            Ok(output) => {
                let previous = output
                    .attributes()
                    .and_then(|a| a.get("job_id"))
                    .and_then(|v| v.as_s().ok())
                    .filter(|previous| previous.as_str() != job_id)
                    .cloned();
                Ok(LatestClaim::Newest { previous })
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let newest = self.latest_job(bucket, key).await?.unwrap_or_default();
                Ok(LatestClaim::Older { newest })
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn take_latest(
        &self,
        bucket: &str,
        key: &str,
        job_id: &str,
    ) -> Result<Option<String>, StateError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::latest_key(bucket, key)))
            .update_expression(
                "SET job_id = :job, kind = :kind, #source = :source, expires_at = :expires, \
                 upload_order = if_not_exists(upload_order, :lowest)",
            )
            .expression_attribute_names("#source", "source")
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":kind", s("latest"))
            .expression_attribute_values(":source", s(format!("s3://{bucket}/{key}")))
            .expression_attribute_values(":expires", self.expires())
            .expression_attribute_values(":lowest", s(""))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(updated
            .attributes()
            .and_then(|a| a.get("job_id"))
            .and_then(|v| v.as_s().ok())
            .filter(|previous| previous.as_str() != job_id)
            .cloned())
    }

    async fn claim_progress_event(
        &self,
        job_id: &str,
        percent: u64,
        now_ms: u64,
        interval_ms: u64,
    ) -> Result<bool, StateError> {
        // The rule of treemux_core::state::progress_event_due, as one conditional write beside
        // the record's fields (its optimistic version is not touched: no task's update of the
        // record is made to retry by an announcement).
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::job_key(job_id)))
            .update_expression("SET progress_event_at = :now, progress_event_percent = :percent")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(progress_event_at) \
                 OR (progress_event_at <= :due AND progress_event_percent < :percent))",
            )
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":due", n(now_ms.saturating_sub(interval_ms)))
            .expression_attribute_values(":percent", n(percent))
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                if self.read_job(job_id).await?.is_none() {
                    return Err(StateError::MissingJob {
                        job: job_id.to_owned(),
                    });
                }
                Ok(false)
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn latest_job(&self, bucket: &str, key: &str) -> Result<Option<String>, StateError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::latest_key(bucket, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(item
            .item()
            .and_then(|a| a.get("job_id"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_backoff_is_jittered_and_bounded() {
        for attempt in 1..UPDATE_ATTEMPTS {
            let cap = std::time::Duration::from_millis((5u64 << attempt.min(8)).min(1_000) + 1);
            let waits: Vec<_> = (0..20).map(|_| update_backoff(attempt)).collect();
            assert!(waits
                .iter()
                .all(|w| *w >= std::time::Duration::from_millis(1) && *w <= cap));
            if attempt >= 3 {
                assert!(
                    waits.iter().any(|w| *w != waits[0]),
                    "attempt {attempt}: jittered"
                );
            }
        }
    }
}
