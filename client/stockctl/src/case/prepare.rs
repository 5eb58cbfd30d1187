//! Turns a case command line into a write ([`engine::Command`]), with namespaced ids and
//! quantities in base units. One function per family of commands (FORMAT.md's sections).

use std::collections::BTreeMap;

use engine::{
    ChannelId, Command, CustomerId, Fulfilment, GroupId, InvalidReason, KitComponent, Line,
    LocatedLine, LocationDef, LocationId, OrderId, OrderSource, Outcome, Reason, Rejection,
    ReservationId, ReturnLine, RmaId, SkuId, Target, TransferId,
};

use super::runner::Runner;
use super::CaseError;
use crate::grammar::{
    self, FromTo, GrammarError, LineText, PartText, Qty, ReturnText, SkuAt, DEFAULT_PICKUP_MS,
};

/// Why a line produced no write.
pub(super) enum Unsent {
    /// The ledger's answer, decided without sending: a bad quantity is `invalid` (SPEC
    /// section 2), as stockctl decides it too.
    Local(Outcome),
    /// The line is not valid case language.
    Error(CaseError),
}

impl From<CaseError> for Unsent {
    fn from(e: CaseError) -> Unsent {
        Unsent::Error(e)
    }
}

impl From<GrammarError> for Unsent {
    fn from(e: GrammarError) -> Unsent {
        if e.is_quantity() {
            Unsent::Local(Err(Rejection::Invalid {
                reason: InvalidReason::QtyNotPositive,
            }))
        } else {
            Unsent::Error(e.into())
        }
    }
}

/// A command line's words: the command, its positional words and its `name=value` options.
pub(super) struct Words<'w> {
    command: &'w str,
    /// The words after the command that are not options, in order.
    positional: Vec<&'w str>,
    options: BTreeMap<&'w str, &'w str>,
}

