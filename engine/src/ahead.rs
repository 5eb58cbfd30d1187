//! The apply loop's prefetch: while a batch is applied, start loading what the requests after
//! the current one will read, so that the cache misses of different requests overlap instead of
//! following one another (a single-line reserve at 1 M balances waits on about five of them).
//! See [`crate::prefetch`]: only hints, nothing read here decides anything.

use crate::command::{Command, Line, OrderSource, Request, Target};
use crate::ledger::Ledger;
use crate::state::{hash_str, hash_u128, IdTable};

/// Requests between two stages of [`Ledger::prefetch_ahead`]: far enough for a miss (~100 ns)
/// to complete meanwhile, near enough that what was loaded is still cached.
const STAGE_REQUESTS: usize = 4;
/// Lines of a request whose SKU entries and balances are prefetched.
const LINES_MAX: usize = 8;

/// A hold or an order that a request names by id.
enum Named<'a> {
    Reservation(&'a str),
    Order(&'a str),
}

/// What a request names: the object it creates (its id's slot is probed to insert it) and the
/// one it reads (a hold or an order that should exist).
struct Names<'a> {
    created: Option<Named<'a>>,
    read: Option<Named<'a>>,
}

/// The holds and orders `request` names.
fn named(request: &Request) -> Names<'_> {
    let (created, read) = match &request.command {
        Command::Reserve { reservation, .. } => {
            (Some(Named::Reservation(reservation.as_str())), None)
        }
        Command::Extend { reservation, .. } | Command::Release { reservation } => {
            (None, Some(Named::Reservation(reservation.as_str())))
        }
        Command::PlaceOrder { order, source, .. } => (
            Some(Named::Order(order.as_str())),
            match source {
                OrderSource::Reservation(r) => Some(Named::Reservation(r.as_str())),
                OrderSource::Lines { .. } => None,
            },
        ),
        Command::Fulfil { order, .. } | Command::Cancel { order, .. } => {
            (None, Some(Named::Order(order.as_str())))
        }
        _ => (None, None),
    };
    Names { created, read }
}

/// The first [`LINES_MAX`] lines of a reserve or of a direct order.
fn lines(request: &Request) -> &[Line] {
    let lines = match &request.command {
        Command::Reserve { lines, .. } => lines,
        Command::PlaceOrder {
            source: OrderSource::Lines { lines, .. },
            ..
        } => lines,
        _ => return &[],
    };
    &lines[..lines.len().min(LINES_MAX)]
}

impl Ledger {
    /// Prefetches what the requests after `requests[i]` will read, in three stages, each
    /// [`STAGE_REQUESTS`] apart so that one stage's loads have arrived when the next reads
    /// them: the first id-table slots of request `i + 8` (its request id, the holds and orders
    /// it names, its lines' SKUs); the objects those slots point to for request `i + 4` (hold
    /// and order slots, SKU entries; the slot's handle is a guess, never checked); the balances
    /// of request `i + 2`'s lines. Ids are hashed again in each stage.
    pub(crate) fn prefetch_ahead(&self, requests: &[Request], i: usize) {
        if let Some(request) = requests.get(i + 2 * STAGE_REQUESTS) {
            self.ix.dedup.prefetch(hash_u128(request.request_id.0));
            let names = named(request);
            for object in [names.created, names.read].iter().flatten() {
                let (table, id) = self.table_of(object);
                table.prefetch(hash_str(id));
            }
            for line in lines(request) {
                self.ix.sku.prefetch(hash_str(line.sku.as_str()));
            }
        }
        if let Some(request) = requests.get(i + STAGE_REQUESTS) {
            // A created object is not in its table yet: only the one read has a slot to load.
            if let Some(object) = named(request).read {
                let (table, id) = self.table_of(&object);
                if let Some(slot) = table.first_candidate(hash_str(id)) {
                    match object {
                        Named::Reservation(_) => self.state.reservations.prefetch(slot),
                        Named::Order(_) => self.state.orders.prefetch(slot),
                    }
                }
            }
            for line in lines(request) {
                if let Some(sku) = self.ix.sku.first_candidate(hash_str(line.sku.as_str())) {
                    self.state.skus.prefetch(u64::from(sku));
                }
            }
        }
        if let Some(request) = requests.get(i + STAGE_REQUESTS / 2) {
            for line in lines(request) {
                self.prefetch_balance(line);
            }
        }
    }

    /// The id table of `object`, and its id.
    fn table_of<'a>(&self, object: &Named<'a>) -> (&IdTable, &'a str) {
        match *object {
            Named::Reservation(id) => (&self.ix.reservation, id),
            Named::Order(id) => (&self.ix.order, id),
        }
    }

    /// Prefetches the balance a line naming one location will read (its SKU entry was
    /// prefetched a stage earlier).
    fn prefetch_balance(&self, line: &Line) {
        let Target::Location(l) = &line.target else {
            return;
        };
        let sku = self.ix.sku.first_candidate(hash_str(line.sku.as_str()));
        let (Some(sku), Some(&loc)) = (sku, self.ix.location.get(l)) else {
            return;
        };
        let entry = self.state.skus.get_checked(u64::from(sku));
        if let Some(bal) = entry.and_then(|e| e.balance_at(loc)) {
            self.state.balances.prefetch(u64::from(bal));
        }
    }
}
