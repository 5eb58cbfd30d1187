//! What a command needs to know from the cluster before it can be built (SKU scales, which
//! places are groups, the SKUs of a reservation or transfer), and asking for it.

use std::collections::HashSet;

use client::Client;
use engine::{
    Answer, ChannelId, GroupId, LocationId, ObjectKind, Query, Rejection, ReservationId, SkuId,
    Target, TransferId,
};
use protocol::Consistency;

use super::show::Scales;
use super::{Cmd, Fail};
use crate::grammar::{LineText, SkuAt};

/// What a write needs to know from the cluster before it can be built.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// SKUs whose scale converts quantities.
    pub skus: Vec<String>,
    /// Line targets that may be groups (anything but `all`).
    pub places: Vec<String>,
    /// A location the SKUs are likely to be at (a cheap availability read for the scales).
    pub hint: Option<String>,
    /// A reservation whose SKUs matter (placing an order from it).
    pub reservation: Option<String>,
    /// A transfer whose SKU matters (receiving it).
    pub transfer: Option<String>,
}

impl Needs {
    pub(super) fn skus(skus: Vec<String>, hint: Option<String>) -> Needs {
        Needs {
            skus,
            hint,
            ..Needs::default()
        }
    }
}

/// What the cluster said: scales, which places are groups, the transfer's SKU.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Decimal scale per SKU (unknown SKUs: 0, like the ledger's implicit SKUs).
    pub scales: Scales,
    /// Places that are groups (not locations).
    pub groups: HashSet<String>,
    /// SKU of the reservation or transfer named by the command.
    pub object_skus: Vec<String>,
}

impl Facts {
    pub(super) fn scale(&self, sku: &str) -> u8 {
        self.scales.get(sku).copied().unwrap_or(0)
    }

    pub(super) fn target(&self, place: &str) -> Target {
        if place == "all" {
            Target::All
        } else if self.groups.contains(place) {
            Target::Group(GroupId::from(place))
        } else {
            Target::Location(LocationId::from(place))
        }
    }
}

/// What a write command needs to know (a pure function of the command).
pub fn needs(cmd: &Cmd) -> Needs {
    let at = |a: &SkuAt| Needs::skus(vec![a.sku.clone()], Some(a.location.clone()));
    let lines = |lines: &[LineText], groups: bool| Needs {
        skus: lines.iter().map(|l| l.sku.clone()).collect(),
        places: if groups {
            lines
                .iter()
                .filter(|l| l.place != "all")
                .map(|l| l.place.clone())
                .collect()
        } else {
            Vec::new()
        },
        hint: lines.first().map(|l| l.place.clone()),
        ..Needs::default()
    };
    match cmd {
        Cmd::SetOnHand { at: a, .. }
        | Cmd::Adjust { at: a, .. }
        | Cmd::SafetyStock { at: a, .. }
        | Cmd::Unavailable { at: a, .. }
        | Cmd::Restore { at: a, .. }
        | Cmd::Sell { at: a, .. } => at(a),
        Cmd::Reserve { lines: l, .. } => lines(l, true),
        Cmd::PlaceOrder {
            lines: l,
            from: None,
            ..
        } => lines(l, true),
        Cmd::PlaceOrder { from: Some(r), .. } => Needs {
            reservation: Some(r.clone()),
            ..Needs::default()
        },
        Cmd::Fulfil { lines: l, .. } | Cmd::Cancel { lines: l, .. } => lines(l, false),
        Cmd::Reallocate { sku, from, .. } | Cmd::ShipTransfer { sku, from, .. } => {
            Needs::skus(vec![sku.clone()], Some(from.clone()))
        }
        Cmd::Return { lines: l, .. } => Needs::skus(
            l.iter().map(|l| l.sku.clone()).collect(),
            l.first().map(|l| l.received_at.clone()),
        ),
        Cmd::ReceiveTransfer { transfer, .. } => Needs {
            transfer: Some(transfer.clone()),
            ..Needs::default()
        },
        Cmd::Kit { components, .. } => {
            Needs::skus(components.iter().map(|c| c.sku.clone()).collect(), None)
        }
        Cmd::Limit { sku, .. } => Needs::skus(vec![sku.clone()], None),
        Cmd::Exchange {
            returns, lines: l, ..
        } => {
            let mut needs = lines(l, true);
            needs.skus.extend(returns.iter().map(|r| r.sku.clone()));
            needs
        }
        _ => Needs::default(),
    }
}