impl<'w> Words<'w> {
    /// Splits a command line's words (the command first).
    pub(super) fn split(words: &[&'w str]) -> Words<'w> {
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        for word in words.iter().skip(1) {
            match word.split_once('=') {
                Some((name, value)) => {
                    options.insert(name, value);
                }
                None => positional.push(*word),
            }
        }
        Words {
            command: words.first().copied().unwrap_or(""),
            positional,
            options,
        }
    }

    /// The positional word `i` (0 is the first after the command); `what` names it if missing.
    fn arg(&self, i: usize, what: &'static str) -> Result<&'w str, CaseError> {
        self.positional
            .get(i)
            .copied()
            .ok_or_else(|| CaseError::Missing {
                command: self.command.to_owned(),
                what,
            })
    }

    /// The positional words from `i` on.
    fn rest(&self, i: usize) -> &[&'w str] {
        self.positional.get(i..).unwrap_or(&[])
    }

    fn option(&self, name: &str) -> Option<&'w str> {
        self.options.get(name).copied()
    }

    /// A required `name=` option.
    fn required(&self, name: &str, what: &'static str) -> Result<&'w str, CaseError> {
        self.option(name).ok_or_else(|| CaseError::Missing {
            command: self.command.to_owned(),
            what,
        })
    }
}

impl Runner<'_> {
    /// Turns a command line into a write.
    pub(super) fn prepare(&mut self, w: &Words) -> Result<Command, Unsent> {
        match w.command {
            "location" => self.location(w),
            "group" => self.group(w),
            "sku" => self.sku(w),
            "set_on_hand" | "adjust" | "safety_stock" | "unavailable" | "restore" | "sell" => {
                self.stock(w)
            }
            "reserve" => self.reserve(w),
            "extend" => Ok(Command::Extend {
                reservation: ReservationId::from(self.ns(w.arg(0, "a reservation")?)),
                ttl_ms: grammar::duration_ms(w.required("ttl", "ttl=")?)?,
            }),
            "release" => Ok(Command::Release {
                reservation: ReservationId::from(self.ns(w.arg(0, "a reservation")?)),
            }),
            "order" => self.order(w),
            "fulfil" | "cancel" => self.fulfil_or_cancel(w),
            "reallocate" | "ship_transfer" => self.move_units(w),
            "ready" => Ok(Command::ReadyForPickup {
                order: OrderId::from(self.ns(w.arg(0, "an order")?)),
            }),
            "picked_up" => Ok(Command::PickedUp {
                order: OrderId::from(self.ns(w.arg(0, "an order")?)),
            }),
            "return" => self.return_units(w),
            "receive_transfer" => self.receive_transfer(w),
            "kit" => self.kit(w),
            "exchange" => self.exchange(w),
            "limit" => self.limit(w),
            other => Err(CaseError::UnknownCommand(other.to_owned()).into()),
        }
    }

    /// A display quantity of `sku` in base units; a bad one is the local `invalid`.
    fn qty(&self, sku: &str, text: &str) -> Result<i64, Unsent> {
        Ok(Qty::parse(text)?.to_base(self.scale(sku))?)
    }

    /// A line's target: `all`, a group declared earlier, or a location.
    pub(super) fn target(&self, place: &str) -> Target {
        if place == "all" {
            Target::All
        } else if self.groups.contains(place) {
            Target::Group(GroupId::from(self.ns(place)))
        } else {
            Target::Location(LocationId::from(self.ns(place)))
        }
    }

    /// `SKU@PLACE:QTY` as a reservation or order line.
    fn line(&self, text: &str) -> Result<Line, Unsent> {
        let line = LineText::parse(text)?;
        Ok(Line {
            sku: SkuId::from(self.ns(&line.sku)),
            target: self.target(&line.place),
            qty: line.qty.to_base(self.scale(&line.sku))?,
        })
    }

    /// `SKU@LOCATION:QTY` as a fulfil or cancel line.
    fn located(&self, text: &str) -> Result<LocatedLine, Unsent> {
        let line = LineText::parse(text)?;
        Ok(LocatedLine {
            sku: SkuId::from(self.ns(&line.sku)),
            location: LocationId::from(self.ns(&line.place)),
            qty: line.qty.to_base(self.scale(&line.sku))?,
        })
    }

    /// `location ID KIND [pickup] [lat=F lon=F] [channels=web,app]`.
    fn location(&self, w: &Words) -> Result<Command, Unsent> {
        let coordinates = match (w.option("lat"), w.option("lon")) {
            (Some(lat), Some(lon)) => Some(grammar::coordinates(
                grammar::degrees_e6(lat)?,
                grammar::degrees_e6(lon)?,
            )),
            _ => None,
        };
        Ok(Command::DefineLocation(LocationDef {
            location: LocationId::from(self.ns(w.arg(0, "an id")?)),
            kind: grammar::location_kind(w.arg(1, "a kind")?)?,
            pickup: w.rest(2).contains(&"pickup"),
            coordinates,
            channels: w
                .option("channels")
                .map(|c| c.split(',').map(ChannelId::from).collect()),
        }))
    }

    /// `group ID LOC1 LOC2 ...` (remembered, to tell the group from a location in lines).
    fn group(&mut self, w: &Words) -> Result<Command, Unsent> {
        let group = w.arg(0, "an id")?;
        self.groups.insert(group.to_owned());
        Ok(Command::DefineGroup {
            group: GroupId::from(self.ns(group)),
            locations: w
                .rest(1)
                .iter()
                .map(|l| LocationId::from(self.ns(l)))
                .collect(),
        })
    }

    /// `sku ID [scale=N]` (the scale remembered, for the quantities of later lines).
    fn sku(&mut self, w: &Words) -> Result<Command, Unsent> {
        let sku = w.arg(0, "an id")?;
        let scale: u8 =
            w.option("scale")
                .unwrap_or("0")
                .parse()
                .map_err(|_| CaseError::Unknown {
                    what: "scale",
                    text: w.option("scale").unwrap_or("").to_owned(),
                })?;
        self.scales.insert(sku.to_owned(), scale);
        Ok(Command::DefineSku {
            sku: SkuId::from(self.ns(sku)),
            scale,
        })
    }

    /// `set_on_hand|adjust|safety_stock|unavailable|restore|sell SKU@LOC QTY [...]`.
    fn stock(&self, w: &Words) -> Result<Command, Unsent> {
        let at = SkuAt::parse(w.arg(0, "SKU@LOC")?)?;
        let qty = self.qty(&at.sku, w.arg(1, "a quantity")?)?;
        let (sku, location) = (
            SkuId::from(self.ns(&at.sku)),
            LocationId::from(self.ns(&at.location)),
        );
        let reason = |default: &str| Reason::from(w.option("reason").unwrap_or(default));
        Ok(match w.command {
            "set_on_hand" => Command::SetOnHand {
                expected: match w.option("expected") {
                    Some(text) => Some(self.qty(&at.sku, text)?),
                    None => None,
                },
                qty,
                sku,
                location,
                reason: reason("count"),
            },
            "adjust" => Command::Adjust {
                delta: qty,
                sku,
                location,
                reason: reason("adjust"),
            },
            "safety_stock" => Command::SetSafetyStock { qty, sku, location },
            "unavailable" => Command::MarkUnavailable {
                qty,
                sku,
                location,
                reason: reason("unavailable"),
            },
            "restore" => Command::RestoreUnavailable {
                qty,
                sku,
                location,
                reason: reason("restore"),
            },
            _ => Command::Sell { qty, sku, location },
        })
    }

    /// A write for `customer=CUST`, if the line names one (namespaced like every id).
    fn for_customer(&self, w: &Words, command: Command) -> Command {
        match w.option("customer") {
            None => command,
            Some(customer) => Command::AsCustomer {
                customer: CustomerId::from(self.ns(customer)),
                command: Box::new(command),
            },
        }
    }

    /// `reserve RES CHANNEL LINE... ttl=DURATION [customer=CUST]`.
    fn reserve(&self, w: &Words) -> Result<Command, Unsent> {
        let ttl_ms = grammar::duration_ms(w.required("ttl", "ttl=")?)?;
        let reserve = Command::Reserve {
            reservation: ReservationId::from(self.ns(w.arg(0, "a reservation")?)),
            channel: ChannelId::from(w.arg(1, "a channel")?),
            // No lines is for the ledger to reject.
            lines: w
                .rest(2)
                .iter()
                .map(|l| self.line(l))
                .collect::<Result<_, _>>()?,
            ttl_ms,
        };
        Ok(self.for_customer(w, reserve))
    }

    /// `order ORD from RES ship|pickup` or `order ORD CHANNEL LINE... ship|pickup`, with
    /// `deadline=DURATION` for a pickup and `customer=CUST` for a customer's order.
    fn order(&self, w: &Words) -> Result<Command, Unsent> {
        let order = OrderId::from(self.ns(w.arg(0, "an id")?));
        let fulfilment = self.fulfilment(w, w.positional.last().copied())?;
        // Between the id and ship|pickup: `from RES`, or a channel and lines.
        let middle = w
            .positional
            .get(1..w.positional.len().saturating_sub(1))
            .unwrap_or(&[]);
        let source = match middle {
            ["from", reservation] => {
                OrderSource::Reservation(ReservationId::from(self.ns(reservation)))
            }
            [channel, lines @ ..] if *channel != "from" => OrderSource::Lines {
                channel: ChannelId::from(*channel),
                lines: lines
                    .iter()
                    .map(|l| self.line(l))
                    .collect::<Result<_, _>>()?,
            },
            _ => {
                return Err(CaseError::Missing {
                    command: "order".into(),
                    what: "a channel and lines, or `from RES`",
                }
                .into())
            }
        };
        let place = Command::PlaceOrder {
            order,
            source,
            fulfilment,
        };
        Ok(self.for_customer(w, place))
    }

    /// `ship` or `pickup` (with `deadline=DURATION`, default 48 h), the last positional word.
    fn fulfilment(&self, w: &Words, last: Option<&str>) -> Result<Fulfilment, Unsent> {
        Ok(match last {
            Some("ship") => Fulfilment::Ship,
            Some("pickup") => Fulfilment::Pickup {
                deadline_ms: w
                    .option("deadline")
                    .map(grammar::duration_ms)
                    .transpose()?
                    .unwrap_or(DEFAULT_PICKUP_MS),
            },
            _ => {
                return Err(CaseError::Missing {
                    command: w.command.into(),
                    what: "ship|pickup last",
                }
                .into())
            }
        })
    }

    /// `fulfil ORD LINE...` or `cancel ORD [LINE...]` (no lines: the whole order).
    fn fulfil_or_cancel(&self, w: &Words) -> Result<Command, Unsent> {
        let order = OrderId::from(self.ns(w.arg(0, "an order")?));
        let lines: Vec<LocatedLine> = w
            .rest(1)
            .iter()
            .map(|l| self.located(l))
            .collect::<Result<_, _>>()?;
        Ok(if w.command == "fulfil" {
            Command::Fulfil { order, lines }
        } else {
            Command::Cancel {
                order,
                lines: (!lines.is_empty()).then_some(lines),
            }
        })
    }

    /// `reallocate ORD SKU FROM->TO QTY` or `ship_transfer TR SKU FROM->TO QTY` (the transfer's
    /// SKU remembered, for the scale of `receive_transfer`).
    fn move_units(&mut self, w: &Words) -> Result<Command, Unsent> {
        let id = w.arg(0, "an id")?;
        let sku_text = w.arg(1, "a SKU")?;
        let FromTo { from, to } = FromTo::parse(w.arg(2, "FROM->TO")?)?;
        let qty = self.qty(sku_text, w.arg(3, "a quantity")?)?;
        let (sku, from, to) = (
            SkuId::from(self.ns(sku_text)),
            LocationId::from(self.ns(&from)),
            LocationId::from(self.ns(&to)),
        );
        if w.command == "reallocate" {
            let order = OrderId::from(self.ns(id));
            return Ok(Command::Reallocate {
                order,
                sku,
                from,
                to,
                qty,
            });
        }
        self.transfers.insert(id.to_owned(), sku_text.to_owned());
        Ok(Command::ShipTransfer {
            transfer: TransferId::from(self.ns(id)),
            sku,
            from,
            to,
            qty,
        })
    }

    /// `return RMA ORD SKU@RECEIVED_AT:QTY:DISPOSITION ...`.
    fn return_units(&self, w: &Words) -> Result<Command, Unsent> {
        Ok(Command::Return {
            rma: RmaId::from(self.ns(w.arg(0, "an RMA")?)),
            order: OrderId::from(self.ns(w.arg(1, "an order")?)),
            lines: self.return_lines(w.rest(2))?,
        })
    }

    /// `SKU@RECEIVED_AT:QTY:DISPOSITION` words as return lines.
    fn return_lines(&self, words: &[&str]) -> Result<Vec<ReturnLine>, Unsent> {
        let mut lines = Vec::new();
        for text in words {
            let line = ReturnText::parse(text)?;
            lines.push(ReturnLine {
                sku: SkuId::from(self.ns(&line.sku)),
                qty: line.qty.to_base(self.scale(&line.sku))?,
                received_at: LocationId::from(self.ns(&line.received_at)),
                disposition: line.disposition,
            });
        }
        Ok(lines)
    }

    /// `kit KIT COMP:QTY ...` (QTY in the component's display units).
    fn kit(&self, w: &Words) -> Result<Command, Unsent> {
        let kit = w.arg(0, "a kit")?;
        let mut components = Vec::new();
        for text in w.rest(1) {
            let part = PartText::parse(text)?;
            components.push(KitComponent {
                sku: SkuId::from(self.ns(&part.sku)),
                qty: part.qty.to_base(self.scale(&part.sku))?,
            });
        }
        Ok(Command::DefineKit {
            kit: SkuId::from(self.ns(kit)),
            components,
        })
    }

    /// `exchange RMA ORD RETURN-LINE... -> NEWORD CHANNEL LINE... ship|pickup
    /// [deadline=DURATION]`.
    fn exchange(&self, w: &Words) -> Result<Command, Unsent> {
        let missing = |what| CaseError::Missing {
            command: "exchange".into(),
            what,
        };
        let (before, after) = grammar::split_exchange(&w.positional)
            .ok_or_else(|| missing("`->` between the return and the new order"))?;
        let returns = self.return_lines(before.get(2..).unwrap_or(&[]))?;
        let [new_order, channel, lines @ .., last] = after else {
            return Err(missing("NEWORD CHANNEL LINE... ship|pickup").into());
        };
        Ok(Command::Exchange(Box::new(engine::Exchange {
            rma: RmaId::from(self.ns(w.arg(0, "an RMA")?)),
            order: OrderId::from(self.ns(w.arg(1, "an order")?)),
            returns,
            new_order: OrderId::from(self.ns(new_order)),
            channel: ChannelId::from(*channel),
            lines: lines
                .iter()
                .map(|l| self.line(l))
                .collect::<Result<_, _>>()?,
            fulfilment: self.fulfilment(w, Some(last))?,
        })))
    }

    /// `limit SKU QTY window=DURATION [strict]` (QTY in the SKU's display units; 0 removes).
    fn limit(&self, w: &Words) -> Result<Command, Unsent> {
        let sku = w.arg(0, "a SKU")?;
        let qty_max = self.qty(sku, w.arg(1, "a quantity")?)?;
        let window_ms = match w.option("window") {
            Some(text) => grammar::duration_ms(text)?,
            None if qty_max == 0 => 0,
            None => {
                return Err(CaseError::Missing {
                    command: "limit".into(),
                    what: "window=",
                }
                .into())
            }
        };
        Ok(Command::SetPurchaseLimit {
            sku: SkuId::from(self.ns(sku)),
            qty_max,
            window_ms,
            strict: w.rest(2).contains(&"strict"),
        })
    }

    /// `receive_transfer TR received=QTY damaged=QTY`.
    fn receive_transfer(&self, w: &Words) -> Result<Command, Unsent> {
        // The transfer's SKU is not on this line; its scale comes from the `ship_transfer` line.
        let transfer = w.arg(0, "a transfer")?;
        let sku = self.transfers.get(transfer).cloned().unwrap_or_default();
        Ok(Command::ReceiveTransfer {
            transfer: TransferId::from(self.ns(transfer)),
            received: self.qty(&sku, w.option("received").unwrap_or("0"))?,
            damaged: self.qty(&sku, w.option("damaged").unwrap_or("0"))?,
        })
    }
}
