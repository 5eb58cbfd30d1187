//! Human output of `stockctl`: quantities in display units (each SKU's scale), times in UTC.
//! (`--json` prints the wire values instead: base units and ms since the epoch.)

use std::collections::HashMap;
use std::fmt::Write as _;

use engine::query::{
    ChangeEvent, ChangesPage, NearbyRow, OrderView, ReservationView, RmaView, SkuAvailability,
    TransferState, TransferView,
};
use engine::units::format_display;
use engine::{Allocation, Balance, Rejection, Reply};
use protocol::{MemberState, NodeStatus, Role};

/// Decimal scale per SKU id; unknown SKUs have scale 0.
pub type Scales = HashMap<String, u8>;

fn scale(scales: &Scales, sku: &str) -> u8 {
    scales.get(sku).copied().unwrap_or(0)
}

/// `base` units of `sku` in display units.
pub fn qty(scales: &Scales, sku: &str, base: i64) -> String {
    format_display(base, scale(scales, sku))
}

/// A time in ms since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn when(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let in_day = ms % 86_400_000;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// Every field of a balance.
pub fn balance(b: &Balance, scale: u8) -> String {
    let f = |v: i64| format_display(v, scale);
    format!(
        "on_hand={} reserved={} allocated={} unavailable={} safety_stock={} incoming={}",
        f(b.on_hand),
        f(b.reserved),
        f(b.allocated),
        f(b.unavailable),
        f(b.safety_stock),
        f(b.incoming)
    )
}

/// A rejection with its code and facts, quantities in display units.
pub fn rejection(r: &Rejection, scales: &Scales) -> String {
    match r {
        Rejection::InsufficientStock {
            sku,
            at,
            requested,
            available,
        } => format!(
            "insufficient_stock: {sku}@{at}: requested {}, available {}",
            qty(scales, sku.as_str(), *requested),
            qty(scales, sku.as_str(), *available)
        ),
        Rejection::OverFulfil {
            sku,
            location,
            unfulfilled,
        } => format!(
            "over_fulfil: {sku}@{location}: {} unfulfilled",
            qty(scales, sku.as_str(), *unfulfilled)
        ),
        Rejection::OverReturn { sku, returnable } => format!(
            "over_return: {sku}: {} returnable",
            qty(scales, sku.as_str(), *returnable)
        ),
        // The other rejections carry no SKU (or no quantity): their own words.
        other => other.to_string(),
    }
}

/// What a write's reply refers to, for display units.
#[derive(Debug, Default)]
pub struct ReplyContext {
    /// The SKU of a stock write (its balance reply).
    pub sku: Option<String>,
    /// The SKU of every request line, by line index (reservations and orders).
    pub line_skus: Vec<String>,
    /// Scales of the SKUs involved.
    pub scales: Scales,
}

fn allocations(out: &mut String, allocations: &[Allocation], ctx: &ReplyContext) {
    for a in allocations {
        match ctx.line_skus.get(usize::from(a.line)) {
            Some(sku) => {
                let _ = write!(
                    out,
                    "\n  line {}: {sku} {} at {}",
                    a.line + 1,
                    qty(&ctx.scales, sku, a.qty),
                    a.location
                );
            }
            None => {
                let _ = write!(
                    out,
                    "\n  line {}: {} base units at {}",
                    a.line + 1,
                    a.qty,
                    a.location
                );
            }
        }
    }
}

/// A successful write's reply.
pub fn reply(r: &Reply, ctx: &ReplyContext) -> String {
    match r {
        Reply::Done => "ok".into(),
        Reply::Balance(b) => {
            let sku = ctx.sku.as_deref().unwrap_or("");
            format!("ok: {}", balance(b, scale(&ctx.scales, sku)))
        }
        Reply::Reserved {
            expires_at_ms,
            allocations: a,
        } => {
            let mut out = format!("ok: reserved until {}", when(*expires_at_ms));
            allocations(&mut out, a, ctx);
            out
        }
        Reply::Extended { expires_at_ms } => {
            format!("ok: extended until {}", when(*expires_at_ms))
        }
        Reply::OrderPlaced {
            allocations: a,
            pickup_deadline_ms,
        } => {
            let mut out = match pickup_deadline_ms {
                Some(ms) => format!("ok: order placed, to collect by {}", when(*ms)),
                None => "ok: order placed".to_owned(),
            };
            allocations(&mut out, a, ctx);
            out
        }
        Reply::TransferReceived { lost } => {
            let sku = ctx.sku.as_deref().unwrap_or("");
            format!(
                "ok: received, {} lost in transit",
                qty(&ctx.scales, sku, *lost)
            )
        }
    }
}

