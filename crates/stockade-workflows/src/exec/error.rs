//! Typed step errors and their classes: what decides a retry, what the error event says,
//! and the only source of the text that reaches the journal and the event.
//!
//! Invariants: a message is built from a typed error (never a raw value of the scope)
//! and passes the alert scrubber ([`scrubbed`]) before it is stored; a class is one
//! short, fixed word, so the stored `"class: message"` form can be read back on resume.

use crate::definition::RetryOn;
use stockade_store::{Change, Lease, StepOutcome, StepStarted, StoreError};

/// The stored error text's longest form, in characters (the store cuts there too).
pub const MESSAGE_MAX: usize = stockade_store::jobs::MAX_ERROR_CHARS;

/// What kind of failure a step had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A dependency was unavailable (a busy database, a 5xx, a refused connection).
    Transient,
    /// The step ran longer than its `timeout`.
    Timeout,
    /// An expression did not evaluate (a missing value is an error, never a null).
    Expression,
    /// A parameter is missing or has the wrong shape.
    Invalid,
    /// A `fail` step.
    Fail,
    /// The step needs something the workflow's permissions do not grant.
    Permission,
    /// A step kind this build does not run yet.
    Unsupported,
    /// A `workflow.call` whose sub-workflow failed.
    SubWorkflow,
    /// A server answered a 4xx other than 429 (the status is on the error).
    Http,
}

impl ErrorClass {
    const ALL: [ErrorClass; 9] = [
        ErrorClass::Transient,
        ErrorClass::Timeout,
        ErrorClass::Expression,
        ErrorClass::Invalid,
        ErrorClass::Fail,
        ErrorClass::Permission,
        ErrorClass::Unsupported,
        ErrorClass::SubWorkflow,
        ErrorClass::Http,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Expression => "expression",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Fail => "fail",
            ErrorClass::Permission => "permission",
            ErrorClass::Unsupported => "unsupported",
            ErrorClass::SubWorkflow => "subworkflow",
            ErrorClass::Http => "http",
        }
    }

    /// The class of a stored `"class: message"` text (`invalid` when unreadable).
    pub fn of_stored(text: &str) -> ErrorClass {
        let head = text.split_once(':').map_or("", |(h, _)| h);
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.as_str() == head)
            .unwrap_or(ErrorClass::Invalid)
    }

    /// Whether a retry policy with `on` retries this class. `transient`: timeouts and
    /// unavailable dependencies. `always`: everything except a `fail` step, a refused
    /// permission, an unsupported step and a failed sub-workflow (whose own steps retried
    /// already) — those fail the same way every time.
    pub fn retried(self, on: RetryOn) -> bool {
        match on {
            RetryOn::Transient => matches!(self, ErrorClass::Transient | ErrorClass::Timeout),
            RetryOn::Always => !matches!(
                self,
                ErrorClass::Fail
                    | ErrorClass::Permission
                    | ErrorClass::Unsupported
                    | ErrorClass::SubWorkflow
            ),
        }
    }
}

/// A step's failure: its class and a message built from typed errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", class.as_str())]
pub struct StepError {
    pub class: ErrorClass,
    pub message: String,
    /// The last HTTP status, when the step made a request.
    pub status: Option<u16>,
}

impl StepError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        StepError {
            class,
            message: message.into(),
            status: None,
        }
    }

    /// The text stored in the journal and the error event: `"class: message"`, scrubbed
    /// of secrets and buyer data, cut to [`MESSAGE_MAX`] characters.
    pub fn stored(&self) -> String {
        scrubbed(&self.to_string())
    }
}

/// `text` through the alert scrubber, cut to [`MESSAGE_MAX`] characters.
pub fn scrubbed(text: &str) -> String {
    stockade_alerts::scrub::scrub(text, MESSAGE_MAX)
}

/// A step that failed for good: it bubbles up to the nearest `continue_on_error` or
/// fails the execution.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The step's path in the journal.
    pub step: String,
    pub error: StepError,
    /// Attempts the step made (across claims).
    pub attempts: i64,
    /// The failed attempt not committed yet: it is committed with whatever the failure
    /// leads to (the job's failure, or the step's "continued" record), in one commit.
    pub pending: Option<Box<Attempt>>,
}

/// An attempt of a step, and whether its start is in the journal.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub started: StepStarted,
    /// `None`: the start was journaled (a step reaching outside the database), so its
    /// end updates that row. `Some(t)`: nothing was journaled yet (a step whose only
    /// effects are its changes); the whole attempt, started at `t`, is recorded at once.
    pub unjournaled_since: Option<i64>,
}

impl Attempt {
    pub fn journaled(started: StepStarted) -> Attempt {
        Attempt {
            started,
            unjournaled_since: None,
        }
    }

    /// The fenced, audited change recording how this attempt ended.
    pub fn record(&self, lease: &Lease, outcome: &StepOutcome) -> Result<Change, StoreError> {
        match self.unjournaled_since {
            None => lease.step_change(&self.started, outcome),
            Some(at) => lease.attempt_change(&self.started, at, outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_read_back_from_stored_text_and_decide_retries() {
        for c in ErrorClass::ALL {
            let e = StepError::new(c, "boom");
            assert_eq!(ErrorClass::of_stored(&e.stored()), c);
        }
        assert_eq!(ErrorClass::of_stored("garbage"), ErrorClass::Invalid);
        assert!(ErrorClass::Timeout.retried(RetryOn::Transient));
        assert!(!ErrorClass::Expression.retried(RetryOn::Transient));
        assert!(ErrorClass::Expression.retried(RetryOn::Always));
        assert!(!ErrorClass::Fail.retried(RetryOn::Always));
    }

    #[test]
    fn stored_messages_are_scrubbed() {
        let e = StepError::new(ErrorClass::Transient, "buyer jane.doe@example.com refused");
        assert!(!e.stored().contains("jane.doe"), "{}", e.stored());
    }
}
