//! The client's errors. A ledger rejection is NOT an error here: it is the `Err` side of a
//! write's [`engine::Outcome`] (a final answer). A [`ClientError`] means no final answer was
//! obtained.

use protocol::{ProtocolErrorCode, ServerError};

use crate::channel::CallError;
use crate::retry::Failure;

/// Why an operation got no final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The configuration cannot work (no node address, unreadable CA, bad address...).
    Config(String),
    /// The request breaks a protocol limit (operations per frame, frame bytes) and was not sent.
    Limit(String),
    /// Every attempt failed with a retryable failure until the retries or the deadline ran
    /// out. For a write, `last` may hide an applied write: retry it with the SAME request id
    /// to learn its outcome.
    GaveUp {
        /// Attempts made (first one included).
        attempts: u32,
        /// The last failure; [`Failure::Server`] carries the last [`ServerError`].
        last: Failure,
    },
    /// The node answered an error that retrying cannot fix (`invalid_op`, `internal`).
    Server(ServerError),
    /// The node rejected our frame as a protocol error (a version or encoding mismatch).
    Protocol {
        /// The node's code.
        code: ProtocolErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// The node answered something the protocol does not allow here (a result of the wrong
    /// kind or count).
    Unexpected(String),
    /// The node cut a change-feed subscription that was not read (its queue of unsent events
    /// on the node stayed full). Every event before `resume_from` was delivered, none after:
    /// the same [`crate::Subscription`]'s next call subscribes again from there.
    SubscriptionCut {
        /// Feed sequence number of the first event not delivered.
        resume_from: u64,
        /// The node's explanation (which budget was full).
        reason: String,
    },
}

impl ClientError {
    /// The last node error, if the operation failed because of one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            ClientError::Server(e)
            | ClientError::GaveUp {
                last: Failure::Server(e),
                ..
            } => Some(e),
            _ => None,
        }
    }

    pub(crate) fn from_call(e: CallError) -> ClientError {
        match e {
            CallError::Limit(why) => ClientError::Limit(why),
            CallError::Protocol { code, message } => ClientError::Protocol { code, message },
            CallError::Unexpected(why) => ClientError::Unexpected(why),
            CallError::Closed(why) => ClientError::GaveUp {
                attempts: 1,
                last: Failure::Transport(why),
            },
            CallError::NoReply => ClientError::GaveUp {
                attempts: 1,
                last: Failure::NoReply,
            },
            CallError::Refused(why) => ClientError::Server(ServerError::Forbidden {
                message: format!("connection refused: {why}"),
            }),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Config(why) => write!(f, "configuration: {why}"),
            ClientError::Limit(why) => write!(f, "not sent: {why}"),
            ClientError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempt(s): {last}")
            }
            ClientError::Server(e) => write!(f, "node error: {e}"),
            ClientError::Protocol { code, message } => {
                write!(f, "protocol error {code:?}: {message}")
            }
            ClientError::Unexpected(why) => write!(f, "unexpected answer: {why}"),
            ClientError::SubscriptionCut {
                resume_from,
                reason,
            } => write!(
                f,
                "subscription cut by the node ({reason}); resume from sequence {resume_from}"
            ),
        }
    }
}

impl std::error::Error for ClientError {}
