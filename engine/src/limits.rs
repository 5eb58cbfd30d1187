//! Every limit of the ledger, in one place (SPEC section 4: "Limits on everything ... each a named
//! constant, each enforced with a clear error").
//!
//! Names carry their unit last (`_ms`, `_bytes`, `_max`). Relations between limits are asserted
//! at compile time at the bottom of this file. Every limit is enforced by the engine with an
//! `invalid` rejection naming the limit ([`crate::InvalidReason::LimitExceeded`]), except the
//! retention limits, which evict the oldest retained entry.

/// Length of any identifier (SKU, location, group, channel, reservation, order, RMA, transfer,
/// reason), in bytes. SPEC section 1: a SKU id is 1..=64 bytes.
pub const ID_BYTES_MAX: usize = 64;

/// Largest value of any balance field and of any single quantity, in base units (10^15).
///
/// Every field of a balance stays within `0..=QTY_MAX`, so sums of up to eight fields can never
/// overflow an `i64`: the ATS arithmetic needs no overflow checks, and every write that would
/// take a field above the limit is rejected instead of wrapping (SPEC section 2).
pub const QTY_MAX: i64 = 1_000_000_000_000_000;

/// Largest decimal scale of a SKU (SPEC section 2: 0..=6).
pub const SCALE_MAX: u8 = 6;

/// Lines in one reservation, order, fulfilment, cancel or return request.
pub const LINES_PER_REQUEST_MAX: usize = 256;

/// Distinct (SKU, location) lines of one order (reallocation can add lines).
pub const ORDER_LINES_MAX: usize = 2 * LINES_PER_REQUEST_MAX;

/// Requests in one applied batch (one Raft entry).
pub const BATCH_REQUESTS_MAX: usize = 16_384;

/// Latest batch timestamp the ledger accepts, ms since the epoch (year 9999). A later leader
/// clock is clamped to it, so `timestamp + TTL` and other deadlines can never overflow.
pub const TIMESTAMP_MS_MAX: u64 = 253_402_300_799_999;

/// Longest hold: a reservation's TTL, in ms (7 days).
pub const TTL_MS_MAX: u64 = 7 * 24 * 3_600_000;

/// Longest collection window of a pickup order, in ms (30 days).
pub const PICKUP_DEADLINE_MS_MAX: u64 = 30 * 24 * 3_600_000;

/// Locations the ledger can hold.
pub const LOCATIONS_MAX: usize = 100_000;

/// Location groups the ledger can hold.
pub const GROUPS_MAX: usize = 10_000;

/// Locations in one group.
pub const GROUP_LOCATIONS_MAX: usize = 1_000;

/// Distinct channels (interned names).
pub const CHANNELS_MAX: usize = 1_000;

/// Channels listed as allowed at one location.
pub const LOCATION_CHANNELS_MAX: usize = 64;

/// Distinct SKUs (defined or implicit).
pub const SKUS_MAX: usize = 50_000_000;

/// (SKU, location) balances.
pub const BALANCES_MAX: usize = 100_000_000;

/// Live reservations (active holds).
pub const RESERVATIONS_LIVE_MAX: usize = 20_000_000;

/// Orders with unfulfilled lines.
pub const ORDERS_OPEN_MAX: usize = 20_000_000;

/// Transfers shipped and not yet received.
pub const TRANSFERS_OPEN_MAX: usize = 1_000_000;

/// SKUs in one availability query (a product listing page asks for 50).
pub const QUERY_SKUS_MAX: usize = 1_000;

/// Results of one `nearby` query.
pub const NEARBY_RESULTS_MAX: usize = 100;

/// Radius of a `nearby` query, in km.
pub const NEARBY_RADIUS_KM_MAX: u32 = 20_000;

/// Change-feed events returned by one `changes` query.
pub const CHANGES_PER_QUERY_MAX: u32 = 10_000;

/// Locations one filtered `changes` query names.
pub const CHANGES_LOCATIONS_MAX: usize = 64;

