//! From CSV lines to business events: the filter (what is not a product line) and the grouping
//! of lines into invoices of one kind each.
//!
//! Pure functions of the input: no ledger involved.

use std::collections::{BTreeMap, HashMap};

use engine::ids::is_valid_id;
use serde::Serialize;

use super::input::CsvLine;

/// Why an input line is not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Shipping charges: `POST`, `DOT` (dotcom postage), `C2` / `C3` (carriage).
    Postage,
    /// Money, not goods: `D` (discount), `BANK CHARGES`, `AMAZONFEE`, `CRUK` (charity
    /// commission), `B` (bad-debt adjustment).
    FeeOrDiscount,
    /// Manual bookkeeping lines: `M` / `m` (manual), `ADJUST...`, `PADS` (a 0.001 rounding item).
    ManualAdjustment,
    /// `S`: samples, credited to customers.
    Samples,
    /// `GIFT`, `gift_0001_...`: gift vouchers, not stock.
    GiftVoucher,
    /// `TEST...`: test products.
    TestItem,
    /// Any other code that is not a valid SKU id (e.g. a trailing space, `47503J `).
    InvalidSkuId,
    /// An invoice number that cannot be part of an order id.
    InvalidInvoice,
    /// Quantity 0.
    ZeroQuantity,
    /// A negative unit price.
    NegativePrice,
    /// A positive quantity on a cancellation (`C...`) invoice.
    PositiveCancellation,
    /// A negative quantity on a sale invoice (neither a cancellation nor a write-off).
    NegativeInSale,
}

impl DropReason {
    /// The reason's name in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Postage => "postage",
            DropReason::FeeOrDiscount => "fee-or-discount",
            DropReason::ManualAdjustment => "manual-adjustment",
            DropReason::Samples => "samples",
            DropReason::GiftVoucher => "gift-voucher",
            DropReason::TestItem => "test-item",
            DropReason::InvalidSkuId => "invalid-sku-id",
            DropReason::InvalidInvoice => "invalid-invoice",
            DropReason::ZeroQuantity => "zero-quantity",
            DropReason::NegativePrice => "negative-price",
            DropReason::PositiveCancellation => "positive-cancellation",
            DropReason::NegativeInSale => "negative-in-sale",
        }
    }
}

/// The non-product stock codes, by reason. Codes compare case-insensitively (`m` is `M`).
pub fn non_product(stock_code: &str) -> Option<DropReason> {
    let code = stock_code.trim().to_ascii_uppercase();
    Some(match code.as_str() {
        "POST" | "DOT" | "C2" | "C3" => DropReason::Postage,
        "D" | "BANK CHARGES" | "AMAZONFEE" | "CRUK" | "B" => DropReason::FeeOrDiscount,
        "M" | "PADS" => DropReason::ManualAdjustment,
        "S" => DropReason::Samples,
        "GIFT" => DropReason::GiftVoucher,
        c if c.starts_with("ADJUST") => DropReason::ManualAdjustment,
        c if c.starts_with("GIFT_") => DropReason::GiftVoucher,
        c if c.starts_with("TEST") => DropReason::TestItem,
        _ => return None,
    })
}

/// The per-line filter: `Ok` for a line that may be replayed, else why not. (Whether the line
/// fits its invoice is decided by [`build`].)
pub fn check_line(line: &CsvLine) -> Result<(), DropReason> {
    if let Some(reason) = non_product(&line.stock_code) {
        return Err(reason);
    }
    if !is_valid_id(&line.stock_code) {
        return Err(DropReason::InvalidSkuId);
    }
    // Order, reservation and RMA ids embed the invoice number (plus a short prefix).
    if !is_valid_id(&line.invoice) || line.invoice.len() > 40 {
        return Err(DropReason::InvalidInvoice);
    }
    if line.quantity == 0 {
        return Err(DropReason::ZeroQuantity);
    }
    if line.unit_price_micros < 0 {
        return Err(DropReason::NegativePrice);
    }
    Ok(())
}

/// What an invoice (or part of one) does to stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum EventKind {
    /// A customer order: positive lines with a price or a customer.
    Sale,
    /// A `C...` invoice: units a customer cancels or sends back.
    Cancellation,
    /// Negative lines with no customer and price 0: stock written off (damaged, lost...).
    WriteOff,
    /// Positive lines with no customer and price 0 (outside a sale): stock found.
    StockFound,
}

