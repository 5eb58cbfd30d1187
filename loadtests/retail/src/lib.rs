//! # Replay of real order data: Online Retail II (UCI), Dec 2009 - Nov 2010
//!
//! `../shared/data/online-retail/` holds ~503k order lines of a UK online gift retailer (many
//! customers are wholesalers), in time order (see its PROVENANCE.md). This crate turns them
//! into a deterministic sequence of timestamped batches of engine [`engine::Request`]s and
//! applies them to the in-process engine ([`replay`]) or to any ledger behind the
//! [`sink::LedgerSink`] trait (the load generator's live cluster), checked against the engine.
//!
//! It depends on the engine and data helpers only (csv, flate2, serde): no server, client or
//! runtime (`tests/deps.rs` checks the manifest).
//!
//! ## Layers
//! 1. [`input`]: CSV -> typed [`input::CsvLine`]s (RFC 4180 quoting, exact decimals, dates).
//! 2. [`events`]: the filter, and the grouping of lines into [`events::Event`]s (one invoice,
//!    one kind). Pure functions of the file.
//! 3. [`plan`]: the [`plan::Planner`], the retailer's order-management system: events + the
//!    ledger's answers -> batches. It knows nothing of the backend.
//! 4. [`replay`]: a [`replay::Backend`] trait, the engine backend, the driver loop and the
//!    [`replay::Summary`].
//! 5. [`sink`]: the [`sink::LedgerSink`] trait for a ledger in another process, and
//!    [`sink::replay_through`], the same replay against it, compared with the engine replay.
//!
//! Why the planner reads outcomes: what a real OMS sends next depends on what the ledger
//! answered (a checkout that hits a sold-out line drops it and retries; a cancellation is a
//! `cancel` if the order is still open, else a `return`). The planner is a deterministic state
//! machine fed with the outcomes, so the same file and the same answers always give the same
//! requests, byte for byte: a cluster that answers like the engine receives exactly the
//! engine replay's requests and must end with the same stock. Nothing depends on wall-clock
//! time: holds are placed in the next round at the same timestamp (TTL 15 min), pickups are
//! collected within ~30 h of placement (deadline 7 days), returns only name orders placed
//! within 60 days (the ledger retains closed orders 90), and ids are never reused, so no
//! deadline or retention limit ever changes an outcome, whether the batches are stamped with
//! CSV time (engine replay) or a leader's clock (cluster).
//!
//! ## Time and batches
//! - `invoice_date` is UK wall-clock time to the minute, read as UTC (the year spans one DST
//!   change each way; ignoring it only shifts some events by an hour).
//! - Lines of one invoice can interleave with other invoices of the same minute, and a few
//!   invoices span up to 9 minutes: every line joins its invoice, which takes the time of its
//!   first line.
//! - Time advances to the next event or scheduled task. At each time, round 1 holds the due
//!   tasks (in schedule order), then the events (file order). Outcomes may call for
//!   follow-ups (place the order of a granted hold, retry a trimmed checkout, ...): they form
//!   round 2, 3, ... at the same timestamp. Cancellation invoices wait until nothing else of
//!   their minute is in flight, then go one per round (each sees the previous one's effect).
//!   A round above `BATCH_REQUESTS_MAX` requests is split into several batches.
//! - Request ids: `namespace << 64 | n` with `n` = 1, 2, 3... in emission order (namespace
//!   `0x7265_7461_696c_0001`, "retail"): deterministic, distinct, non-zero. Object ids embed
//!   the invoice: `rsv-489434`, `ord-489434` (`ord-489434-2` for the second 256-SKU part of a
//!   larger invoice), `rma-C489449-1`.
//!
//! ## Filter (see [`events::DropReason`]; counts in the summary)
//! - Non-product codes: postage (`POST`, `DOT`, `C2`, `C3`); money (`D` discount,
//!   `BANK CHARGES`, `AMAZONFEE`, `CRUK`, `B` bad debt); manual bookkeeping (`M`/`m`,
//!   `ADJUST*`, `PADS`, a 0.001 rounding item); `S` samples; gift vouchers (`gift_0001_*`,
//!   `GIFT`); `TEST*`. `DCGS*` and `SP1002` are real products and are kept.
//! - Any other code that is not a valid SKU id (`engine::ids::is_valid_id`): dropped as
//!   `invalid-sku-id` (one line: `47503J ` with a trailing space; not trimmed, as the rule is
//!   "not a valid id").
//! - Quantity 0, negative prices, positive lines on `C` invoices, negative lines on sale
//!   invoices: dropped with their reason (none or almost none in this file).
//!
//! ## Events
//! - Sale: an invoice with a positive line that has a price or a customer. Its zero-price
//!   lines are free items and ship too. Lines of the same SKU are summed.
//! - Cancellation: a `C` invoice (negative lines).
//! - Write-off: negative lines, no customer, price 0 (damaged, lost, "?"...): `adjust` with a
//!   negative delta at `uk-wh`, reason `write-off`. When less is on hand (the ledger says
//!   `insufficient_stock` with the units on hand), the rest is not there to write off: the
//!   planner writes off what is on hand (if any) in the next round.
//! - Stock found: positive lines, no customer, price 0, not part of a sale (stock-take
//!   corrections: "found", "checked", blank): `adjust` + at `uk-wh`, reason `stock-found`.
//!
//! ## Network ([`network`])
//! - `uk-wh` (warehouse, North London) and `eu-wh` (warehouse, Venlo NL): channels `web`,
//!   `b2b`; no pickup. Stores `store-london`, `store-manchester`, `store-birmingham`,
//!   `store-edinburgh`: coordinates, pickup, channels `pos`, `web` (trade orders never empty a
//!   shop floor).
//! - Groups: `online-uk` = uk-wh, then the four stores (ship-from-store when the warehouse is
//!   out); `online-eu` = eu-wh, then uk-wh; `online-intl` = uk-wh (exports).
//! - The customer's country picks the group: United Kingdom and Channel Islands -> online-uk;
//!   Ireland (EIRE) and the rest of the EU of 2010, Switzerland, Norway, Iceland -> online-eu;
//!   everything else, `Unspecified` included -> online-intl.
//!
//! ## Checkouts and orders
//! - Channel: `b2b` for invoices of a known customer worth >= GBP 1,000 (1,330 invoices, the
//!   top ~7%, 40% of units): trade orders keyed in by the sales team, served from warehouses
//!   only (stores do not sell to `b2b`). Everything else, guests included, is `web`.
//! - Bulk lines: a sale line of >= 1,000 units (209 lines, 11% of all units, e.g. 12,960
//!   units of one SKU for a Danish wholesaler, its whole year's demand in one line) is bought
//!   for the order: the customer's home warehouse receives exactly those units (reason
//!   `bulk-receipt`) just before the checkout, and the line does not count as demand for
//!   stock planning (no shelf stock policy could serve it, and counting it would make the
//!   next month's targets absurd).
//! - A sale invoice is one checkout: `reserve` (every line targets the group, TTL 15 min),
//!   then, once granted, `place_order` from the reservation in the next round. Invoices with
//!   more than `LINES_PER_REQUEST_MAX` (256) SKUs are split into several checkouts/orders.
//! - Sold out: a reservation is all-or-nothing; on `insufficient_stock` the checkout reduces
//!   the line the ledger names to the units it says are available (or removes it when none)
//!   and retries, like a clerk adjusting a trade order. A checkout with no line left is
//!   abandoned.
//! - Pickup: a deterministic quarter of the small UK web orders of known customers (<= 10
//!   SKUs, <= 50 units, invoice number divisible by 4) reserve at the customer's "home store"
//!   (customer id mod 4) and are placed as pickup orders (deadline 7 days). If the store lacks
//!   a line, the checkout falls back to shipping from the group.
//! - Dispatch: the next 06:00 UTC run after placement `fulfil`s every unfulfilled line
//!   (ship). Pickup orders get `ready_for_pickup` at that run and `picked_up` at 12:00 the
//!   same day. Until then a cancellation can still cancel. If a location lost units since the
//!   order was placed (a write-off), the dispatch ships what is there and cancels the rest of
//!   that line (`short-shipped`).
//!
//! ## Cancellation invoices
//! For each SKU of a `C` invoice, in this order: cancel units still unfulfilled on the same
//! customer's orders of that SKU (newest order first); then receive a `return` (RMA,
//! disposition `restock`, at the location that shipped them) of units fulfilled and not yet
//! returned on the customer's orders placed within 60 days (newest first; the ledger retains
//! closed orders 90 days); the rest is counted as unmatched (guest invoices have no customer
//! to match; many cancellations refer to orders from before December 2009).
//!
//! ## Stock: opening and replenishment
//! There is no stock data: stock is derived from demand (units asked by sale invoices, bulk
//! lines excepted) per SKU, kept apart by who can be served from where: UK web (stores and
//! `uk-wh`), UK trade and international (`uk-wh`), EU (`eu-wh`).
//! - Opening stock: at a SKU's first sale, before that checkout, `adjust` + (reason
//!   `opening-stock`) of 14 days of its average demand over its first 28 days on sale (half
//!   of those 4 weeks; the only look-ahead, as there is no history before the data) at each
//!   warehouse with demand. For every SKU with UK web demand, each store gets 2 units of
//!   safety stock (`set_safety_stock`: withheld from web orders, kept for walk-in customers)
//!   and opening stock of those 2 units plus 25% of a week of UK web demand.
//! - Weekly replenishment, Mondays 05:00 UTC (before the dispatch run): every warehouse's free
//!   stock (on hand - reserved - allocated) is brought up to 28 days of its average daily
//!   demand over the last 4 weeks (fewer for SKUs launched since), every store's to its
//!   safety stock + 25% of a week of UK web demand: `adjust` +, reason `receipt`. Stock is
//!   never taken away (a slow seller keeps what it has). Reviews stop with the data.
//!   Demand is lumpy (wholesale lines of hundreds of units), so lines do sell out, mostly when
//!   a SKU's demand jumps, but not constantly: ~1.3% of order lines are trimmed or sold out,
//!   the unit fill rate is ~95% (`docs/BENCHMARKS.md`, "Replay").
//! - The planner keeps its own view of every balance from the ledger's answers (each stock
//!   write returns the balance; holds, orders, fulfilments, cancels and returns move known
//!   units). Replenishment reads it; at the end the replay checks it equals the ledger's
//!   balances, a cross-check of both.
//!
//! ## End of the replay
//! After the last event, the pending dispatches and pickups run (so nothing stays reserved
//! or allocated); then the summary: lines read/used/dropped by reason, invoices, checkouts,
//! orders, units reserved/fulfilled/cancelled/returned, rejections by code, final stock
//! totals from availability queries, `check_invariants()`, and timings.

pub mod describe;
pub mod events;
pub mod input;
pub mod network;
pub mod plan;
pub mod replay;
pub mod sink;

#[cfg(test)]
mod tests;

pub use events::{build, Dataset, DropReason, Event, EventKind, EventLine, InputStats};
pub use input::{read_lines, CsvLine, InputError};
pub use plan::{Batch, PlanConfig, PlanStats, Planner};
pub use replay::{
    drive, render, replay_events, replay_file, Backend, BalanceRow, EngineBackend, Replay,
    StockTotals, Summary,
};
pub use sink::{replay_through, BalanceDiff, LedgerSink, SinkReplay, SinkReplayError};
