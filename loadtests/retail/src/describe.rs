//! One-line, human-readable renderings of requests and outcomes (traces and tests).

use engine::{
    Command, Fulfilment, Line, LocatedLine, LocationDef, OrderId, OrderSource, Outcome, Reply,
    Request, ReturnLine, Target,
};

fn target(t: &Target) -> &str {
    match t {
        Target::Location(l) => l.as_str(),
        Target::Group(g) => g.as_str(),
        Target::All => "all",
    }
}

/// `items` rendered by `f`, separated by `sep`.
fn join<T>(items: &[T], sep: &str, f: impl Fn(&T) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join(sep)
}

fn define_location(d: &LocationDef) -> String {
    let at = d
        .coordinates
        .map_or(String::new(), |c| format!(" at={},{}", c.lat_e6, c.lon_e6));
    let channels = d.channels.as_ref().map_or("*".to_owned(), |list| {
        join(list, ",", |c| c.as_str().to_owned())
    });
    format!(
        "define_location {} {} pickup={}{at} channels={channels}",
        d.location,
        d.kind.as_str(),
        d.pickup
    )
}

fn place_order(order: &OrderId, source: &OrderSource, fulfilment: &Fulfilment) -> String {
    let from = match source {
        OrderSource::Reservation(r) => format!("from {r}"),
        OrderSource::Lines { channel, lines } => format!("{channel} [{}]", target_lines(lines)),
    };
    let how = match fulfilment {
        Fulfilment::Ship => "ship".to_owned(),
        Fulfilment::Pickup { deadline_ms } => format!("pickup({deadline_ms})"),
    };
    format!("place_order {order} {from} {how}")
}

/// `SKU@target:qty ...`
fn target_lines(lines: &[Line]) -> String {
    join(lines, " ", |l| {
        format!("{}@{}:{}", l.sku, target(&l.target), l.qty)
    })
}

/// `SKU@location:qty ...`
fn located_lines(lines: &[LocatedLine]) -> String {
    join(lines, " ", |l| {
        format!("{}@{}:{}", l.sku, l.location, l.qty)
    })
}

/// `SKU:qty@received_at disposition ...`
fn return_lines(lines: &[ReturnLine]) -> String {
    join(lines, " ", |l| {
        let disposition = l.disposition.as_str();
        format!("{}:{}@{} {disposition}", l.sku, l.qty, l.received_at)
    })
}

/// A command in one line, e.g. `reserve rsv-1 web ttl=900000 [A@online-uk:2]`.
pub fn command(c: &Command) -> String {
    match c {
        Command::DefineLocation(d) => define_location(d),
        Command::DefineGroup { group, locations } => {
            let locations = join(locations, ",", |l| l.as_str().to_owned());
            format!("define_group {group} [{locations}]")
        }
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
            target_lines(lines)
        ),
        Command::PlaceOrder {
            order,
            source,
            fulfilment,
        } => place_order(order, source, fulfilment),
        Command::Fulfil { order, lines } => format!("fulfil {order} [{}]", located_lines(lines)),
        Command::Cancel { order, lines: None } => format!("cancel {order} all"),
        Command::Cancel {
            order,
            lines: Some(lines),
        } => format!("cancel {order} [{}]", located_lines(lines)),
        Command::ReadyForPickup { order } => format!("ready_for_pickup {order}"),
        Command::PickedUp { order } => format!("picked_up {order}"),
        Command::Return { rma, order, lines } => {
            format!("return {rma} {order} [{}]", return_lines(lines))
        }
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
