//! The node's memory budget: above it the leader answers `busy` to new demand (reservations
//! and direct orders), instead of growing until the kernel kills the process (SPEC section 4: overload
//! sheds load).
//!
//! What a node holds grows with traffic for minutes (the dedup window, the change feed and up
//! to `engine::limits::RETIRED_ENTRIES_DEFAULT` finished objects of each kind; docs/
//! OPERATIONS.md, "Memory"), and every replica holds the same state: a node killed for memory
//! comes back to the same size on restore, and so do its peers. The budget is checked against
//! the process's resident memory, sampled every [`MEMORY_SAMPLE_MS`]. It is an admission check
//! on the leader before a write is proposed, never part of a log entry, so replicas stay
//! identical whatever each one's memory is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use engine::{Command, OrderSource};

/// How often the resident memory is read, ms.
pub const MEMORY_SAMPLE_MS: u64 = 100;
/// Default budget: this share of the host's memory (or of the cgroup's limit, if lower), in
/// percent. A host that runs several nodes needs `--memory-limit-mib` per node.
pub const MEMORY_LIMIT_DEFAULT_PERCENT: u64 = 80;

/// The budget, what was last read, and what it refused.
#[derive(Debug, Default)]
pub struct MemoryBudget {
    /// Resident bytes above which new demand is refused; 0: no budget.
    limit_bytes: u64,
    /// The process's resident bytes at the last sample.
    resident_bytes: AtomicU64,
    /// Whether the last sample was above the limit (for the log: once when crossing, once
    /// when back under).
    over: AtomicBool,
    /// Writes answered `busy` for the budget.
    refused: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit_bytes` resident bytes (0: none); reads the resident size once now.
    pub fn new(limit_bytes: u64) -> MemoryBudget {
        let budget = MemoryBudget {
            limit_bytes,
            ..MemoryBudget::default()
        };
        budget.sample();
        budget
    }

    /// The budget for a node configured with `limit_mib`: `Some(0)` none, `Some(n)` n MiB,
    /// `None` [`MEMORY_LIMIT_DEFAULT_PERCENT`] of what the host (or cgroup) allows, or none
    /// where that cannot be read.
    pub fn for_config(limit_mib: Option<u64>) -> MemoryBudget {
        let limit = match limit_mib {
            Some(mib) => mib.saturating_mul(1 << 20),
            None => host_bytes().map_or(0, |b| b / 100 * MEMORY_LIMIT_DEFAULT_PERCENT),
        };
        MemoryBudget::new(limit)
    }

    /// The limit in bytes (0: none).
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Resident bytes at the last sample (0 where it cannot be read).
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes.load(Ordering::Relaxed)
    }

    /// Writes refused for the budget since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Reads the resident size now, and logs a crossing of the limit.
    pub fn sample(&self) {
        let Some(resident) = resident_bytes() else {
            return;
        };
        self.resident_bytes.store(resident, Ordering::Relaxed);
        let over = self.limit_bytes > 0 && resident > self.limit_bytes;
        if self.over.swap(over, Ordering::Relaxed) != over {
            let (resident_mib, limit_mib) = (resident >> 20, self.limit_bytes >> 20);
            if over {
                tracing::warn!(
                    resident_mib,
                    limit_mib,
                    "memory budget reached: new reservations and direct orders are answered busy"
                );
            } else {
                tracing::info!(resident_mib, limit_mib, "back under the memory budget");
            }
        }
    }

    /// Whether `command` must be refused now: it is new demand and the node is over its
    /// budget. Counts the refusal.
    pub fn refuses(&self, command: &Command) -> bool {
        let refused = self.over.load(Ordering::Relaxed) && creates_object(command);
        if refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        refused
    }
}

/// Whether `command` is new demand that creates an object the ledger keeps: a reservation, a
/// direct order (also for a customer, or as an exchange's new half). Placing an order from a
/// live hold (the customer has paid), what ends or moves existing objects (release, fulfil,
/// cancel, pickups, receipts), returns and transfers (what physically happened must be
/// recorded), stock writes and definitions stay allowed: a full node keeps its stock true and
/// lets its holds drain.
pub fn creates_object(command: &Command) -> bool {
    match command {
        Command::Reserve { .. } | Command::AsCustomer { .. } | Command::Exchange(_) => true,
        Command::PlaceOrder { source, .. } => matches!(source, OrderSource::Lines { .. }),
        _ => false,
    }
}

/// Samples `budget` every [`MEMORY_SAMPLE_MS`] until the node drops it.
pub async fn sample_while_alive(budget: Weak<MemoryBudget>) {
    let mut every = tokio::time::interval(Duration::from_millis(MEMORY_SAMPLE_MS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(budget) = budget.upgrade() else {
            return;
        };
        budget.sample();
    }
}

/// Starts the sampler of `budget` on the current runtime.
pub fn start_sampler(budget: &Arc<MemoryBudget>) {
    tokio::spawn(sample_while_alive(Arc::downgrade(budget)));
}

/// The process's resident bytes (`VmRSS` of `/proc/self/status`, in KiB whatever the page
/// size; Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// What the host allows this process: the smaller of the physical memory and a cgroup v2
/// limit, in bytes; `None` where neither can be read.
fn host_bytes() -> Option<u64> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024))
        });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|max| max.trim().parse::<u64>().ok());
    match (physical, cgroup) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// Turns transparent huge pages off for this process (SPEC section 4, "No stalls"); `stockd`
/// and the load generator call it first thing. mimalloc asks for them on its memory
/// (`MADV_HUGEPAGE`), and where the kernel's THP defrag setting is `madvise` (a common
/// default) the first touch of each 2 MiB then zeroes all of it, and may first compact memory,
/// inside whatever allocated: an apply under the ledger's lock. While a node's memory grew
/// that was a third of its CPU, in single faults of milliseconds (docs/BENCHMARKS.md, section
/// X, "Huge pages"). Small pages spread the same zeroing thinly. A failure is logged, not
/// fatal: the node works either way.
pub fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off for this process");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ChannelId, ReservationId};

    fn release() -> Command {
        Command::Release {
            reservation: ReservationId::from("r1"),
        }
    }

    #[test]
    fn over_the_budget_only_new_objects_are_refused_and_counted() {
        let budget = MemoryBudget::new(1);
        assert!(
            budget.resident_bytes() > 1,
            "this process has more than a byte resident"
        );
        let reserve = engine::Command::Reserve {
            reservation: ReservationId::from("r1"),
            channel: ChannelId::from("web"),
            lines: Vec::new(),
            ttl_ms: 1_000,
        };
        assert!(budget.refuses(&reserve));
        assert!(!budget.refuses(&release()));
        assert_eq!(budget.refused(), 1);
    }

    /// A customer who holds stock and pays must get the order: placing an order from a live
    /// hold only turns held units into allocated ones, so a full node still does it.
    #[test]
    fn over_the_budget_an_order_from_a_hold_is_placed_and_a_direct_order_is_not() {
        let budget = MemoryBudget::new(1);
        let order = |source| Command::PlaceOrder {
            order: engine::OrderId::from("o1"),
            source,
            fulfilment: engine::Fulfilment::Ship,
        };
        let from_hold = order(engine::OrderSource::Reservation(ReservationId::from("r1")));
        assert!(!budget.refuses(&from_hold));
        let direct = order(engine::OrderSource::Lines {
            channel: ChannelId::from("pos"),
            lines: Vec::new(),
        });
        assert!(budget.refuses(&direct));
    }

    #[test]
    fn no_budget_refuses_nothing_and_the_default_is_a_share_of_the_host() {
        let none = MemoryBudget::for_config(Some(0));
        assert_eq!(none.limit_bytes(), 0);
        assert!(!none.refuses(&release()));
        let mib = MemoryBudget::for_config(Some(3));
        assert_eq!(mib.limit_bytes(), 3 << 20);
        let host = host_bytes().expect("a Linux host tells its memory");
        let default = MemoryBudget::for_config(None);
        assert_eq!(
            default.limit_bytes(),
            host / 100 * MEMORY_LIMIT_DEFAULT_PERCENT
        );
    }
}