/// Events one filtered `changes` query scans (matching or not): its cost is bounded whatever
/// the share of the feed its locations have.
pub const CHANGES_SCANNED_PER_QUERY_MAX: u64 = 100_000;

/// Held lines of one request after sourcing (kit lines count one per component and location).
pub const HELD_LINES_MAX: usize = 4_096;

/// SKUs returned by one prefix search (the store page lists them; a longer prefix narrows).
pub const SKU_SEARCH_RESULTS_MAX: u32 = 100;

/// Pickup orders returned by one `pickups` query (a store's counter list).
pub const PICKUPS_PER_QUERY_MAX: u32 = 1_000;

/// Default retention limits, each also the largest value of its setting: a ledger starts
/// with these, and `set_retention` ([`crate::Command::SetRetention`], a replicated write) lowers
/// them within their `_MIN`..=`_DEFAULT` range. The dedup window: a replayed request id older
/// than this, or beyond this many newer requests, is treated as new.
pub const DEDUP_WINDOW_MS_DEFAULT: u64 = 24 * 3_600_000;
/// See [`DEDUP_WINDOW_MS_DEFAULT`]: at most this many request outcomes are remembered.
pub const DEDUP_ENTRIES_DEFAULT: usize = 4_000_000;
/// Change-feed events retained in memory (and in snapshots).
pub const FEED_EVENTS_DEFAULT: usize = 1_000_000;
/// How long finished objects (released/expired/placed reservations, closed orders, received
/// RMAs and transfers) stay queryable, in ms (90 days: the usual return window).
pub const RETIRED_MS_DEFAULT: u64 = 90 * 24 * 3_600_000;
/// At most this many finished objects are retained, all kinds together (one retirement queue
/// in finish order); the oldest go first.
pub const RETIRED_ENTRIES_DEFAULT: usize = 10_000_000;

/// Shortest dedup window `set_retention` accepts, in ms (1 min). A client retries a write
/// with its original request id for as long as its call lasts (the client library's default
/// call deadline is 30 s, `client::ClientConfig::deadline_ms`); a window shorter than that
/// would let a late retry of an applied write apply it a second time (SPEC section 3: replays
/// within the window change nothing). Twice that deadline leaves room for clock steps between
/// leaders.
pub const DEDUP_WINDOW_MS_MIN: u64 = 60_000;
/// Fewest remembered request outcomes `set_retention` accepts: the requests of 32 full
/// batches, as many as a leader keeps in flight at once (the server proposer's
/// `BATCHES_IN_FLIGHT_MAX`). A smaller log could forget a write before its reply even left the
/// leader, and the client's retry would apply it again. At a sustained rate, the log covers
/// `dedup_entries / writes per second` seconds: keep that above the clients' retry horizon.
pub const DEDUP_ENTRIES_MIN: usize = 32 * BATCH_REQUESTS_MAX;
/// Fewest change-feed events `set_retention` accepts: one full `changes` page, so a consumer
/// that reads pages as fast as it can is never truncated by retention alone.
pub const FEED_EVENTS_MIN: usize = CHANGES_PER_QUERY_MAX as usize;
/// Shortest time `set_retention` lets a finished object stay queryable, in ms (1 min): a
/// client that just finished one (released a hold, placed an order, received a return) can
/// still read it back within the client library's 30 s call deadline, and a `place_order`
/// that comes just after its hold expired answers `expired`, not `not_found`.
pub const RETIRED_MS_MIN: u64 = 60_000;
/// Fewest finished objects `set_retention` keeps: one. Every finished object is kept by time
/// too (`retired_ms`), whichever of the two drops it first; this count bounds memory alone.
pub const RETIRED_ENTRIES_MIN: usize = 1;

