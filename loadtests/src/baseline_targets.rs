//! The Redis and PostgreSQL baselines ([`crate::baselines`]) as [`Target`]s, so the same
//! generator drives them with the same workload as stockd.
//!
//! Their answers map onto the ledger's codes: `Granted` is `ok`, `Insufficient` is
//! `insufficient_stock`, `AlreadyExists` is `already_exists`; `release`/`commit` answering
//! `false` (no live hold) is `not_found`; a [`BaselineError`] is an error without a final
//! answer (`error:baseline`).

use std::sync::Arc;

use crate::baselines::{self, BaselineError, PostgresBaseline, RedisBaseline, ReserveOutcome};
use crate::target::{code, Key, Line, OpError, OpResult, Target};

fn err(e: BaselineError) -> OpError {
    OpError::new("baseline", e.to_string())
}

fn lines_of(lines: &[Line]) -> Vec<baselines::Line> {
    lines
        .iter()
        .map(|l| baselines::Line::new(l.sku.clone(), l.location.clone(), l.qty))
        .collect()
}

fn reserve_code(o: &ReserveOutcome) -> &'static str {
    match o {
        ReserveOutcome::Granted => code::OK,
        ReserveOutcome::Insufficient { .. } => code::INSUFFICIENT_STOCK,
        ReserveOutcome::AlreadyExists => code::ALREADY_EXISTS,
    }
}

fn done_code(done: bool) -> &'static str {
    if done {
        code::OK
    } else {
        code::NOT_FOUND
    }
}

macro_rules! baseline_target {
    ($name:ident, $inner:ty, $label:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone)]
        pub struct $name {
            inner: Arc<$inner>,
        }

        impl $name {
            /// Connects with `connections` connections.
            pub async fn connect(url: &str, connections: usize) -> Result<$name, OpError> {
                let inner = <$inner>::connect(url, connections).await.map_err(err)?;
                Ok($name {
                    inner: Arc::new(inner),
                })
            }
        }

        impl Target for $name {
            fn name(&self) -> String {
                $label.to_owned()
            }

            async fn reset(&self) -> Result<(), OpError> {
                self.inner.reset().await.map_err(err)
            }

            async fn load_stock(&self, stock: Vec<(String, String, i64)>) -> Result<(), OpError> {
                for chunk in stock.chunks(10_000) {
                    self.inner.load_stock(chunk).await.map_err(err)?;
                }
                Ok(())
            }

            async fn reserve(&self, id: String, lines: Vec<Line>, ttl_ms: u64) -> OpResult {
                let outcome = self
                    .inner
                    .reserve(&id, &lines_of(&lines), ttl_ms)
                    .await
                    .map_err(err)?;
                Ok(reserve_code(&outcome))
            }

            async fn release(&self, id: String) -> OpResult {
                Ok(done_code(self.inner.release(&id).await.map_err(err)?))
            }

            async fn commit(&self, id: String, _lines: Vec<Line>) -> OpResult {
                Ok(done_code(self.inner.commit(&id).await.map_err(err)?))
            }

            async fn available(&self, keys: Vec<Key>) -> Result<Vec<i64>, OpError> {
                self.inner.available(&keys).await.map_err(err)
            }

            async fn totals(&self, _keys: Vec<Key>) -> Result<(i64, i64), OpError> {
                self.inner.totals().await.map_err(err)
            }
        }
    };
}

baseline_target!(
    RedisTarget,
    RedisBaseline,
    "redis",
    "Redis: one Lua script per operation (atomic check-and-decrement of every line)."
);
baseline_target!(
    PostgresTarget,
    PostgresBaseline,
    "postgres",
    "PostgreSQL: one transaction per operation with conditional updates."
);