/// One SKU of an event; quantities are positive (cancelled or written-off units too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    /// The SKU (a valid id).
    pub sku: String,
    /// Units, > 0, summed over the invoice's lines of this SKU.
    pub qty: i64,
}

/// An invoice, or the part of one that has a single [`EventKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What it does.
    pub kind: EventKind,
    /// Invoice number.
    pub invoice: String,
    /// Time of the invoice's first line, ms since the epoch.
    pub time_ms: u64,
    /// The customer, if any.
    pub customer: Option<u32>,
    /// The customer's country.
    pub country: String,
    /// Sum of quantity x unit price over the lines, millionths of a pound.
    pub value_micros: i64,
    /// The SKUs, in order of first appearance on the invoice.
    pub lines: Vec<EventLine>,
}

impl Event {
    /// Units over every line.
    pub fn units(&self) -> i64 {
        self.lines.iter().map(|l| l.qty).sum()
    }
}

/// Counts of the input and of what the filter did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InputStats {
    /// Lines read (header excluded).
    pub lines_read: u64,
    /// Lines that became part of an event.
    pub lines_used: u64,
    /// Lines dropped, by reason.
    pub lines_dropped: BTreeMap<String, u64>,
    /// Lines merged into an earlier line of the same invoice and SKU.
    pub lines_merged: u64,
    /// Distinct invoice numbers read.
    pub invoices_read: u64,
    /// Sale invoices (customer orders).
    pub sale_invoices: u64,
    /// Cancellation invoices.
    pub cancellation_invoices: u64,
    /// Write-off events.
    pub write_off_events: u64,
    /// Stock-found events.
    pub stock_found_events: u64,
    /// Distinct SKUs in the events.
    pub skus: u64,
    /// Time of the first and last event, `YYYY-MM-DD HH:MM:SS` UTC.
    pub first_event: String,
    /// See `first_event`.
    pub last_event: String,
}

/// The events of a file, in time order, with the input statistics.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Events by (time, first appearance in the file).
    pub events: Vec<Event>,
    /// What was read and dropped.
    pub stats: InputStats,
}

/// An invoice being collected.
struct Collecting {
    invoice: String,
    time_ms: u64,
    customer: Option<u32>,
    country: String,
    /// (kept line, its kind) in file order.
    lines: Vec<(CsvLine, EventKind)>,
}

/// The kind of a line that passed [`check_line`], before looking at its invoice.
fn line_kind(line: &CsvLine) -> EventKind {
    if line.is_cancellation() {
        EventKind::Cancellation
    } else if line.quantity < 0 {
        EventKind::WriteOff
    } else if line.customer.is_none() && line.unit_price_micros == 0 {
        EventKind::StockFound
    } else {
        EventKind::Sale
    }
}

/// Groups lines into events: every line of an invoice joins it, whatever its position in the
/// file (lines of invoices made in the same minute interleave); the event takes the time,
/// customer and country of the invoice's first line.
///
/// Kinds, per invoice: `C...` -> [`EventKind::Cancellation`] (negative lines; a positive line is
/// dropped); an invoice with at least one sale line -> [`EventKind::Sale`] (its zero-price
/// lines are free items that still ship; a negative line is dropped); otherwise its negative
/// lines form a [`EventKind::WriteOff`] and its positive lines a [`EventKind::StockFound`].
/// Lines of the same SKU are summed into one [`EventLine`].
pub fn build(lines: Vec<CsvLine>) -> Dataset {
    let mut stats = InputStats {
        lines_read: lines.len() as u64,
        ..InputStats::default()
    };
    let invoices = collect_invoices(lines, &mut stats);
    let mut events = Vec::new();
    for inv in &invoices {
        for (kind, part) in split_invoice(inv, &mut stats) {
            events.push(make_event(inv, kind, &part, &mut stats));
        }
    }
    // Stable: equal times keep their order of first appearance.
    events.sort_by_key(|e| e.time_ms);
    let mut skus: Vec<&str> = events
        .iter()
        .flat_map(|e| e.lines.iter().map(|l| l.sku.as_str()))
        .collect();
    skus.sort_unstable();
    skus.dedup();
    stats.skus = skus.len() as u64;
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        stats.first_event = super::input::format_datetime_ms(first.time_ms);
        stats.last_event = super::input::format_datetime_ms(last.time_ms);
    }
    Dataset { events, stats }
}