/// The SKUs of the reservation or transfer a command names, and a location they are likely
/// to be at (for a cheap scale read).
struct ObjectSkus {
    skus: Vec<String>,
    hint: Option<String>,
}

/// Reads the reservation or transfer `needs` names, if any. `None` if there is none or it
/// does not exist: a missing object is for the ledger to reject; only its SKUs matter here.
async fn object_skus(client: &Client, needs: &Needs) -> Result<Option<ObjectSkus>, Fail> {
    let query = match (&needs.reservation, &needs.transfer) {
        (Some(r), _) => Query::Reservation(ReservationId::from(r.as_str())),
        (None, Some(t)) => Query::Transfer(TransferId::from(t.as_str())),
        (None, None) => return Ok(None),
    };
    Ok(
        match client.read(query, Consistency::Linearizable).await?.answer {
            Ok(Answer::Reservation(r)) => Some(ObjectSkus {
                skus: r.lines.iter().map(|l| l.sku.0.to_string()).collect(),
                hint: r.lines.first().map(|l| l.location.0.to_string()),
            }),
            Ok(Answer::Transfer(t)) => Some(ObjectSkus {
                skus: vec![t.sku.0.to_string()],
                hint: Some(t.to.0.to_string()),
            }),
            _ => None,
        },
    )
}

/// Asks the cluster what `needs` says (linearizable reads, so a scale just defined is seen):
/// one batch of reads for the places (a place that is not a location is a group) and the
/// SKUs' scales (an availability read at the hinted location, else everywhere).
pub(super) async fn facts(client: &Client, needs: &Needs) -> Result<Facts, Fail> {
    let mut facts = Facts::default();
    let mut skus = needs.skus.clone();
    let mut hint = needs.hint.clone();
    if let Some(object) = object_skus(client, needs).await? {
        hint = object.hint;
        skus.extend(object.skus.iter().cloned());
        facts.object_skus = object.skus;
    }
    let mut places: Vec<String> = needs.places.clone();
    places.sort();
    places.dedup();
    let mut queries: Vec<Query> = places
        .iter()
        .map(|p| Query::Location(LocationId::from(p.as_str())))
        .collect();
    skus.sort();
    skus.dedup();
    let scale_query = |target: Target| Query::Availability {
        skus: skus.iter().map(|s| SkuId::from(s.as_str())).collect(),
        target,
        channel: ChannelId::from("web"),
    };
    let hinted = hint.filter(|h| h != "all").map(LocationId::from);
    if !skus.is_empty() {
        queries.push(scale_query(
            hinted.clone().map_or(Target::All, Target::Location),
        ));
    }
    if queries.is_empty() {
        return Ok(facts);
    }
    let mut results = client.read_batch(queries, Consistency::Linearizable).await;
    let scales_result = if skus.is_empty() { None } else { results.pop() };
    for (place, result) in places.iter().zip(results) {
        if let Err(Rejection::NotFound {
            kind: ObjectKind::Location,
            ..
        }) = result?.answer
        {
            facts.groups.insert(place.clone());
        }
    }
    let mut answer = match scales_result {
        Some(result) => result?.answer,
        None => return Ok(facts),
    };
    if answer.is_err() && hinted.is_some() {
        answer = client
            .read(scale_query(Target::All), Consistency::Linearizable)
            .await?
            .answer;
    }
    if let Ok(Answer::Availability(entries)) = answer {
        facts.scales = entries
            .into_iter()
            .map(|e| (e.sku.0.into_string(), e.scale))
            .collect();
    }
    Ok(facts)
}