/// Dropped entries cleaned up per batch, for each of the dedup log and the retirement queue
/// (index entries removed, slots freed). Retention moves a log's head in O(log n); the
/// clean-up behind it is spread over batches so that no batch pays for a burst (SPEC section 4,
/// "No stalls"). Above what one batch can add, so a backlog always drains.
pub const CLEANUP_STEPS_PER_BATCH: usize = 4 * BATCH_REQUESTS_MAX;

/// Expiry work per batch, in steps: a batch releases the holds and cancels the pickups whose
/// deadline passed, in (deadline, creation) order, until it has used this many steps; what is
/// left stays due and the next batches work it off first (SPEC section 4, "No stalls": a burst
/// of a million holds due in the same millisecond costs no batch more than this). A step is
/// one entry of the deadline index looked at (a removed hold's stale entry too) plus one per
/// line beyond the first of the hold or order it expires: a one-line hold is one step. The last
/// object may overrun by its lines (at most [`HELD_LINES_MAX`] or [`ORDER_LINES_MAX`], what a
/// single request may touch anyway).
///
/// Between its deadline and the batch that sweeps it, a hold or pickup answers every read and
/// every write that names it as expired (`expired`; a pickup is expired on the spot when a
/// write names its order). What still counts it are the totals: ATS (a `reserve` may be refused
/// units that an overdue hold still holds), `shortage` events, purchase-limit counts, a kit's
/// "in use", and the same figures in reads (balances, ATS, `nearby`, `status` counts: a read
/// shows what a write would be given, and costs nothing per overdue hold; `view.rs`). That errs
/// towards refusing, never towards overselling, and lasts until the backlog is worked off. A
/// read still subtracts the deadlines that passed after the last batch's time.
///
/// 1,024 one-line holds take about 0.33 ms of apply time at 1 M balances and 0.1 ms at 10,000
/// (median batch of `reserve_loop`'s expiry; docs/BENCHMARKS.md, "Expiry in bounded batches").
/// That is the budget before a batch's requests; after them, a batch sweeps as many more steps
/// as its requests may have added to the index ([`EXPIRY_STEPS_PER_REQUEST`] each plus one per
/// balance change they made), so a backlog shrinks by at least this many steps in every batch
/// whatever the load, and the extra work is proportional to the requests' own. With no client
/// writes the leader proposes an empty batch every few ms while a backlog is left
/// ([`crate::Ledger::next_deadline_ms`]).
pub const EXPIRY_STEPS_PER_BATCH: usize = 1_024;

/// Deadline index entries a read looks at, at most, to subtract the holds and pickups that
/// lapsed after the last batch's time (`view.rs`). A read holds the ledger's read lock, which
/// stops apply (SPEC section 4, "No stalls"): a million holds due in the millisecond after a
/// batch took a single-SKU read 44-84 ms to subtract. It subtracts the first of them in
/// (deadline, creation) order and counts the rest as held until a batch sweeps them, as for a
/// backlog ([`EXPIRY_STEPS_PER_BATCH`]): towards refusing, never towards overselling. The same
/// as a batch's expiry budget, so a read costs at most what one batch's expiry does.
pub const READ_LAPSED_STEPS_MAX: usize = EXPIRY_STEPS_PER_BATCH;

/// Expiry steps a batch sweeps after its requests, per request, on top of one per balance
/// change they made (see [`EXPIRY_STEPS_PER_BATCH`]): an `extend` changes no balance but
/// leaves its hold's old entry in the deadline index, one step when its deadline comes.
pub const EXPIRY_STEPS_PER_REQUEST: usize = 1;

/// Distinct components of one kit (SPEC section 3: 1..=16).
pub const KIT_COMPONENTS_MAX: usize = 16;

/// Shortest purchase-limit window, in ms (SPEC section 3: 1 min).
pub const LIMIT_WINDOW_MS_MIN: u64 = 60_000;

/// Longest purchase-limit window, in ms (SPEC section 3: 90 days).
pub const LIMIT_WINDOW_MS_MAX: u64 = 90 * 24 * 3_600_000;

