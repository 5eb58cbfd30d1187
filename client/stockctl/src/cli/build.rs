//! Building a write from its command line and the cluster's facts: ids as typed, quantities
//! converted from display units at each SKU's scale, line places told apart (location, group or
//! `all`). One function per family of commands.

use engine::{
    ChannelId, Command, CustomerId, Exchange, Fulfilment, GroupId, KitComponent, Line, LocatedLine,
    LocationDef, LocationId, OrderId, OrderSource, Reason, ReservationId, ReturnLine, RmaId, SkuId,
    TransferId,
};

use super::command::CredentialsCmd;
use super::facts::Facts;
use super::show::ReplyContext;
use super::Cmd;
use crate::grammar::{self, GrammarError, LineText, Qty, ReturnText, SkuAt, DEFAULT_PICKUP_MS};

/// A write ready to send, with what its reply refers to.
#[derive(Debug)]
pub struct Built {
    /// The write.
    pub command: Command,
    /// For display units in the reply.
    pub context: ReplyContext,
}

/// Why a command line did not make a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The command line cannot make a write (exit status 2).
    #[error("{0}")]
    Usage(&'static str),
    /// A quantity the ledger would reject as `invalid` (more decimals than its SKU's scale,
    /// above `QTY_MAX`): decided locally, not sent (exit status 1).
    #[error(transparent)]
    Invalid(#[from] GrammarError),
}

/// Builds a write from its command line and the cluster's facts.
pub fn build(cmd: &Cmd, facts: &Facts) -> Result<Built, BuildError> {
    let command = match cmd {
        Cmd::DefineLocation { .. } | Cmd::DefineGroup { .. } | Cmd::DefineSku { .. } => {
            definition(cmd)
        }
        Cmd::SetOnHand { .. }
        | Cmd::Adjust { .. }
        | Cmd::SafetyStock { .. }
        | Cmd::Unavailable { .. }
        | Cmd::Restore { .. }
        | Cmd::Sell { .. } => stock(cmd, facts)?,
        Cmd::Reserve { .. } | Cmd::Extend { .. } | Cmd::Release { .. } => hold(cmd, facts)?,
        Cmd::PlaceOrder { .. } => place_order(cmd, facts)?,
        Cmd::Fulfil { .. }
        | Cmd::Cancel { .. }
        | Cmd::Reallocate { .. }
        | Cmd::Ready { .. }
        | Cmd::PickedUp { .. } => order_change(cmd, facts)?,
        Cmd::Return { .. } | Cmd::ShipTransfer { .. } | Cmd::ReceiveTransfer { .. } => {
            returns_and_transfers(cmd, facts)?
        }
        Cmd::Credentials {
            action: CredentialsCmd::Revoke { id, cert },
        } => revocation(id, cert.as_deref())?,
        Cmd::Kit { .. } | Cmd::Exchange { .. } | Cmd::Limit { .. } => kits_and_limits(cmd, facts)?,
        _ => return Err(BuildError::Usage("not a write")),
    };
    Ok(Built {
        command,
        context: context(cmd, facts),
    })
}

/// `credentials revoke`: the entry lasts until the certificate's own expiry when it is given,
/// else for the longest validity a client certificate can have.
fn revocation(id: &str, cert: Option<&std::path::Path>) -> Result<Command, BuildError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let until_ms = match cert {
        Some(path) => {
            let chain = pki::load_certs(path)
                .map_err(|_| BuildError::Usage("--cert: not a certificate file"))?;
            let principal = pki::principal_of(&chain[0])
                .map_err(|_| BuildError::Usage("--cert: not a client certificate"))?;
            principal.expires_at_ms
        }
        None => now + u64::from(pki::CLIENT_DAYS_MAX) * 86_400_000,
    };
    Ok(Command::RevokeCredential {
        credential: id.to_ascii_lowercase(),
        until_ms,
    })
}