/// An availability answer: per SKU its totals, then one row per location.
pub fn availability(entries: &[SkuAvailability]) -> String {
    let mut out = String::new();
    for e in entries {
        let f = |v: i64| format_display(v, e.scale);
        let _ = writeln!(
            out,
            "{} (scale {}): available={} available[pos]={}",
            e.sku,
            e.scale,
            f(e.ats),
            f(e.ats_pos)
        );
        for row in &e.rows {
            let _ = writeln!(
                out,
                "  {}: available={} available[pos]={} {}",
                row.location,
                f(row.ats),
                f(row.ats_pos),
                balance(&row.balance, e.scale)
            );
        }
    }
    out.trim_end().to_owned()
}

/// A `nearby` answer, nearest first.
pub fn nearby(rows: &[NearbyRow], scale: u8) -> String {
    if rows.is_empty() {
        return "no location in range has enough stock".into();
    }
    rows.iter()
        .map(|r| {
            format!(
                "{} ({}{}): {:.1} km, available={}",
                r.location,
                r.kind.as_str(),
                if r.pickup { ", pickup" } else { "" },
                r.distance_m as f64 / 1000.0,
                format_display(r.ats, scale)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A reservation.
pub fn reservation(v: &ReservationView, scales: &Scales) -> String {
    let mut out = format!(
        "reservation {}: {} (channel {}), created {}, expires {}",
        v.id,
        v.state.as_str(),
        v.channel,
        when(v.created_at_ms),
        when(v.expires_at_ms)
    );
    for l in &v.lines {
        let _ = write!(
            out,
            "\n  line {}: {} {} at {}",
            l.line + 1,
            l.sku,
            qty(scales, l.sku.as_str(), l.qty),
            l.location
        );
    }
    out
}

/// An order.
pub fn order(v: &OrderView, scales: &Scales) -> String {
    let mut out = format!(
        "order {}: {} (channel {}), placed {}",
        v.id,
        v.state.as_str(),
        v.channel,
        when(v.created_at_ms)
    );
    if let Some(ms) = v.pickup_deadline_ms {
        let ready = if v.ready_for_pickup { ", ready" } else { "" };
        let _ = write!(out, ", to collect by {}{ready}", when(ms));
    }
    for l in &v.lines {
        let q = |n: i64| qty(scales, l.sku.as_str(), n);
        let _ = write!(
            out,
            "\n  {}@{}{}: ordered={} fulfilled={} cancelled={}",
            l.sku,
            l.location,
            if l.pickup { " (pickup)" } else { "" },
            q(l.ordered),
            q(l.fulfilled),
            q(l.cancelled)
        );
    }
    for (sku, n) in &v.returned {
        let _ = write!(out, "\n  returned {sku}: {}", qty(scales, sku.as_str(), *n));
    }
    out
}

/// A return.
pub fn rma(v: &RmaView, scales: &Scales) -> String {
    let mut out = format!(
        "rma {} for order {}, received {}",
        v.id,
        v.order,
        when(v.received_at_ms)
    );
    for l in &v.lines {
        let _ = write!(
            out,
            "\n  {} {} at {}: {}",
            l.sku,
            qty(scales, l.sku.as_str(), l.qty),
            l.received_at,
            l.disposition.as_str()
        );
    }
    out
}

/// A transfer.
pub fn transfer(v: &TransferView, scales: &Scales) -> String {
    let q = |n: i64| qty(scales, v.sku.as_str(), n);
    let state = match v.state {
        TransferState::Shipped => "shipped".to_owned(),
        TransferState::Received => format!(
            "received: {} sellable, {} damaged, {} lost",
            q(v.received),
            q(v.damaged),
            q(v.lost)
        ),
    };
    format!(
        "transfer {}: {} {} from {} to {}, shipped {}, {state}",
        v.id,
        v.sku,
        q(v.qty),
        v.from,
        v.to,
        when(v.shipped_at_ms)
    )
}

/// One change-feed event (quantities in base units: the feed does not carry scales).
pub fn event(e: &ChangeEvent) -> String {
    let request = e
        .request_id
        .map_or_else(|| "-".to_owned(), |r| r.to_string());
    let shortfall = if e.shortfall != 0 {
        format!(" shortfall={}", e.shortfall)
    } else {
        String::new()
    };
    let by = e
        .author
        .as_ref()
        .map_or_else(String::new, |a| format!(" by={} ({})", a.name, a.role));
    format!(
        "#{} log={} {} {:?} {}@{} {}{shortfall} request={request}{by}",
        e.seq,
        e.log_index,
        when(e.timestamp_ms),
        e.cause,
        e.sku,
        e.location,
        balance(&e.balance, 0)
    )
}

/// The revoked credentials, one a line: id, when revoked, until when the entry lasts.
pub fn revoked(rows: &[engine::RevokedView]) -> String {
    if rows.is_empty() {
        return "no revoked credentials".to_owned();
    }
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} revoked {} until {}",
                r.credential,
                when(r.revocation.revoked_at_ms),
                when(r.revocation.until_ms)
            )
        })
        .collect();
    lines.join("\n")
}

