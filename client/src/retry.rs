//! When and how the client retries (a pure function, tested with exact values).
//!
//! A write is retried ONLY with its original request id: the ledger deduplicates by request id,
//! so a retry of a write that was in fact applied returns the original outcome (exactly-once).
//! A rejection from the ledger (`insufficient_stock`, `expired`...) is a final outcome and is
//! never retried; only the node-level failures below are.

use protocol::ServerError;

/// What went wrong with one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The node answered an error instead of performing the operation.
    Server(ServerError),
    /// The connection or stream failed (or could not be opened).
    Transport(String),
    /// No reply within the attempt's timeout (the operation may still be performed).
    NoReply,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Server(e) => write!(f, "{e}"),
            Failure::Transport(e) => write!(f, "transport: {e}"),
            Failure::NoReply => f.write_str("no reply in time"),
        }
    }
}

/// How hard the client tries (from [`crate::ClientConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Give up once this much time has passed since the first attempt, ms.
    pub deadline_ms: u64,
    /// First backoff, ms; doubled at every retry.
    pub backoff_ms_min: u64,
    /// Largest backoff, ms.
    pub backoff_ms_max: u64,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send again at once to this node (the leader named by a `not_leader` answer).
    Redirect {
        /// `host:port` of the node.
        node: String,
        /// Wait this long first, ms (0 for a first redirect; a backoff when hints go in
        /// circles during an election).
        delay_ms: u64,
    },
    /// Wait `delay_ms` (the sleep adds jitter: see [`jittered`]), then try again.
    Retry {
        /// Base wait, ms.
        delay_ms: u64,
        /// Forget the node: find the leader again (leader routes) or move to another node.
        elsewhere: bool,
    },
    /// Stop: the error is final, or retries or the deadline ran out.
    GiveUp,
}

impl RetryPolicy {
    /// The backoff before retry number `attempt + 1`: `backoff_ms_min * 2^attempt`, at most
    /// `backoff_ms_max`.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let doubled = self
            .backoff_ms_min
            .checked_shl(attempt.min(63))
            .filter(|v| v >> attempt.min(63) == self.backoff_ms_min)
            .unwrap_or(u64::MAX);
        doubled.min(self.backoff_ms_max)
    }

    /// What to do after attempt number `attempt` (0 for the first) failed with `failure`,
    /// `elapsed_ms` after the first attempt started.
    pub fn decide(&self, attempt: u32, elapsed_ms: u64, failure: &Failure) -> Decision {
        if attempt >= self.retries {
            return Decision::GiveUp;
        }
        let backoff = self.backoff_ms(attempt);
        let decision = match failure {
            Failure::Server(ServerError::NotLeader {
                leader: Some(leader),
            }) => Decision::Redirect {
                node: leader.addr.clone(),
                delay_ms: if attempt == 0 { 0 } else { backoff },
            },
            Failure::Server(ServerError::Busy) => Decision::Retry {
                delay_ms: backoff,
                elsewhere: false,
            },
            Failure::Server(
                ServerError::NotLeader { leader: None }
                | ServerError::NotReady
                | ServerError::Timeout
                | ServerError::Unavailable { .. }
                | ServerError::Removed { .. },
            )
            | Failure::Transport(_)
            | Failure::NoReply => Decision::Retry {
                delay_ms: backoff,
                elsewhere: true,
            },
            Failure::Server(
                ServerError::InvalidOp { .. }
                | ServerError::Internal { .. }
                | ServerError::Forbidden { .. },
            ) => return Decision::GiveUp,
        };
        let delay = match &decision {
            Decision::Redirect { delay_ms, .. } | Decision::Retry { delay_ms, .. } => *delay_ms,
            Decision::GiveUp => 0,
        };
        if elapsed_ms.saturating_add(delay) >= self.deadline_ms {
            return Decision::GiveUp;
        }
        decision
    }
}

