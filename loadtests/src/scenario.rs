//! The scenarios: what request `i` of a run does against a [`Target`], and the flash sale.
//!
//! - `checkout`: a hold of 1-5 lines over a Zipf-skewed catalogue, then 70% placed and
//!   fulfilled, 20% released, 10% left to expire ([`crate::mix::CheckoutMix`]). With
//!   `frame` > 1, request `i` is a checkout gateway's frame of `frame` holds (reservations
//!   only: the gateway's fast path).
//! - `store-reads`: availability of 50 SKUs at one location (a product listing page), with the
//!   target's read consistency (`local` for stockd).
//! - `flash-sale` ([`flash_sale`]): N contenders for K units of one SKU at once; exactly
//!   min(N, K) holds must be granted, and the stock must show it.
//!
//! Names are prefixed with the run's tag (`--tag`), so runs never collide on a live cluster
//! that keeps its state (ids of holds and orders, SKUs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::ids::{LocationId, SkuId};
use serde::Serialize;

use crate::mix::{sku_name, CheckoutMix, Fate, Rng, Zipf};
use crate::stats::{summarize, Recorder};
use crate::target::{code, Key, Line, OpResult, Target};

/// A checkout of the workload: its lines (SKU names at the scenario's location) and what
/// happens to the hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCheckout {
    /// The lines.
    pub lines: Vec<Line>,
    /// Placed, released or left to expire.
    pub fate: Fate,
}

/// Which workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Kind {
    /// Reservations of 1-5 lines, then placed and fulfilled, released or left to expire.
    Checkout,
    /// N contenders for K units of one SKU.
    FlashSale,
    /// Availability of 50 SKUs per request, `local` reads.
    StoreReads,
}

impl Kind {
    /// The scenario's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Checkout => "checkout",
            Kind::FlashSale => "flash-sale",
            Kind::StoreReads => "store-reads",
        }
    }
}

/// A scenario's settings.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioConfig {
    /// Prefix of every SKU and hold id of the run.
    pub tag: String,
    /// Seed of every choice: request `i` depends only on `(seed, i)`.
    pub seed: u64,
    /// The checkout mix (catalogue size, skew, lines, fates).
    pub mix: CheckoutMix,
    /// The location holding the stock.
    pub location: String,
    /// Opening on-hand units of every SKU.
    pub stock_per_sku: i64,
    /// TTL of holds, ms.
    pub ttl_ms: u64,
    /// Holds per frame (1: one request per hold).
    pub frame: usize,
    /// SKUs per listing read.
    pub listing: usize,
    /// Flash sale: units on sale (K).
    pub flash_units: i64,
    /// Flash sale: contenders (N), one unit each.
    pub flash_contenders: u64,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            tag: "t".to_owned(),
            seed: 1,
            mix: CheckoutMix::default(),
            location: "dc-1".to_owned(),
            stock_per_sku: 1_000_000_000,
            ttl_ms: 10_000,
            frame: 1,
            listing: 50,
            flash_units: 100,
            flash_contenders: 10_000,
        }
    }
}

/// The id of the SKU of rank `k` in a run tagged `tag`.
fn tagged_sku(tag: &str, k: usize) -> String {
    format!("{tag}{}", sku_name(k))
}

/// A scenario ready to run: its settings and the popularity distribution.
pub struct Workload {
    /// Which scenario.
    pub kind: Kind,
    /// Its settings.
    pub config: ScenarioConfig,
    zipf: Zipf,
    /// The catalogue's SKU ids by rank, with the tag, made once: a listing page names 50 and
    /// formatting them per request was a tenth of the generator's CPU (its bottleneck in
    /// `store-reads`, where the nodes sat at a quarter of a core each). Engine ids, inline up
    /// to 24 bytes, so that a listing page clones 50 of them without allocating.
    skus: Vec<SkuId>,
    /// `config.location` as an engine id, for the same reason.
    location: LocationId,
}

impl Workload {
    /// A workload of `kind`.
    pub fn new(kind: Kind, config: ScenarioConfig) -> Workload {
        let zipf = Zipf::new(config.mix.skus.max(1), config.mix.skew);
        let skus = (0..zipf.len())
            .map(|k| SkuId::from(tagged_sku(&config.tag, k)))
            .collect();
        let location = LocationId::from(config.location.as_str());
        Workload {
            kind,
            config,
            zipf,
            skus,
            location,
        }
    }

