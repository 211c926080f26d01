//! Step Functions as the [`ExecutionStarter`], its error codes classified as retryable or refused.

use crate::ports::{ExecutionStarter, StartError};

#[derive(Clone, Debug)]
pub struct SfnStarter {
    pub client: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

/// Step Functions' `StartExecution` error codes that retrying the same request cannot change:
/// the state machine, the name, the input or the role is wrong. Anything else (throttling,
/// `ExecutionLimitExceeded`, service and network errors) is worth retrying.
pub const REFUSED_START_CODES: [&str; 9] = [
    "InvalidArn",
    "InvalidExecutionInput",
    "InvalidName",
    "StateMachineDoesNotExist",
    "StateMachineDeleting",
    "ValidationException",
    "AccessDeniedException",
    "KmsAccessDeniedException",
    "KmsInvalidStateException",
];

/// A failed `StartExecution` as a [`StartError`], by the service's error code.
pub fn start_error(name: &str, code: Option<&str>, message: String) -> StartError {
    let name = name.to_owned();
    if code.is_some_and(|code| REFUSED_START_CODES.contains(&code)) {
        StartError::Refused { name, message }
    } else {
        StartError::Unavailable { name, message }
    }
}

impl ExecutionStarter for SfnStarter {
    async fn start(&self, name: &str, input: &str) -> Result<(), StartError> {
        match self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Same name, same input: the execution is already there.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                Ok(())
            }
            Err(error) => {
                use aws_sdk_sfn::error::ProvideErrorMetadata as _;
                let code = error
                    .as_service_error()
                    .and_then(|e| e.code())
                    .map(str::to_owned);
                let message = aws_sdk_sfn::error::DisplayErrorContext(error).to_string();
                Err(start_error(name, code.as_deref(), message))
            }
        }
    }
}