/// Whether a node's error is worth another attempt (see [`RetryPolicy::decide`]).
pub fn retryable(error: &ServerError) -> bool {
    !matches!(
        error,
        ServerError::InvalidOp { .. }
            | ServerError::Internal { .. }
            | ServerError::Forbidden { .. }
    )
}

/// A random wait in `[delay_ms / 2, delay_ms]`, so that clients that failed together do not
/// retry together.
pub fn jittered(delay_ms: u64) -> u64 {
    if delay_ms < 2 {
        return delay_ms;
    }
    let half = delay_ms / 2;
    half + rand::random::<u64>() % (delay_ms - half + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::NodeAddr;

    const POLICY: RetryPolicy = RetryPolicy {
        retries: 5,
        deadline_ms: 10_000,
        backoff_ms_min: 10,
        backoff_ms_max: 100,
    };

    #[track_caller]
    fn check(attempt: u32, elapsed_ms: u64, failure: Failure, expected: Decision) {
        assert_eq!(POLICY.decide(attempt, elapsed_ms, &failure), expected);
    }

    fn server(e: ServerError) -> Failure {
        Failure::Server(e)
    }

    fn retry(delay_ms: u64, elsewhere: bool) -> Decision {
        Decision::Retry {
            delay_ms,
            elsewhere,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let got: Vec<u64> = (0..6).map(|a| POLICY.backoff_ms(a)).collect();
        assert_eq!(got, vec![10, 20, 40, 80, 100, 100]);
        assert_eq!(POLICY.backoff_ms(200), 100, "no overflow");
    }

    #[test]
    fn follows_leader_hints_at_once_then_with_backoff() {
        let hint = || {
            server(ServerError::NotLeader {
                leader: Some(NodeAddr {
                    id: 2,
                    addr: "10.0.0.2:7400".into(),
                }),
            })
        };
        check(
            0,
            0,
            hint(),
            Decision::Redirect {
                node: "10.0.0.2:7400".into(),
                delay_ms: 0,
            },
        );
        check(
            2,
            0,
            hint(),
            Decision::Redirect {
                node: "10.0.0.2:7400".into(),
                delay_ms: 40,
            },
        );
        check(
            0,
            0,
            server(ServerError::NotLeader { leader: None }),
            retry(10, true),
        );
    }

    #[test]
    fn busy_stays_other_failures_move() {
        check(1, 0, server(ServerError::Busy), retry(20, false));
        check(3, 0, server(ServerError::NotReady), retry(80, true));
        check(0, 0, server(ServerError::Timeout), retry(10, true));
        check(
            0,
            0,
            server(ServerError::Unavailable {
                message: "no quorum".into(),
            }),
            retry(10, true),
        );
        check(4, 0, Failure::Transport("reset".into()), retry(100, true));
        check(0, 0, Failure::NoReply, retry(10, true));
    }

    #[test]
    fn gives_up_on_final_errors_retries_and_deadline() {
        check(
            0,
            0,
            server(ServerError::InvalidOp {
                message: "second subscription".into(),
            }),
            Decision::GiveUp,
        );
        check(
            0,
            0,
            server(ServerError::Internal {
                message: "io".into(),
            }),
            Decision::GiveUp,
        );
        check(5, 0, server(ServerError::Busy), Decision::GiveUp);
        check(0, 9_990, server(ServerError::Busy), Decision::GiveUp);
        check(0, 9_989, server(ServerError::Busy), retry(10, false));
    }

    #[test]
    fn jitter_stays_in_range() {
        assert_eq!(jittered(0), 0);
        assert_eq!(jittered(1), 1);
        for _ in 0..1000 {
            let j = jittered(10);
            assert!((5..=10).contains(&j), "{j}");
        }
    }

    #[test]
    fn only_node_level_errors_are_retryable() {
        assert!(retryable(&ServerError::Busy));
        assert!(retryable(&ServerError::NotLeader { leader: None }));
        assert!(retryable(&ServerError::Timeout));
        assert!(!retryable(&ServerError::Internal {
            message: String::new()
        }));
    }
}