fn count_drop(stats: &mut InputStats, reason: DropReason) {
    *stats
        .lines_dropped
        .entry(reason.as_str().to_owned())
        .or_default() += 1;
}

/// The kept lines by invoice, invoices in order of first appearance; counts invoices read
/// and lines dropped by [`check_line`].
fn collect_invoices(lines: Vec<CsvLine>, stats: &mut InputStats) -> Vec<Collecting> {
    let mut invoices: Vec<Collecting> = Vec::new();
    let mut by_number: HashMap<String, usize> = HashMap::new();
    let mut seen_invoices: HashMap<String, ()> = HashMap::new();
    for line in lines {
        seen_invoices.entry(line.invoice.clone()).or_default();
        if let Err(reason) = check_line(&line) {
            count_drop(stats, reason);
            continue;
        }
        let kind = line_kind(&line);
        let idx = *by_number.entry(line.invoice.clone()).or_insert_with(|| {
            invoices.push(Collecting {
                invoice: line.invoice.clone(),
                time_ms: line.time_ms,
                customer: line.customer,
                country: line.country.clone(),
                lines: Vec::new(),
            });
            invoices.len() - 1
        });
        invoices[idx].lines.push((line, kind));
    }
    stats.invoices_read = seen_invoices.len() as u64;
    invoices
}

/// An invoice's lines by event kind (kinds in [`EventKind`] order), dropping the lines that
/// contradict the invoice (a positive line on a cancellation, a negative one on a sale).
fn split_invoice<'a>(
    inv: &'a Collecting,
    stats: &mut InputStats,
) -> Vec<(EventKind, Vec<&'a CsvLine>)> {
    let has_sale = inv.lines.iter().any(|(_, k)| *k == EventKind::Sale);
    let mut parts: Vec<(EventKind, Vec<&CsvLine>)> = Vec::new();
    for (line, kind) in &inv.lines {
        let kind = match *kind {
            EventKind::Cancellation if line.quantity > 0 => {
                count_drop(stats, DropReason::PositiveCancellation);
                continue;
            }
            EventKind::WriteOff if has_sale => {
                count_drop(stats, DropReason::NegativeInSale);
                continue;
            }
            EventKind::StockFound if has_sale => EventKind::Sale,
            kind => kind,
        };
        match parts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, v)) => v.push(line),
            None => parts.push((kind, vec![line])),
        }
    }
    parts.sort_by_key(|(k, _)| *k);
    parts
}

