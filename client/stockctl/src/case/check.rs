//! `expect` lines: a reservation's or an order's state, or balance fields and ATS of a SKU at
//! a location, a group or `all`, compared in display units.

use engine::query::{OrderState, ReservationState, SkuAvailability};
use engine::units::format_display;
use engine::{Answer, ChannelId, OrderId, Query, ReservationId, SkuId, Target};

use super::runner::{compare, Runner};
use super::{CaseError, CaseTarget};
use crate::grammar::{Qty, SkuAt};

/// Reservation states a case may expect.
const RESERVATION_STATES: [ReservationState; 4] = [
    ReservationState::Active,
    ReservationState::Released,
    ReservationState::Expired,
    ReservationState::Placed,
];

/// Order states a case may expect.
const ORDER_STATES: [OrderState; 5] = [
    OrderState::Open,
    OrderState::PartiallyFulfilled,
    OrderState::Fulfilled,
    OrderState::Cancelled,
    OrderState::Closed,
];

impl Runner<'_> {
    /// `expect reservation RES STATE`, `expect order ORD STATE` or `expect SKU@PLACE FIELD=V...`.
    pub(super) fn check(
        &self,
        target: &mut dyn CaseTarget,
        words: &[&str],
    ) -> Result<(), CaseError> {
        let missing = |what| CaseError::Missing {
            command: "expect".into(),
            what,
        };
        match words {
            ["reservation", rest @ ..] => {
                let [id, want] = rest else {
                    return Err(missing("a reservation id and a state"));
                };
                if !RESERVATION_STATES.iter().any(|s| s.as_str() == *want) {
                    return Err(unknown("reservation state", want));
                }
                let query = Query::Reservation(ReservationId::from(self.ns(id)));
                let got = match target.query(query)? {
                    Ok(Answer::Reservation(r)) => r.state.as_str().to_owned(),
                    Ok(other) => return Err(CaseError::UnexpectedAnswer(format!("{other:?}"))),
                    Err(rejection) => rejection.code().as_str().to_owned(),
                };
                compare(
                    &format!("reservation {id} {want}"),
                    &format!("reservation {id} {got}"),
                )
            }
            ["order", rest @ ..] => {
                let [id, want] = rest else {
                    return Err(missing("an order id and a state"));
                };
                if !ORDER_STATES.iter().any(|s| s.as_str() == *want) {
                    return Err(unknown("order state", want));
                }
                let got = match target.query(Query::Order(OrderId::from(self.ns(id))))? {
                    Ok(Answer::Order(o)) => o.state.as_str().to_owned(),
                    Ok(other) => return Err(CaseError::UnexpectedAnswer(format!("{other:?}"))),
                    Err(rejection) => rejection.code().as_str().to_owned(),
                };
                compare(&format!("order {id} {want}"), &format!("order {id} {got}"))
            }
            [at, fields @ ..] => self.check_balance(target, at, fields),
            [] => Err(missing("something to check")),
        }
    }

    /// `expect SKU@PLACE FIELD=VALUE ...`: balance fields at a location; `available` and
    /// `available[pos]` anywhere (the web channel's ATS, and the counter's).
    fn check_balance(
        &self,
        target: &mut dyn CaseTarget,
        at: &str,
        fields: &[&str],
    ) -> Result<(), CaseError> {
        let at = SkuAt::parse(at)?;
        let place = self.target(&at.location);
        let single = matches!(place, Target::Location(_));
        let entry = self.availability(target, &at.sku, place)?;
        let scale = self.scale(&at.sku);
        let balance = entry.rows.first().map(|r| r.balance).unwrap_or_default();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for field in fields {
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| unknown("check", field))?;
            let value = Qty::parse(value)?.to_base(scale)?;
            let actual = match (name, single) {
                ("available", _) => entry.ats,
                ("available[pos]", _) => entry.ats_pos,
                ("on_hand", true) => balance.on_hand,
                ("reserved", true) => balance.reserved,
                ("allocated", true) => balance.allocated,
                ("unavailable", true) => balance.unavailable,
                ("safety_stock", true) => balance.safety_stock,
                ("incoming", true) => balance.incoming,
                _ => return Err(unknown("check at a group or `all`", field)),
            };
            want.push(format!("{name}={}", format_display(value, scale)));
            got.push(format!("{name}={}", format_display(actual, scale)));
        }
        compare(&want.join(" "), &got.join(" "))
    }

    /// The web channel's availability of one SKU at `place`.
    fn availability(
        &self,
        target: &mut dyn CaseTarget,
        sku: &str,
        place: Target,
    ) -> Result<SkuAvailability, CaseError> {
        let query = Query::Availability {
            skus: vec![SkuId::from(self.ns(sku))],
            target: place,
            channel: ChannelId::from("web"),
        };
        match target.query(query)? {
            Ok(Answer::Availability(mut v)) if v.len() == 1 => Ok(v.remove(0)),
            Ok(other) => Err(CaseError::UnexpectedAnswer(format!("{other:?}"))),
            Err(rejection) => Err(CaseError::QueryRejected(rejection)),
        }
    }
}

fn unknown(what: &'static str, text: &str) -> CaseError {
    CaseError::Unknown {
        what,
        text: text.to_owned(),
    }
}
