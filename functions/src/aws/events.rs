//! Job events on AWS: EventBridge `PutEvents` to the stack's bus, SNS `Publish` to the optional
//! completion topic (the [`EventSink`] port of [`crate::job_events`]).

use crate::job_events::{EventError, EventSink, JobEvent, SendFuture, DETAIL_TYPE, EVENT_SOURCE};

/// Sends each event to one EventBridge bus (`TREEMUX_EVENT_BUS`: its name or ARN).
#[derive(Clone, Debug)]
pub struct EventBridgeSink {
    pub client: aws_sdk_eventbridge::Client,
    pub bus: String,
}

impl EventSink for EventBridgeSink {
    fn send<'a>(&'a self, event: &'a JobEvent) -> SendFuture<'a> {
        Box::pin(async move {
            let failed = |message: String| EventError {
                destination: format!("EventBridge bus {}", self.bus),
                message,
            };
            let detail = serde_json::to_string(event).map_err(|e| failed(e.to_string()))?;
            let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name(&self.bus)
                .source(EVENT_SOURCE)
                .detail_type(DETAIL_TYPE)
                .detail(detail)
                .build();
            let output = self
                .client
                .put_events()
                .entries(entry)
                .send()
                .await
                .map_err(|e| {
                    failed(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())
                })?;
            // PutEvents answers 200 with per-entry failures.
            match output.entries().first() {
                Some(entry) if entry.error_code().is_some() => Err(failed(format!(
                    "{}: {}",
                    entry.error_code().unwrap_or_default(),
                    entry.error_message().unwrap_or_default()
                ))),
                _ if output.failed_entry_count() > 0 => {
                    Err(failed("the entry was not accepted".to_owned()))
                }
                _ => Ok(()),
            }
        })
    }
}

/// Publishes each event it is given to one SNS topic (`TREEMUX_COMPLETION_TOPIC_ARN`), the
/// subject saying what happened and the message the event's detail as JSON.
#[derive(Clone, Debug)]
pub struct SnsSink {
    pub client: aws_sdk_sns::Client,
    pub topic_arn: String,
}

impl EventSink for SnsSink {
    fn send<'a>(&'a self, event: &'a JobEvent) -> SendFuture<'a> {
        Box::pin(async move {
            let failed = |message: String| EventError {
                destination: format!("SNS topic {}", self.topic_arn),
                message,
            };
            let message = serde_json::to_string(event).map_err(|e| failed(e.to_string()))?;
            self.client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(format!("treemux job {} {}", event.job_id, event.status()))
                .message(message)
                .send()
                .await
                .map_err(|e| failed(aws_sdk_sns::error::DisplayErrorContext(e).to_string()))?;
            Ok(())
        })
    }
}