/// SKUs with a purchase limit at the same time.
pub const LIMITED_SKUS_MAX: usize = 100_000;

/// Customers with something counted for one limited SKU at the same time (a flash sale of one
/// SKU to a large crowd). A new customer past it is a `limit` rejection naming this constant.
pub const LIMIT_CUSTOMERS_PER_SKU_MAX: usize = 1_000_000;

/// Counted entries of all purchase limits together: one per (SKU, customer) with something
/// counted plus one per counted order in it. A write that would pass it is a `limit`
/// rejection naming this constant (bounded state whatever the traffic).
pub const LIMIT_COUNTED_ENTRIES_MAX: usize = 8_000_000;

/// Counted (SKU, customer) records visited per batch to forget those with nothing counted any
/// more (window passed, limit removed): bounded work per batch, every record visited in turn.
pub const LIMIT_SWEEP_PER_BATCH: usize = 1_024;

// Relations between limits, checked at compile time.
const _: () = assert!(
    QTY_MAX as i128 * 8 < i64::MAX as i128,
    "ATS sums of 8 fields fit i64"
);
const _: () = assert!((LINES_PER_REQUEST_MAX as i128) * (QTY_MAX as i128) < i64::MAX as i128);
const _: () = assert!(GROUP_LOCATIONS_MAX <= LOCATIONS_MAX);
const _: () = assert!(LOCATIONS_MAX < (1 << 32) && SKUS_MAX < (1 << 32));
const _: () = assert!(CHANNELS_MAX <= u16::MAX as usize);
const _: () = assert!(TTL_MS_MAX < RETIRED_MS_DEFAULT);
const _: () = assert!(TIMESTAMP_MS_MAX
    .checked_add(PICKUP_DEADLINE_MS_MAX)
    .is_some());
const _: () = assert!(PICKUP_DEADLINE_MS_MAX >= TTL_MS_MAX);
const _: () = assert!(LINES_PER_REQUEST_MAX <= u16::MAX as usize);
const _: () = assert!(CLEANUP_STEPS_PER_BATCH > 2 * BATCH_REQUESTS_MAX);
const _: () = assert!(EXPIRY_STEPS_PER_BATCH >= 1);
const _: () = assert!(EXPIRY_STEPS_PER_REQUEST >= 1);
const _: () = assert!(LIMIT_WINDOW_MS_MIN < LIMIT_WINDOW_MS_MAX);
const _: () = assert!(LIMIT_WINDOW_MS_MAX <= RETIRED_MS_DEFAULT);
const _: () = assert!(LIMIT_CUSTOMERS_PER_SKU_MAX <= LIMIT_COUNTED_ENTRIES_MAX);
const _: () = assert!(LIMIT_COUNTED_ENTRIES_MAX < u32::MAX as usize);
const _: () = assert!((KIT_COMPONENTS_MAX * LINES_PER_REQUEST_MAX) <= u16::MAX as usize);
const _: () = assert!(HELD_LINES_MAX < u16::MAX as usize);
const _: () = assert!(CHANGES_SCANNED_PER_QUERY_MAX >= CHANGES_PER_QUERY_MAX as u64);
const _: () = assert!(DEDUP_WINDOW_MS_MIN <= DEDUP_WINDOW_MS_DEFAULT);
const _: () = assert!(DEDUP_ENTRIES_MIN <= DEDUP_ENTRIES_DEFAULT);
const _: () = assert!(FEED_EVENTS_MIN <= FEED_EVENTS_DEFAULT);
const _: () = assert!(RETIRED_MS_MIN <= RETIRED_MS_DEFAULT);
const _: () = assert!(RETIRED_ENTRIES_MIN >= 1 && RETIRED_ENTRIES_MIN <= RETIRED_ENTRIES_DEFAULT);
// A lowered dedup log still takes every request of a full batch.
const _: () = assert!(DEDUP_ENTRIES_MIN >= BATCH_REQUESTS_MAX);