/// What the reply of `cmd` refers to: the SKU of a stock write or a transfer, the SKU of each
/// line of a reservation or order, and their scales.
fn context(cmd: &Cmd, facts: &Facts) -> ReplyContext {
    let mut context = ReplyContext {
        scales: facts.scales.clone(),
        ..ReplyContext::default()
    };
    match cmd {
        Cmd::SetOnHand { at, .. }
        | Cmd::Adjust { at, .. }
        | Cmd::SafetyStock { at, .. }
        | Cmd::Unavailable { at, .. }
        | Cmd::Restore { at, .. }
        | Cmd::Sell { at, .. } => context.sku = Some(at.sku.clone()),
        Cmd::ReceiveTransfer { .. } => context.sku = facts.object_skus.first().cloned(),
        // An order from a reservation has the reservation's lines.
        Cmd::PlaceOrder { from: Some(_), .. } => context.line_skus = facts.object_skus.clone(),
        Cmd::Reserve { lines, .. }
        | Cmd::PlaceOrder { lines, .. }
        | Cmd::Exchange { lines, .. } => {
            context.line_skus = lines.iter().map(|l| l.sku.clone()).collect();
        }
        _ => {}
    }
    context
}

/// `qty` of `sku` in base units, at the scale the cluster knows.
fn base(facts: &Facts, sku: &str, qty: &Qty) -> Result<i64, GrammarError> {
    qty.to_base(facts.scale(sku))
}

/// A reservation or order line (its place a location, a group or `all`).
fn line(facts: &Facts, l: &LineText) -> Result<Line, GrammarError> {
    Ok(Line {
        sku: SkuId::from(l.sku.as_str()),
        target: facts.target(&l.place),
        qty: base(facts, &l.sku, &l.qty)?,
    })
}

/// A fulfil or cancel line (its place a location).
fn located(facts: &Facts, l: &LineText) -> Result<LocatedLine, GrammarError> {
    Ok(LocatedLine {
        sku: SkuId::from(l.sku.as_str()),
        location: LocationId::from(l.place.as_str()),
        qty: base(facts, &l.sku, &l.qty)?,
    })
}

/// `define-location`, `define-group`, `define-sku`: no quantities.
fn definition(cmd: &Cmd) -> Command {
    match cmd {
        Cmd::DefineLocation {
            id,
            kind,
            pickup,
            lat,
            lon,
            channels,
        } => Command::DefineLocation(LocationDef {
            location: LocationId::from(id.as_str()),
            kind: *kind,
            pickup: *pickup,
            coordinates: lat.zip(*lon).map(|(a, o)| grammar::coordinates(a, o)),
            // No --channels: every channel may sell from it.
            channels: (!channels.is_empty()).then(|| {
                channels
                    .iter()
                    .map(|c| ChannelId::from(c.as_str()))
                    .collect()
            }),
        }),
        Cmd::DefineGroup { id, locations } => Command::DefineGroup {
            group: GroupId::from(id.as_str()),
            locations: locations
                .iter()
                .map(|l| LocationId::from(l.as_str()))
                .collect(),
        },
        Cmd::DefineSku { sku, scale } => Command::DefineSku {
            sku: SkuId::from(sku.as_str()),
            scale: *scale,
        },
        _ => unreachable!("build dispatches only definitions here"),
    }
}

/// The stock writes at one `SKU@LOCATION`.
fn stock(cmd: &Cmd, facts: &Facts) -> Result<Command, GrammarError> {
    let ids = |at: &SkuAt| {
        (
            SkuId::from(at.sku.as_str()),
            LocationId::from(at.location.as_str()),
        )
    };
    Ok(match cmd {
        Cmd::SetOnHand {
            at,
            qty,
            expected,
            reason,
        } => Command::SetOnHand {
            qty: base(facts, &at.sku, qty)?,
            reason: Reason::from(reason.as_str()),
            expected: expected
                .as_ref()
                .map(|e| base(facts, &at.sku, e))
                .transpose()?,
            sku: ids(at).0,
            location: ids(at).1,
        },
        Cmd::Adjust { at, delta, reason } => Command::Adjust {
            delta: base(facts, &at.sku, delta)?,
            reason: Reason::from(reason.as_str()),
            sku: ids(at).0,
            location: ids(at).1,
        },
        Cmd::SafetyStock { at, qty } => Command::SetSafetyStock {
            qty: base(facts, &at.sku, qty)?,
            sku: ids(at).0,
            location: ids(at).1,
        },
        Cmd::Unavailable { at, qty, reason } => Command::MarkUnavailable {
            qty: base(facts, &at.sku, qty)?,
            reason: Reason::from(reason.as_str()),
            sku: ids(at).0,
            location: ids(at).1,
        },
        Cmd::Restore { at, qty, reason } => Command::RestoreUnavailable {
            qty: base(facts, &at.sku, qty)?,
            reason: Reason::from(reason.as_str()),
            sku: ids(at).0,
            location: ids(at).1,
        },
        Cmd::Sell { at, qty } => Command::Sell {
            qty: base(facts, &at.sku, qty)?,
            sku: ids(at).0,
            location: ids(at).1,
        },
        _ => unreachable!("build dispatches only stock writes here"),
    })
}