/// The retention settings, one line per log: its count, its time (with the field's wire
/// value, ms).
pub fn retention(c: &engine::Config) -> String {
    format!(
        "finished objects: {} entries, {} (retired_ms={})\n\
         dedup: {} entries, {} (dedup_window_ms={})\n\
         change feed: {} events",
        c.retired_entries,
        span(c.retired_ms),
        c.retired_ms,
        c.dedup_entries,
        span(c.dedup_window_ms),
        c.dedup_window_ms,
        c.feed_events
    )
}

/// A duration in the largest unit that divides it (`90d`, `24h`, `90s`, `1500ms`): the
/// grammar's own duration words.
fn span(ms: u64) -> String {
    let units = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    match units
        .iter()
        .find(|(unit, _)| ms >= *unit && ms.is_multiple_of(*unit))
    {
        Some((unit, name)) => format!("{}{name}", ms / unit),
        None => format!("{ms}ms"),
    }
}

/// A page of the change feed.
pub fn changes(page: &ChangesPage) -> String {
    let mut out: Vec<String> = page.events.iter().map(event).collect();
    if page.truncated {
        out.insert(
            0,
            format!(
                "(events before #{} were dropped by retention: resynchronise from availability)",
                page.oldest
            ),
        );
    }
    out.push(format!("next: {}", page.next));
    out.join("\n")
}

/// One node's status line(s).
pub fn status(node: &str, s: &NodeStatus) -> String {
    let role = match s.role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Shutdown => "shutdown",
        Role::Removed => "removed (no longer a member: serves no client request)",
    };
    let leader = s
        .leader
        .as_ref()
        .map_or_else(|| "none".to_owned(), |l| format!("{} ({})", l.id, l.addr));
    let ready = match (s.ready, s.not_ready) {
        (true, _) => "true".to_owned(),
        (false, Some(why)) => format!("false ({why})"),
        (false, None) => "false".to_owned(),
    };
    let members = s
        .members
        .iter()
        .map(|m| format!("{}={}", m.id, m.addr))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "{node}: node {} {role} term={} leader={leader} ready={} applied={} last_log={} \
         snapshot={} durability={} members=[{members}]\n  ledger: skus={} locations={} \
         balances={} live_reservations={} open_orders={} dedup_entries={} feed_next={} now={}\n  \
         replies: queued_bytes={} connections_closed_unread={} subscribers_cut={} \
         frames_shed={}",
        s.node.id,
        s.term,
        ready,
        s.applied_index,
        s.last_log_index,
        s.snapshot_index,
        s.durability,
        s.ledger.skus,
        s.ledger.locations,
        s.ledger.balances,
        s.ledger.live_reservations,
        s.ledger.open_orders,
        s.ledger.dedup_entries,
        s.ledger.feed_next_seq,
        when(s.ledger.now_ms),
        s.replies.queued_bytes,
        s.replies.connections_closed,
        s.replies.subscribers_cut,
        s.replies.frames_shed,
    ) + &pauses_line(&s.pauses)
        + &snapshots_line(&s.snapshots)
        + &health_line(&s.health)
}