    /// The operation whose rate is the run's throughput.
    pub fn primary(&self) -> &'static str {
        match self.kind {
            Kind::Checkout | Kind::FlashSale => "reserve",
            Kind::StoreReads => "read",
        }
    }

    /// Primary operations per request (`frame` holds per frame in gateway mode).
    pub fn per_request(&self) -> u64 {
        match self.kind {
            Kind::Checkout => self.config.frame.max(1) as u64,
            Kind::FlashSale | Kind::StoreReads => 1,
        }
    }

    /// SKU id of rank `k`, with the tag the workload was made with.
    pub fn sku(&self, k: usize) -> String {
        self.sku_id(k).as_str().to_owned()
    }

    /// [`Workload::sku`] as an engine id (no allocation for a catalogue SKU of up to 24 bytes).
    pub fn sku_id(&self, k: usize) -> SkuId {
        match self.skus.get(k) {
            Some(id) => id.clone(),
            None => SkuId::from(tagged_sku(&self.config.tag, k)),
        }
    }

    /// The flash sale's SKU.
    pub fn flash_sku(&self) -> String {
        format!("{}flash", self.config.tag)
    }

    /// The opening stock of the scenario: every catalogue SKU (or the flash SKU) at the
    /// location.
    pub fn stock(&self) -> Vec<(String, String, i64)> {
        match self.kind {
            Kind::FlashSale => vec![(
                self.flash_sku(),
                self.config.location.clone(),
                self.config.flash_units,
            )],
            Kind::Checkout | Kind::StoreReads => (0..self.zipf.len())
                .map(|k| {
                    (
                        self.sku(k),
                        self.config.location.clone(),
                        self.config.stock_per_sku,
                    )
                })
                .collect(),
        }
    }

    /// The lines and fate of checkout `i`.
    pub fn checkout(&self, i: u64) -> PlannedCheckout {
        let c = self
            .config
            .mix
            .checkout(&self.zipf, &mut Rng::for_request(self.config.seed, i));
        let lines = c
            .lines
            .iter()
            .map(|l| Line {
                sku: self.sku(l.sku),
                location: self.config.location.clone(),
                qty: l.qty,
            })
            .collect();
        PlannedCheckout {
            lines,
            fate: c.fate,
        }
    }

    /// The hold id of checkout `i`.
    pub fn hold_id(&self, i: u64) -> String {
        format!("{}h{i}", self.config.tag)
    }

    /// The `(sku, location)` keys of listing read `i`.
    pub fn listing(&self, i: u64) -> Vec<Key> {
        let mut rng = Rng::for_request(self.config.seed ^ 0x5EED, i);
        crate::mix::listing(&self.zipf, self.config.listing, &mut rng)
            .into_iter()
            .map(|k| (self.sku_id(k), self.location.clone()))
            .collect()
    }

    /// Runs request `i` against `target`, recording latencies from `sent` (the intended send
    /// time in open loop, the actual one in closed loop).
    pub async fn run_one<T: Target>(&self, target: &T, i: u64, sent: Instant, rec: &Recorder) {
        match self.kind {
            Kind::Checkout if self.config.frame > 1 => {
                let n = self.config.frame as u64;
                let holds: Vec<(String, Vec<Line>)> = (i * n..(i + 1) * n)
                    .map(|j| (self.hold_id(j), self.checkout(j).lines))
                    .collect();
                let results = target.reserve_frame(holds, self.config.ttl_ms).await;
                let done = Instant::now();
                let mut codes: BTreeMap<String, u64> = BTreeMap::new();
                for r in &results {
                    *codes.entry(result_code(r)).or_default() += 1;
                }
                rec.record_many("reserve", done - sent, &codes, done);
            }
            Kind::Checkout | Kind::FlashSale => {
                let PlannedCheckout { lines, fate } = self.checkout(i);
                let id = self.hold_id(i);
                let r = target
                    .reserve(id.clone(), lines.clone(), self.config.ttl_ms)
                    .await;
                let done = Instant::now();
                rec.record("reserve", done - sent, &result_code(&r), done);
                if r != Ok(code::OK) {
                    return;
                }
                let (op, r) = match fate {
                    Fate::Commit => ("commit", target.commit(id, lines).await),
                    Fate::Release => ("release", target.release(id).await),
                    Fate::Expire => return,
                };
                let end = Instant::now();
                rec.record(op, end - done, &result_code(&r), end);
            }
            Kind::StoreReads => {
                let keys = self.listing(i);
                let r = target.available(keys).await;
                let done = Instant::now();
                let code = match &r {
                    Ok(_) => code::OK.to_owned(),
                    Err(e) => format!("error:{}", e.code),
                };
                rec.record("read", done - sent, &code, done);
            }
        }
    }
}

/// A result's code for reports: the answer's code, or `error:<code>`.
pub fn result_code(r: &OpResult) -> String {
    match r {
        Ok(c) => (*c).to_owned(),
        Err(e) => format!("error:{}", e.code),
    }
}

