//! What a scenario drives: a [`Target`] is anything that can hold stock with all-or-nothing
//! multi-line reservations — stockd through the client library ([`crate::stockd::StockdTarget`])
//! or a baseline (Redis with a Lua script, PostgreSQL with one transaction per reservation).
//! Every target answers the same calls with the same codes, so one generator drives them all
//! and ratios between them are honest.

use std::future::Future;

use engine::ids::{LocationId, SkuId};

/// One reservation line at an exact location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units, > 0.
    pub qty: i64,
}

/// Answer codes shared by every target (the ledger's stable codes).
pub mod code {
    /// Done.
    pub const OK: &str = "ok";
    /// Not enough stock for some line.
    pub const INSUFFICIENT_STOCK: &str = "insufficient_stock";
    /// The id was used before.
    pub const ALREADY_EXISTS: &str = "already_exists";
    /// No such (live) reservation.
    pub const NOT_FOUND: &str = "not_found";
    /// The reservation expired.
    pub const EXPIRED: &str = "expired";
}

/// No final answer: the target failed (`busy`, `timeout`, `transport`...), with details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// A short stable code for reports.
    pub code: String,
    /// What happened.
    pub detail: String,
}

impl OpError {
    /// An error with a code and details.
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> OpError {
        OpError {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for OpError {}

/// A final answer's code ([`code`]) or an error.
pub type OpResult = Result<&'static str, OpError>;

/// Something that keeps stock and reserves it all-or-nothing. Cheap to clone (clones share
/// connections); used from many tasks at once.
pub trait Target: Clone + Send + Sync + 'static {
    /// A short name for reports (`stockd`, `redis`, `postgres`).
    fn name(&self) -> String;

    /// Forgets everything from earlier runs, where the target can (the baselines empty their
    /// tables; stockd keeps its ledger, and scenarios use fresh names instead).
    fn reset(&self) -> impl Future<Output = Result<(), OpError>> + Send {
        async { Ok(()) }
    }

    /// Sets on-hand stock (`(sku, location, on_hand)`), creating what is needed. Scenarios use
    /// fresh SKU names per run, so targets that cannot reset need not.
    fn load_stock(
        &self,
        stock: Vec<(String, String, i64)>,
    ) -> impl Future<Output = Result<(), OpError>> + Send;

    /// An all-or-nothing hold of every line for `ttl_ms`.
    fn reserve(
        &self,
        id: String,
        lines: Vec<Line>,
        ttl_ms: u64,
    ) -> impl Future<Output = OpResult> + Send;

    /// Many holds at once (a checkout gateway's frame): one answer each, in order. Targets
    /// without a batched path send them concurrently.
    fn reserve_frame(
        &self,
        holds: Vec<(String, Vec<Line>)>,
        ttl_ms: u64,
    ) -> impl Future<Output = Vec<OpResult>> + Send {
        let this = self.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            let n = holds.len();
            for (k, (id, lines)) in holds.into_iter().enumerate() {
                let t = this.clone();
                tasks.spawn(async move { (k, t.reserve(id, lines, ttl_ms).await) });
            }
            let mut out: Vec<OpResult> = vec![Err(OpError::new("internal", "task lost")); n];
            while let Some(joined) = tasks.join_next().await {
                if let Ok((k, r)) = joined {
                    out[k] = r;
                }
            }
            out
        }
    }

    /// Releases a live hold.
    fn release(&self, id: String) -> impl Future<Output = OpResult> + Send;

    /// Places the hold as an order and fulfils (ships) it: on_hand drops by its units.
    fn commit(&self, id: String, lines: Vec<Line>) -> impl Future<Output = OpResult> + Send;

    /// Units available to sell of each `(sku, location)`, in order (a product listing page).
    fn available(&self, keys: Vec<Key>) -> impl Future<Output = Result<Vec<i64>, OpError>> + Send;

    /// Sums of on_hand and reserved units over `keys` (consistency checks), as of now.
    fn totals(&self, keys: Vec<Key>) -> impl Future<Output = Result<(i64, i64), OpError>> + Send;
}

/// One balance a read names: (SKU, location). Engine ids, so that a listing page's 50 keys are
/// cloned and moved without a heap allocation each (ids of up to 24 bytes are inline).
pub type Key = (SkuId, LocationId);

/// `keys` ((SKU, location) pairs, in order) cut into runs of one location and at most
/// [`engine::limits::QUERY_SKUS_MAX`] SKUs: one availability query each, as a listing page
/// asks one location for many SKUs. Each run is (location, its SKUs in order). The keys are
/// moved into the runs, not copied: a listing page has 50 of them per request.
pub fn location_runs(keys: Vec<Key>) -> Vec<(LocationId, Vec<SkuId>)> {
    let mut runs: Vec<(LocationId, Vec<SkuId>)> = Vec::new();
    for (sku, location) in keys {
        match runs.last_mut() {
            Some((at, skus)) if *at == location && skus.len() < engine::limits::QUERY_SKUS_MAX => {
                skus.push(sku)
            }
            _ => runs.push((location, vec![sku])),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::location_runs;
    use engine::ids::{LocationId, SkuId};

    #[test]
    fn keys_are_cut_at_each_new_location_and_at_the_query_limit() {
        let key = |s: &str, l: &str| (SkuId::from(s), LocationId::from(l));
        let keys = [key("A", "x"), key("B", "x"), key("C", "y"), key("D", "x")];
        let runs = location_runs(keys.to_vec());
        let runs: Vec<(&str, Vec<&str>)> = runs
            .iter()
            .map(|(l, s)| (l.as_str(), s.iter().map(SkuId::as_str).collect()))
            .collect();
        assert_eq!(
            runs,
            vec![("x", vec!["A", "B"]), ("y", vec!["C"]), ("x", vec!["D"])]
        );
        let many: Vec<_> = (0..engine::limits::QUERY_SKUS_MAX + 1)
            .map(|i| key(&i.to_string(), "x"))
            .collect();
        let sizes: Vec<usize> = location_runs(many).iter().map(|r| r.1.len()).collect();
        assert_eq!(sizes, vec![engine::limits::QUERY_SKUS_MAX, 1]);
    }
}
