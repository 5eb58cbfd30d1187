//! The bodies of the kit, exchange and purchase-limit writes (SPEC section 3, "Kits,
//! exchanges and purchase limits") and their conversion to the engine's commands; the routes
//! are declared with the other writes (`writes.rs`).

use engine::{ChannelId, Command, CustomerId, KitComponent, OrderId, RmaId, SkuId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::problem::Problem;
use super::writes::{FulfilmentJson, LineJson, ReturnLineJson};

/// One component of a kit: `qty` base units of `sku` per kit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KitComponentJson {
    /// The component SKU.
    pub sku: String,
    /// Base units of it in one kit.
    pub qty: i64,
}

/// `define_kit`: a SKU with no stock of its own, made of 1..=16 distinct components.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineKit {
    /// The kit's SKU.
    pub kit: String,
    /// What one kit is made of.
    pub components: Vec<KitComponentJson>,
}

/// `exchange`: a return and a direct order in one all-or-nothing write.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeJson {
    /// The RMA id of the return.
    pub rma: String,
    /// The original order.
    pub order: String,
    /// What comes back.
    pub returns: Vec<ReturnLineJson>,
    /// The new order's id.
    pub new_order: String,
    /// The new order's channel.
    pub channel: String,
    /// The new order's lines.
    pub lines: Vec<LineJson>,
    /// Ship (default) or pickup.
    pub fulfilment: Option<FulfilmentJson>,
}

/// `set_purchase_limit`: at most `qty_max` units per customer within `window_ms`; 0 removes.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPurchaseLimit {
    /// The limited SKU.
    pub sku: String,
    /// Units a customer may hold plus buy within the window, base units; 0 removes the limit.
    pub qty_max: i64,
    /// The rolling window, ms (60,000..=7,776,000,000); ignored when removing.
    #[serde(default)]
    pub window_ms: u64,
    /// Refuse lines without a customer (default false).
    #[serde(default)]
    pub strict: bool,
}

/// `define_kit` as the engine's command.
pub(super) fn define_kit(d: DefineKit) -> Command {
    Command::DefineKit {
        kit: SkuId::from(d.kit),
        components: d
            .components
            .into_iter()
            .map(|c| KitComponent {
                sku: SkuId::from(c.sku),
                qty: c.qty,
            })
            .collect(),
    }
}

/// `exchange` as the engine's command.
pub(super) fn exchange(x: ExchangeJson) -> Result<Command, Problem> {
    Ok(Command::Exchange(Box::new(engine::Exchange {
        rma: RmaId::from(x.rma),
        order: OrderId::from(x.order),
        returns: x
            .returns
            .into_iter()
            .map(super::writes::return_line)
            .collect(),
        new_order: OrderId::from(x.new_order),
        channel: ChannelId::from(x.channel),
        lines: super::writes::lines(x.lines)?,
        fulfilment: super::writes::fulfilment(x.fulfilment),
    })))
}

/// `set_purchase_limit` as the engine's command.
pub(super) fn set_purchase_limit(l: SetPurchaseLimit) -> Command {
    Command::SetPurchaseLimit {
        sku: SkuId::from(l.sku),
        qty_max: l.qty_max,
        window_ms: l.window_ms,
        strict: l.strict,
    }
}

/// A reserve or direct order made for `customer`, if the body names one.
pub(super) fn for_customer(customer: Option<String>, command: Command) -> Command {
    match customer {
        None => command,
        Some(c) => Command::AsCustomer {
            customer: CustomerId::from(c),
            command: Box::new(command),
        },
    }
}
