//! `exchange` (SPEC section 3): a return and a new direct order in ONE all-or-nothing write,
//! and the writes made for a customer (`Command::AsCustomer`).
//!
//! The return is checked as `return` would check it; the new order is then checked as a direct
//! `place_order` would be, on the stock the return would leave (its restocked units counted
//! in, see `SourcingRules::restocked`), with the original order's customer and its purchase
//! limits net of what the exchange returns. Only when both halves pass does anything change:
//! the return commits, and the new order is sourced again on the real balances (the same
//! answer: the check saw exactly those numbers) and placed.

use crate::command::{Command, Exchange, OrderSource};
use crate::ids::CustomerId;
use crate::ledger::{invalid, Ledger, Remembered};
use crate::orders::Placement;
use crate::outcome::{InvalidReason, Rejection};
use crate::sourcing::SourcingRules;

impl Ledger {
    /// Applies an exchange: every check of both halves (the return's first, so its code wins
    /// when both fail), then the return, then the new order.
    pub(crate) fn exchange(&mut self, x: &Exchange) -> Result<Remembered, Rejection> {
        let checked = self.check_return(&x.rma, &x.order, &x.returns)?;
        let new = self.check_new_order(&x.new_order, x.fulfilment)?;
        // The return named an existing order: the new one belongs to its customer, if any.
        let customer = self
            .order_slot(x.order.as_str())
            .and_then(|slot| self.ord(slot).extra.as_ref())
            .and_then(|e| e.customer.clone());
        let restocked = checked.restocked();
        let offset = checked.returned_units();
        let pickup = new.pickup.is_some();
        let (chan, _, counted) = self.check_direct_order(
            pickup,
            &x.channel,
            &x.lines,
            customer.as_ref(),
            &restocked,
            &offset,
        )?;
        // Both halves pass: commit the return, then place the order on the stock it left.
        self.commit_return(&x.rma, &x.order, checked, Some(x.new_order.clone()));
        let sourced = self
            .source(SourcingRules::plain(chan, pickup), &x.lines)
            .expect("the new order was checked on the stock the return leaves");
        let placement = Placement {
            kits: sourced.kits,
            customer,
            counted,
            exchange_of: Some(x.rma.clone()),
        };
        Ok(self.commit_direct_order(&x.new_order, new, &x.channel, chan, sourced.held, placement))
    }

    /// A `reserve` or a direct `place_order` made for `customer` (anything else is
    /// `invalid`): the customer's id is checked first (a malformed request).
    pub(crate) fn as_customer(
        &mut self,
        customer: &CustomerId,
        command: &Command,
    ) -> Result<Remembered, Rejection> {
        if !crate::ids::is_valid_customer_id(customer.as_str()) {
            return invalid(crate::InvalidReason::BadId {
                field: "customer".to_owned(),
            });
        }
        match command {
            Command::Reserve {
                reservation,
                channel,
                lines,
                ttl_ms,
            } => self.reserve(reservation, channel, lines, *ttl_ms, Some(customer)),
            Command::PlaceOrder {
                order,
                source: source @ OrderSource::Lines { .. },
                fulfilment,
            } => self.place_order(order, source, *fulfilment, Some(customer)),
            _ => invalid(InvalidReason::NotForCustomer),
        }
    }
}
