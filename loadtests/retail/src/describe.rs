//! One-line, human-readable renderings of requests and outcomes (traces and tests).

use engine::{Command, Fulfilment, OrderSource, Outcome, Reply, Request, Target};

fn target(t: &Target) -> &str {
    match t {
        Target::Location(l) => l.as_str(),
        Target::Group(g) => g.as_str(),
        Target::All => "all",
    }
}

/// A command in one line, e.g. `reserve rsv-1 web ttl=900000 [A@online-uk:2]`.
pub fn command(c: &Command) -> String {
    match c {
        Command::DefineLocation(d) => {
            let at = d
                .coordinates
                .map_or(String::new(), |c| format!(" at={},{}", c.lat_e6, c.lon_e6));
            let channels = d.channels.as_ref().map_or("*".to_owned(), |list| {
                list.iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            format!(
                "define_location {} {} pickup={}{at} channels={channels}",
                d.location,
                d.kind.as_str(),
                d.pickup
            )
        }
        Command::DefineGroup { group, locations } => format!(
            "define_group {group} [{}]",
            locations
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Command::Adjust {
            sku,
            location,
            delta,
            reason,
        } => format!("adjust {sku}@{location} {delta:+} {reason}"),
        Command::SetSafetyStock { sku, location, qty } => {
            format!("set_safety_stock {sku}@{location} {qty}")
        }
        Command::Reserve {
            reservation,
            channel,
            lines,
            ttl_ms,
        } => format!(
            "reserve {reservation} {channel} ttl={ttl_ms} [{}]",
            lines
                .iter()
                .map(|l| format!("{}@{}:{}", l.sku, target(&l.target), l.qty))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Command::PlaceOrder {
            order,
            source,
            fulfilment,
        } => {
            let from = match source {
                OrderSource::Reservation(r) => format!("from {r}"),
                OrderSource::Lines { channel, lines } => format!(
                    "{channel} [{}]",
                    lines
                        .iter()
                        .map(|l| format!("{}@{}:{}", l.sku, target(&l.target), l.qty))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            };
            let how = match fulfilment {
                Fulfilment::Ship => "ship".to_owned(),
                Fulfilment::Pickup { deadline_ms } => format!("pickup({deadline_ms})"),
            };
            format!("place_order {order} {from} {how}")
        }
        Command::Fulfil { order, lines } => format!(
            "fulfil {order} [{}]",
            lines
                .iter()
                .map(|l| format!("{}@{}:{}", l.sku, l.location, l.qty))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Command::Cancel { order, lines } => match lines {
            None => format!("cancel {order} all"),
            Some(lines) => format!(
                "cancel {order} [{}]",
                lines
                    .iter()
                    .map(|l| format!("{}@{}:{}", l.sku, l.location, l.qty))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        },
        Command::ReadyForPickup { order } => format!("ready_for_pickup {order}"),
        Command::PickedUp { order } => format!("picked_up {order}"),
        Command::Return { rma, order, lines } => format!(
            "return {rma} {order} [{}]",
            lines
                .iter()
                .map(|l| format!(
                    "{}:{}@{} {}",
                    l.sku,
                    l.qty,
                    l.received_at,
                    l.disposition.as_str()
                ))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => format!("{} {other:?}", other.name()),
    }
}

/// A request: its id's low 64 bits (the replay's counter) and its command.
pub fn request(r: &Request) -> String {
    format!("#{} {}", r.request_id.0 as u64, command(&r.command))
}

/// An outcome in one line: `ok`, `ok [A@uk-wh:2 ...]` for sourcing replies, or the rejection.
pub fn outcome(o: &Outcome) -> String {
    match o {
        Ok(Reply::Reserved { allocations, .. }) | Ok(Reply::OrderPlaced { allocations, .. }) => {
            format!(
                "ok [{}]",
                allocations
                    .iter()
                    .map(|a| format!("{}@{}:{}", a.line, a.location, a.qty))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
        Ok(Reply::Balance(b)) => format!(
            "ok on_hand={} reserved={} allocated={} safety={}",
            b.on_hand, b.reserved, b.allocated, b.safety_stock
        ),
        Ok(_) => "ok".to_owned(),
        Err(rejection) => rejection.to_string(),
    }
}