/// `reserve`, `extend`, `release`.
fn hold(cmd: &Cmd, facts: &Facts) -> Result<Command, GrammarError> {
    Ok(match cmd {
        Cmd::Reserve {
            reservation,
            channel,
            lines,
            ttl,
            customer,
        } => for_customer(
            customer.as_deref(),
            Command::Reserve {
                reservation: ReservationId::from(reservation.as_str()),
                channel: ChannelId::from(channel.as_str()),
                lines: lines
                    .iter()
                    .map(|l| line(facts, l))
                    .collect::<Result<_, _>>()?,
                ttl_ms: *ttl,
            },
        ),
        Cmd::Extend { reservation, ttl } => Command::Extend {
            reservation: ReservationId::from(reservation.as_str()),
            ttl_ms: *ttl,
        },
        Cmd::Release { reservation } => Command::Release {
            reservation: ReservationId::from(reservation.as_str()),
        },
        _ => unreachable!("build dispatches only holds here"),
    })
}

/// `place-order`: from a reservation (`--from`) or from lines (`--channel` and lines).
fn place_order(cmd: &Cmd, facts: &Facts) -> Result<Command, BuildError> {
    let Cmd::PlaceOrder {
        order,
        lines,
        from,
        channel,
        pickup,
        deadline,
        customer,
    } = cmd
    else {
        unreachable!("build dispatches only place-order here")
    };
    let source = match (from, channel) {
        (Some(r), _) => OrderSource::Reservation(ReservationId::from(r.as_str())),
        (None, Some(c)) if !lines.is_empty() => OrderSource::Lines {
            channel: ChannelId::from(c.as_str()),
            lines: lines
                .iter()
                .map(|l| line(facts, l))
                .collect::<Result<_, _>>()?,
        },
        _ => {
            return Err(BuildError::Usage(
                "place-order needs --from RES, or --channel and lines",
            ))
        }
    };
    let place = Command::PlaceOrder {
        order: OrderId::from(order.as_str()),
        source,
        fulfilment: fulfilment(*pickup, *deadline),
    };
    Ok(for_customer(customer.as_deref(), place))
}

/// Ship, or pickup within `deadline` (default 2 d).
fn fulfilment(pickup: bool, deadline: Option<u64>) -> Fulfilment {
    if pickup {
        Fulfilment::Pickup {
            deadline_ms: deadline.unwrap_or(DEFAULT_PICKUP_MS),
        }
    } else {
        Fulfilment::Ship
    }
}

/// A write made for `customer`, if one is given (`--customer`).
fn for_customer(customer: Option<&str>, command: Command) -> Command {
    match customer {
        None => command,
        Some(c) => Command::AsCustomer {
            customer: CustomerId::from(c),
            command: Box::new(command),
        },
    }
}

/// A return line at its SKU's scale.
fn return_line(facts: &Facts, l: &ReturnText) -> Result<ReturnLine, GrammarError> {
    Ok(ReturnLine {
        sku: SkuId::from(l.sku.as_str()),
        qty: base(facts, &l.sku, &l.qty)?,
        received_at: LocationId::from(l.received_at.as_str()),
        disposition: l.disposition,
    })
}

