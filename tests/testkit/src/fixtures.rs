//! Small things cluster tests share: a client, the commands that set up stock, a read.

use std::path::Path;

use client::{Client, ClientConfig};

use crate::error::Error;

/// A client of `nodes` trusting the CA certificate in `ca`, retrying for up to `deadline_ms`.
pub async fn client(nodes: Vec<String>, ca: &Path, deadline_ms: u64) -> Result<Client, Error> {
    let mut config = admin_config(nodes, ca)?;
    config.deadline_ms = deadline_ms;
    Ok(Client::connect(config).await?)
}

/// A client configuration of `nodes` trusting the CA certificate in `ca` and presenting the
/// administrator identity the cluster wrote beside it (`admin.pem`, `admin.key`).
pub fn admin_config(nodes: Vec<String>, ca: &Path) -> Result<ClientConfig, Error> {
    let dir = ca.parent().unwrap_or(Path::new("."));
    Ok(ClientConfig::admin_of(nodes, dir)?)
}

/// The administrator identity beside the CA certificate `ca`.
pub fn admin_identity(ca: &Path) -> Result<pki::Identity, pki::TlsError> {
    let dir = ca.parent().unwrap_or(Path::new("."));
    let file = |ext: &str| dir.join(format!("{}.{ext}", pki::DEFAULT_ADMIN));
    pki::load_client_identity(&file("pem"), &file("key"))
}

/// The definition of a plain warehouse `id` (every channel, no pickup, no coordinates).
pub fn warehouse(id: &str) -> engine::Command {
    engine::Command::DefineLocation(engine::LocationDef {
        location: engine::LocationId::from(id),
        kind: engine::LocationKind::Warehouse,
        pickup: false,
        coordinates: None,
        channels: None,
    })
}

/// A count: on_hand of `sku` at `location` := `qty`.
pub fn count(sku: &str, location: &str, qty: i64) -> engine::Command {
    engine::Command::SetOnHand {
        sku: engine::SkuId::from(sku),
        location: engine::LocationId::from(location),
        qty,
        reason: engine::Reason::from("count"),
        expected: None,
    }
}

/// A hold `id` for `channel` of `qty` units of `sku` at `location`, for `ttl_ms`.
pub fn hold(
    id: &str,
    channel: &str,
    sku: &str,
    location: &str,
    qty: i64,
    ttl_ms: u64,
) -> engine::Command {
    engine::Command::Reserve {
        reservation: engine::ReservationId::from(id),
        channel: engine::ChannelId::from(channel),
        lines: vec![engine::Line {
            sku: engine::SkuId::from(sku),
            target: engine::Target::Location(engine::LocationId::from(location)),
            qty,
        }],
        ttl_ms,
    }
}

/// A receipt: on_hand of `sku` at `location` += 1 (reason `receipt`).
pub fn receipt(sku: &str, location: &str) -> engine::Command {
    engine::Command::Adjust {
        sku: engine::SkuId::from(sku),
        location: engine::LocationId::from(location),
        delta: 1,
        reason: engine::Reason::from("receipt"),
    }
}

/// Writes [`receipt`] through `client` and returns its log index; a rejection by the ledger is
/// [`Error::UnexpectedAnswer`], a client failure [`Error::Client`].
pub async fn acknowledged_receipt(
    client: &Client,
    sku: &str,
    location: &str,
) -> Result<u64, Error> {
    let written = client.write(receipt(sku, location)).await?;
    match written.outcome {
        Ok(_) => Ok(written.log_index),
        Err(rejection) => Err(Error::UnexpectedAnswer {
            asked: "a receipt of one unit",
            got: format!("{rejection:?}"),
        }),
    }
}

/// Units on hand of `sku` at `location` (channel `web`), read linearizably.
pub async fn on_hand(client: &Client, sku: &str, location: &str) -> Result<i64, Error> {
    let query = engine::Query::Availability {
        skus: vec![engine::SkuId::from(sku)],
        target: engine::Target::Location(engine::LocationId::from(location)),
        channel: engine::ChannelId::from("web"),
    };
    let read = client
        .read(query, protocol::Consistency::Linearizable)
        .await?;
    let row = match &read.answer {
        Ok(engine::Answer::Availability(rows)) => rows.first().and_then(|r| r.rows.first()),
        _ => None,
    };
    row.map(|r| r.balance.on_hand)
        .ok_or_else(|| Error::UnexpectedAnswer {
            asked: "availability of one SKU at one location",
            got: format!("{:?}", read.answer),
        })
}

/// This process's resident memory (`VmRSS` of `/proc/self/status`), bytes; `None` where that
/// file does not exist (not Linux). The nodes of a [`crate::Cluster`] live in this process.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
