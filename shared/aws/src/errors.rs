//! Sorting SDK errors: which are worth retrying (throttling, 5xx, the network) and which are the
//! caller's mistake. Only error codes and messages are looked at; no request (and so no signature
//! or credential) ever ends up in an error or a log line.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What an SDK call's failure means for the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Throttling, a 5xx, a timeout or a connection failure: the same call may succeed later.
    Transient,
    /// The service refused the request as invalid (a 4xx that retrying cannot fix).
    Invalid,
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "TransactionConflictException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The error code of a service error (`None` for transport failures).
pub(crate) fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

pub(crate) fn kind<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Kind {
    match err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let code = e.err().code().unwrap_or_default();
            if status >= 500 || status == 429 || THROTTLING.contains(&code) {
                Kind::Transient
            } else {
                Kind::Invalid
            }
        }
        // Timeouts, dispatch (connection) failures, unreadable responses: all worth another try.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Kind::Transient,
        // Building the request failed: the input is wrong, and stays wrong.
        _ => Kind::Invalid,
    }
}

/// An SDK call's failure with what it was doing, kept as the `#[source]` of the port errors. Its
/// message carries the service's error code and message (never the request, so never a credential).
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} on {target} failed: {detail}")]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    pub target: String,
    pub detail: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl AwsError {
    pub(crate) fn new<E>(service: &'static str, operation: &'static str, target: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let detail = match &err {
            SdkError::ServiceError(e) => format!(
                "HTTP {} {}: {}",
                e.raw().status().as_u16(),
                e.err().code().unwrap_or("(no code)"),
                e.err().message().unwrap_or("(no message)")
            ),
            other => DisplayErrorContext(other).to_string(),
        };
        AwsError { service, operation, target: target.to_string(), detail, source: Box::new(err) }
    }

    /// An error of the adapter itself (an unreadable response, a missing field), in the same shape.
    pub(crate) fn adapter(service: &'static str, operation: &'static str, target: &str, detail: String) -> Self {
        let source: Box<dyn std::error::Error + Send + Sync> = detail.clone().into();
        AwsError { service, operation, target: target.to_string(), detail, source }
    }
}