/// `kit`, `exchange`, `limit`.
fn kits_and_limits(cmd: &Cmd, facts: &Facts) -> Result<Command, BuildError> {
    Ok(match cmd {
        Cmd::Kit { kit, components } => Command::DefineKit {
            kit: SkuId::from(kit.as_str()),
            components: components
                .iter()
                .map(|c| {
                    Ok(KitComponent {
                        sku: SkuId::from(c.sku.as_str()),
                        qty: base(facts, &c.sku, &c.qty)?,
                    })
                })
                .collect::<Result<_, GrammarError>>()?,
        },
        Cmd::Exchange {
            rma,
            order,
            returns,
            new_order,
            channel,
            lines,
            pickup,
            deadline,
        } => Command::Exchange(Box::new(Exchange {
            rma: RmaId::from(rma.as_str()),
            order: OrderId::from(order.as_str()),
            returns: returns
                .iter()
                .map(|r| return_line(facts, r))
                .collect::<Result<_, _>>()?,
            new_order: OrderId::from(new_order.as_str()),
            channel: ChannelId::from(channel.as_str()),
            lines: lines
                .iter()
                .map(|l| line(facts, l))
                .collect::<Result<_, _>>()?,
            fulfilment: fulfilment(*pickup, *deadline),
        })),
        Cmd::Limit {
            sku,
            qty,
            window,
            strict,
        } => {
            let qty_max = base(facts, sku, qty)?;
            let window_ms = match (window, qty_max) {
                (Some(w), _) => *w,
                (None, 0) => 0,
                (None, _) => return Err(BuildError::Usage("limit needs --window unless QTY is 0")),
            };
            Command::SetPurchaseLimit {
                sku: SkuId::from(sku.as_str()),
                qty_max,
                window_ms,
                strict: *strict,
            }
        }
        _ => unreachable!("build dispatches only kits, exchanges and limits here"),
    })
}

/// `fulfil`, `cancel`, `reallocate`, `ready`, `picked-up`: changes to a placed order.
fn order_change(cmd: &Cmd, facts: &Facts) -> Result<Command, GrammarError> {
    let located_lines = |lines: &[LineText]| -> Result<Vec<LocatedLine>, GrammarError> {
        lines.iter().map(|l| located(facts, l)).collect()
    };
    Ok(match cmd {
        Cmd::Fulfil { order, lines } => Command::Fulfil {
            order: OrderId::from(order.as_str()),
            lines: located_lines(lines)?,
        },
        Cmd::Cancel { order, lines } => Command::Cancel {
            order: OrderId::from(order.as_str()),
            // No lines: everything unfulfilled.
            lines: if lines.is_empty() {
                None
            } else {
                Some(located_lines(lines)?)
            },
        },
        Cmd::Reallocate {
            order,
            sku,
            from,
            to,
            qty,
        } => Command::Reallocate {
            order: OrderId::from(order.as_str()),
            sku: SkuId::from(sku.as_str()),
            from: LocationId::from(from.as_str()),
            to: LocationId::from(to.as_str()),
            qty: base(facts, sku, qty)?,
        },
        Cmd::Ready { order } => Command::ReadyForPickup {
            order: OrderId::from(order.as_str()),
        },
        Cmd::PickedUp { order } => Command::PickedUp {
            order: OrderId::from(order.as_str()),
        },
        _ => unreachable!("build dispatches only order changes here"),
    })
}

/// `return`, `ship-transfer`, `receive-transfer`.
fn returns_and_transfers(cmd: &Cmd, facts: &Facts) -> Result<Command, GrammarError> {
    Ok(match cmd {
        Cmd::Return { rma, order, lines } => Command::Return {
            rma: RmaId::from(rma.as_str()),
            order: OrderId::from(order.as_str()),
            lines: lines
                .iter()
                .map(|l| return_line(facts, l))
                .collect::<Result<_, GrammarError>>()?,
        },
        Cmd::ShipTransfer {
            transfer,
            sku,
            from,
            to,
            qty,
        } => Command::ShipTransfer {
            transfer: TransferId::from(transfer.as_str()),
            sku: SkuId::from(sku.as_str()),
            from: LocationId::from(from.as_str()),
            to: LocationId::from(to.as_str()),
            qty: base(facts, sku, qty)?,
        },
        Cmd::ReceiveTransfer {
            transfer,
            received,
            damaged,
        } => {
            // The transfer's SKU (asked of the cluster) gives the scale.
            let sku = facts.object_skus.first().cloned().unwrap_or_default();
            Command::ReceiveTransfer {
                transfer: TransferId::from(transfer.as_str()),
                received: base(facts, &sku, received)?,
                damaged: base(facts, &sku, damaged)?,
            }
        }
        _ => unreachable!("build dispatches only returns and transfers here"),
    })
}