/// µs as milliseconds with three decimals.
fn ms(us: u64) -> String {
    format!("{}.{:03}ms", us / 1_000, us % 1_000)
}

/// The longest pauses since start and within the seconds the status lists.
fn pauses_line(p: &protocol::PauseStats) -> String {
    let recent_apply = p.recent.iter().map(|s| s.apply_pause_max_us).max();
    let recent_read = p.recent.iter().map(|s| s.read_wait_max_us).max();
    let recent_cpu = p.recent.iter().map(|s| s.apply_cpu_max_us).max();
    format!(
        "\n  pauses: apply_max={} apply_cpu_max={} read_wait_max={} \
         (last {} s: apply_max={} apply_cpu_max={} read_wait_max={})",
        ms(p.apply_pause_max_us),
        ms(p.apply_cpu_max_us),
        ms(p.read_wait_max_us),
        protocol::PAUSE_SECONDS_REPORTED,
        ms(recent_apply.unwrap_or(0)),
        ms(recent_cpu.unwrap_or(0)),
        ms(recent_read.unwrap_or(0)),
    )
}

/// Snapshot builds: the one in progress, the last one, a write being retried.
fn snapshots_line(s: &protocol::SnapshotStats) -> String {
    let mut out = format!("\n  snapshots: built={}", s.built_total);
    if let Some(b) = &s.building {
        let _ = write!(out, " building=index {} for {}ms", b.index, b.elapsed_ms);
    }
    if let Some(l) = &s.last {
        let _ = write!(
            out,
            " last=index {} freeze={} build={}ms bytes={}",
            l.index,
            ms(l.freeze_us),
            l.build_ms,
            l.bytes
        );
    }
    if s.write_failures_total > 0 {
        let _ = write!(out, " write_failures={}", s.write_failures_total);
    }
    if let Some(error) = &s.write_error {
        let _ = write!(
            out,
            "\n  snapshot write failing (retrying, still serving): {error}"
        );
    }
    out
}

/// The health line of a status, empty when there is nothing to say.
fn health_line(h: &protocol::NodeHealth) -> String {
    let mut out = String::new();
    if h.recovering {
        let why = h.recovery_reason.as_deref().unwrap_or("restarted");
        let _ = write!(
            out,
            "\n  recovering: {why}; votes again once caught up with the leader"
        );
    }
    if let Some(error) = &h.storage_error {
        let _ = write!(out, "\n  storage failing (retrying, not ready): {error}");
    }
    if h.storage_errors_total > 0 {
        let _ = write!(
            out,
            "\n  storage errors since start: {}",
            h.storage_errors_total
        );
    }
    out
}

/// What `add-node` answered: the node's state and, for a learner, what to do next.
pub fn member_state(id: u64, addr: &str, state: &MemberState) -> String {
    let again = format!("`stockctl add-node {id} {addr}`");
    match state {
        MemberState::Voter => format!("ok: node {id} is a voter"),
        MemberState::CatchingUp {
            matched_index: Some(matched),
            target_index,
        } => format!(
            "node {id} is a learner, catching up (matched index {matched} of {target_index}): \
             it does not vote yet; run {again} again to promote it once caught up"
        ),
        MemberState::CatchingUp {
            matched_index: None,
            target_index,
        } => format!(
            "node {id} is a learner, catching up (no entry acknowledged yet, target index \
             {target_index}): it does not vote yet; run {again} again to promote it once caught up"
        ),
        MemberState::Unreachable => format!(
            "node {id} is a learner, unreachable (it answers neither replication nor status): it \
             does not vote; start it and run {again} again, or `stockctl remove-node {id}`"
        ),
        MemberState::NotAdded { reason } => {
            format!("node {id} not added (the membership is unchanged): {reason}")
        }
    }
}

