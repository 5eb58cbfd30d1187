//! Commands the engine's unit tests share.

use crate::{ChannelId, Command, Line, LocationId, ReservationId, SkuId, Target};

/// A `web` hold `id` of one unit of SKU `A` at warehouse `wh`, for `ttl_ms`.
pub(crate) fn reserve(id: &str, ttl_ms: u64) -> Command {
    Command::Reserve {
        reservation: ReservationId::from(id),
        channel: ChannelId::from("web"),
        lines: vec![Line {
            sku: SkuId::from("A"),
            target: Target::Location(LocationId::from("wh")),
            qty: 1,
        }],
        ttl_ms,
    }
}