/// What a flash sale showed.
#[derive(Debug, Clone, Serialize)]
pub struct FlashSaleReport {
    /// Units on sale.
    pub units: i64,
    /// Contenders (one unit each).
    pub contenders: u64,
    /// Holds granted.
    pub granted: u64,
    /// Answers by code (errors as `error:<code>`).
    pub outcomes: BTreeMap<String, u64>,
    /// Availability after the sale.
    pub available_after: i64,
    /// Reserved units after the sale.
    pub reserved_after: i64,
    /// On-hand units after the sale (holds do not change it).
    pub on_hand_after: i64,
    /// Whether exactly min(N, K) holds were granted, no contender went unanswered, and the
    /// stock (read consistently) shows exactly those units reserved.
    pub exact: bool,
    /// Latency of every contender, from the common start, µs.
    pub latency: crate::stats::LatencySummary,
    /// Seconds from the start to the last answer.
    pub seconds: f64,
    /// The run's statistics (latency curve, timeline).
    pub stats: crate::stats::RunStats,
}

/// Runs a flash sale: every contender sends its one-unit hold at the same instant (in tasks
/// spread over the target's connections); latency is measured from that instant. Then reads
/// the stock back and checks that exactly min(N, K) holds were granted.
pub async fn flash_sale<T: Target>(target: &T, workload: &Arc<Workload>) -> FlashSaleReport {
    let cfg = &workload.config;
    let sku = workload.flash_sku();
    let location = cfg.location.clone();
    let start = Instant::now() + Duration::from_millis(50);
    let rec = Arc::new(Recorder::new(start, "reserve"));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cfg.flash_contenders {
        let (t, rec, sku, location) = (target.clone(), rec.clone(), sku.clone(), location.clone());
        let id = format!("{}f{i}", cfg.tag);
        let ttl = cfg.ttl_ms.max(60_000);
        tasks.spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let lines = vec![Line {
                sku,
                location,
                qty: 1,
            }];
            let r = t.reserve(id, lines, ttl).await;
            let done = Instant::now();
            rec.record("reserve", done - start, &result_code(&r), done);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let stats = rec.finish(elapsed);
    let outcomes = stats
        .op("reserve")
        .map(|o| o.outcomes.clone())
        .unwrap_or_default();
    let granted = outcomes.get(code::OK).copied().unwrap_or(0);
    let key = vec![(SkuId::from(sku), LocationId::from(cfg.location.as_str()))];
    // `available` may be a `local` read: give followers a moment to apply the last entry.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let available_after = target
        .available(key.clone())
        .await
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(-1);
    let (on_hand_after, reserved_after) = target.totals(key).await.unwrap_or((-1, -1));
    let want = (cfg.flash_contenders as i64).min(cfg.flash_units);
    let errors: u64 = outcomes
        .iter()
        .filter(|(c, _)| c.starts_with("error:"))
        .map(|(_, n)| n)
        .sum();
    let exact = errors == 0
        && granted as i64 == want
        && reserved_after == want
        && on_hand_after == cfg.flash_units;
    FlashSaleReport {
        units: cfg.flash_units,
        contenders: cfg.flash_contenders,
        granted,
        outcomes,
        available_after,
        reserved_after,
        on_hand_after,
        exact,
        latency: rec
            .op("reserve")
            .map(|o| summarize(&o.latency))
            .unwrap_or_default(),
        seconds: elapsed.as_secs_f64(),
        stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_tag() {
        let w = Workload::new(
            Kind::Checkout,
            ScenarioConfig {
                tag: "r7:".to_owned(),
                ..ScenarioConfig::default()
            },
        );
        assert_eq!(w.sku(0), "r7:sku-000001");
        assert_eq!(w.sku(9_999), "r7:sku-010000");
        assert_eq!(
            w.sku(10_000),
            "r7:sku-010001",
            "past the catalogue: formatted"
        );
        assert_eq!(w.hold_id(12), "r7:h12");
        assert_eq!(w.flash_sku(), "r7:flash");
        assert_eq!(w.stock().len(), 10_000);
        assert_eq!(
            w.stock()[0],
            ("r7:sku-000001".to_owned(), "dc-1".to_owned(), 1_000_000_000)
        );
        let keys = w.listing(3);
        assert_eq!(keys.len(), 50);
        assert!(keys
            .iter()
            .all(|(s, l)| s.as_str().starts_with("r7:sku-") && l.as_str() == "dc-1"));
        assert_eq!(w.listing(3), keys);
    }

    #[test]
    fn frames_multiply_the_primary_count() {
        let w = Workload::new(
            Kind::Checkout,
            ScenarioConfig {
                frame: 100,
                ..ScenarioConfig::default()
            },
        );
        assert_eq!(w.per_request(), 100);
        assert_eq!(w.primary(), "reserve");
        let r = Workload::new(Kind::StoreReads, ScenarioConfig::default());
        assert_eq!((r.per_request(), r.primary()), (1, "read"));
    }
}