/// The leader's view of the membership: one line per member with its role, the last log index
/// it holds and how far behind the leader's log that is.
pub fn members(s: &NodeStatus) -> String {
    let mut out = format!(
        "leader: node {} term={} last_log={}",
        s.node.id, s.term, s.last_log_index
    );
    for m in &s.membership {
        let role = match (m.voter, m.node.id == s.node.id) {
            (true, true) => "voter, leader",
            (true, false) => "voter",
            (false, _) => "learner",
        };
        let progress = match m.matched_index {
            Some(matched) => format!(
                "matched={matched} lag={}",
                s.last_log_index.saturating_sub(matched)
            ),
            None => "matched=none (has not answered the leader)".to_owned(),
        };
        let _ = write!(
            out,
            "\n  node {} {} {role} {progress}",
            m.node.id, m.node.addr
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::SkuId;

    #[test]
    fn times_are_utc() {
        assert_eq!(when(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(when(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
        assert_eq!(when(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(when(1_767_225_599_999), "2025-12-31T23:59:59.999Z");
    }

    #[test]
    fn pauses_and_snapshots_lines() {
        let pauses = protocol::PauseStats {
            apply_pause_max_us: 12_345,
            read_wait_max_us: 7,
            apply_cpu_max_us: 2_000,
            recent: vec![
                protocol::PauseSecond {
                    start_ms: 1_000,
                    apply_pause_max_us: 900,
                    read_wait_max_us: 0,
                    apply_cpu_max_us: 800,
                },
                protocol::PauseSecond {
                    start_ms: 2_000,
                    apply_pause_max_us: 3_100,
                    read_wait_max_us: 5,
                    apply_cpu_max_us: 600,
                },
            ],
        };
        assert_eq!(
            pauses_line(&pauses),
            "\n  pauses: apply_max=12.345ms apply_cpu_max=2.000ms read_wait_max=0.007ms \
             (last 60 s: apply_max=3.100ms apply_cpu_max=0.800ms read_wait_max=0.005ms)"
        );
        let snapshots = protocol::SnapshotStats {
            building: Some(protocol::SnapshotBuilding {
                index: 900,
                elapsed_ms: 40,
            }),
            last: Some(protocol::SnapshotBuilt {
                index: 500,
                freeze_us: 29,
                build_ms: 412,
                bytes: 62_221_840,
            }),
            built_total: 2,
            write_error: Some("disk full".to_owned()),
            write_failures_total: 3,
        };
        assert_eq!(
            snapshots_line(&snapshots),
            "\n  snapshots: built=2 building=index 900 for 40ms last=index 500 freeze=0.029ms \
             build=412ms bytes=62221840 write_failures=3\n  snapshot write failing (retrying, \
             still serving): disk full"
        );
        assert_eq!(
            snapshots_line(&protocol::SnapshotStats::default()),
            "\n  snapshots: built=0"
        );
    }

    #[test]
    fn rejections_and_replies_in_display_units() {
        let scales: Scales = [("CLOTH".to_owned(), 2)].into_iter().collect();
        let r = Rejection::InsufficientStock {
            sku: SkuId::from("CLOTH"),
            at: "wh1".into(),
            requested: 59,
            available: 1,
        };
        assert_eq!(
            rejection(&r, &scales),
            "insufficient_stock: CLOTH@wh1: requested 0.59, available 0.01"
        );
        let ctx = ReplyContext {
            sku: Some("CLOTH".into()),
            line_skus: vec!["CLOTH".into()],
            scales,
        };
        let b = Balance {
            on_hand: 3360,
            reserved: 59,
            ..Balance::default()
        };
        assert_eq!(
            reply(&Reply::Balance(b), &ctx),
            "ok: on_hand=33.60 reserved=0.59 allocated=0.00 unavailable=0.00 \
             safety_stock=0.00 incoming=0.00"
        );
        let reserved = Reply::Reserved {
            expires_at_ms: 1_767_226_500_000,
            allocations: vec![
                Allocation {
                    line: 0,
                    location: "wh1".into(),
                    qty: 59,
                },
                Allocation {
                    line: 3,
                    location: "wh2".into(),
                    qty: 7,
                },
            ]
            .into(),
        };
        assert_eq!(
            reply(&reserved, &ctx),
            "ok: reserved until 2026-01-01T00:15:00.000Z\n  line 1: CLOTH 0.59 at wh1\n  \
             line 4: 7 base units at wh2"
        );
    }
}
