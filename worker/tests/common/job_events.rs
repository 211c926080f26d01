//! A test stack's job events as AWS delivers them: an EventBridge bus of its own with a rule
//! matching treemux's events (source and detail-type, as a user's rule would) and an SQS queue
//! as its target, all in moto; the worker is told the bus (`TREEMUX_EVENT_BUS`) and the test
//! reads what reached the queue.

use std::time::{Duration, Instant};
use treemux_functions::job_events::{JobEvent, DETAIL_TYPE, EVENT_SOURCE};

#[derive(Debug)]
pub struct JobEventQueue {
    pub bus: String,
    pub queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

impl JobEventQueue {
    /// Creates the bus `<name>-events`, the queue `<name>-job-events` and the rule between.
    pub async fn create(config: &aws_config::SdkConfig, name: &str) -> Self {
        let events = aws_sdk_eventbridge::Client::new(config);
        let sqs = aws_sdk_sqs::Client::new(config);
        let bus = format!("{name}-events");
        events
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .expect("event bus");
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{name}-job-events"))
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let pattern = serde_json::json!({"source": [EVENT_SOURCE], "detail-type": [DETAIL_TYPE]});
        events
            .put_rule()
            .name(format!("{name}-job-events"))
            .event_bus_name(&bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("rule");
        events
            .put_targets()
            .rule(format!("{name}-job-events"))
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(format!(
                        "arn:aws:sqs:us-east-1:123456789012:{name}-job-events"
                    ))
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("target");
        Self {
            bus,
            queue_url,
            sqs,
        }
    }

    /// Every event that reached the queue so far, in the order received (waits until the
    /// queue has been empty for two seconds).
    pub async fn received(&self) -> Vec<JobEvent> {
        let mut events = Vec::new();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_secs(2) {
            let messages = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive")
                .messages
                .unwrap_or_default();
            if !messages.is_empty() {
                quiet_since = Instant::now();
            }
            for message in messages {
                let body: serde_json::Value =
                    serde_json::from_str(message.body().unwrap_or("")).expect("an event");
                assert_eq!(body["source"], EVENT_SOURCE, "{body}");
                assert_eq!(body["detail-type"], DETAIL_TYPE, "{body}");
                events.push(serde_json::from_value(body["detail"].clone()).expect("a job event"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or(""))
                    .send()
                    .await
                    .expect("delete");
            }
        }
        events
    }
}