/// One event of an invoice: its lines of one kind, the same SKU's lines summed.
fn make_event(
    inv: &Collecting,
    kind: EventKind,
    part: &[&CsvLine],
    stats: &mut InputStats,
) -> Event {
    let mut merged: Vec<EventLine> = Vec::new();
    let mut value = 0i64;
    for line in part {
        stats.lines_used += 1;
        value = value.saturating_add(line.quantity.abs() * line.unit_price_micros);
        match merged.iter_mut().find(|l| l.sku == line.stock_code) {
            Some(l) => {
                l.qty += line.quantity.abs();
                stats.lines_merged += 1;
            }
            None => merged.push(EventLine {
                sku: line.stock_code.clone(),
                qty: line.quantity.abs(),
            }),
        }
    }
    match kind {
        EventKind::Sale => stats.sale_invoices += 1,
        EventKind::Cancellation => stats.cancellation_invoices += 1,
        EventKind::WriteOff => stats.write_off_events += 1,
        EventKind::StockFound => stats.stock_found_events += 1,
    }
    Event {
        kind,
        invoice: inv.invoice.clone(),
        time_ms: inv.time_ms,
        customer: inv.customer,
        country: inv.country.clone(),
        value_micros: value,
        lines: merged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(invoice: &str, code: &str, qty: i64, price: i64, customer: Option<u32>) -> CsvLine {
        CsvLine {
            line_no: 2,
            invoice: invoice.into(),
            stock_code: code.into(),
            quantity: qty,
            time_ms: 1_000,
            unit_price_micros: price,
            customer,
            country: "United Kingdom".into(),
        }
    }

    #[test]
    fn the_filter_drops_non_products_with_their_reason() {
        let cases: &[(&str, Option<DropReason>)] = &[
            ("85123A", None),
            ("85123a", None),
            ("DCGS0058", None),
            ("SP1002", None),
            ("POST", Some(DropReason::Postage)),
            ("DOT", Some(DropReason::Postage)),
            ("C2", Some(DropReason::Postage)),
            ("D", Some(DropReason::FeeOrDiscount)),
            ("BANK CHARGES", Some(DropReason::FeeOrDiscount)),
            ("AMAZONFEE", Some(DropReason::FeeOrDiscount)),
            ("CRUK", Some(DropReason::FeeOrDiscount)),
            ("B", Some(DropReason::FeeOrDiscount)),
            ("M", Some(DropReason::ManualAdjustment)),
            ("m", Some(DropReason::ManualAdjustment)),
            ("ADJUST", Some(DropReason::ManualAdjustment)),
            ("ADJUST2", Some(DropReason::ManualAdjustment)),
            ("PADS", Some(DropReason::ManualAdjustment)),
            ("S", Some(DropReason::Samples)),
            ("gift_0001_20", Some(DropReason::GiftVoucher)),
            ("TEST001", Some(DropReason::TestItem)),
            ("47503J ", Some(DropReason::InvalidSkuId)),
            ("A B", Some(DropReason::InvalidSkuId)),
            ("", Some(DropReason::InvalidSkuId)),
        ];
        for (code, expected) in cases {
            let got = check_line(&line("1", code, 1, 1, Some(1))).err();
            assert_eq!(got, *expected, "{code:?}");
        }
        assert_eq!(
            check_line(&line("1", "A", 0, 1, None)),
            Err(DropReason::ZeroQuantity)
        );
        assert_eq!(
            check_line(&line("1", "A", 1, -5, None)),
            Err(DropReason::NegativePrice)
        );
        assert_eq!(
            check_line(&line("1 2", "A", 1, 1, None)),
            Err(DropReason::InvalidInvoice)
        );
    }

    #[test]
    fn invoices_group_across_interleaving_and_take_one_kind() {
        let mut l = vec![
            line("10", "A", 2, 1_000_000, Some(7)),
            line("11", "Y2", 1, 0, None),
            line("10", "Y2", 3, 0, Some(7)),
            line("10", "A", 1, 1_000_000, Some(7)),
            line("10", "POST", 1, 5_000_000, Some(7)),
            line("C12", "A", -1, 1_000_000, Some(7)),
            line("C12", "A", 4, 1_000_000, Some(7)),
            line("13", "A", -5, 0, None),
            line("13", "Y2", 2, 0, None),
            line("14", "A", 1, 2_000_000, None),
            line("14", "Y2", 1, 0, None),
            line("14", "C", -1, 0, None),
        ];
        l[1].time_ms = 1_000;
        l[9].time_ms = 500;
        let d = build(l);
        type Seen<'a> = (EventKind, &'a str, i64, Vec<(&'a str, i64)>);
        let kinds: Vec<Seen> = d
            .events
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.invoice.as_str(),
                    e.value_micros,
                    e.lines.iter().map(|l| (l.sku.as_str(), l.qty)).collect(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (EventKind::Sale, "14", 2_000_000, vec![("A", 1), ("Y2", 1)]),
                (EventKind::Sale, "10", 3_000_000, vec![("A", 3), ("Y2", 3)]),
                (EventKind::StockFound, "11", 0, vec![("Y2", 1)]),
                (EventKind::Cancellation, "C12", 1_000_000, vec![("A", 1)]),
                (EventKind::WriteOff, "13", 0, vec![("A", 5)]),
                (EventKind::StockFound, "13", 0, vec![("Y2", 2)]),
            ]
        );
        assert_eq!(d.stats.lines_read, 12);
        assert_eq!(d.stats.lines_used, 9);
        assert_eq!(d.stats.lines_merged, 1);
        assert_eq!(d.stats.invoices_read, 5);
        assert_eq!(
            d.stats.lines_dropped,
            BTreeMap::from([
                ("negative-in-sale".to_owned(), 1),
                ("positive-cancellation".to_owned(), 1),
                ("postage".to_owned(), 1),
            ])
        );
        assert_eq!(
            (
                d.stats.sale_invoices,
                d.stats.cancellation_invoices,
                d.stats.write_off_events,
                d.stats.stock_found_events,
                d.stats.skus
            ),
            (2, 1, 1, 2, 2)
        );
    }
}
