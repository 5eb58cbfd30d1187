//! `stockd-load expiry-burst`: many holds with one deadline, then how fast the cluster lets
//! them go (SPEC section 4: "1 M holds expiring in one second" are released without a pause
//! over 5 ms; section 3: a passed deadline is not in counts).
//!
//! The run stocks `--skus` SKUs at one location, places `--holds` single-line holds spread
//! over them, each with the TTL that makes it expire at one shared instant (the client's clock
//! plus `--lead-s`: the nodes of a local cluster share that clock, so every deadline falls
//! within the few ms a write takes), then waits for that instant and reads the leader's status
//! every [`POLL_MS`] until no hold is live. It reports how long after the deadline the last
//! hold left (the expiry backlog that a batch works off [`engine::limits::EXPIRY_STEPS_PER_BATCH`]
//! steps at a time), the release rate, and the nodes' longest apply pause and the most CPU an
//! apply used, while the holds were placed and while they drained. With no client writing, only
//! the leader's ticks do the work.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::{new_request_id, Client, ClientError};
use engine::{
    Answer, ChannelId, Command, Line, LocationDef, LocationId, LocationKind, Query, Reason,
    Request, ReservationId, SkuId, Target,
};
use protocol::Consistency;

use crate::cluster::{Cluster, ClusterChoice};
use crate::stockd::RuntimeKind;

/// How often the leader's status is read while the holds drain, ms.
pub const POLL_MS: u64 = 5;
/// How long the drain may take before the run gives up, s.
pub const DRAIN_TIMEOUT_S: u64 = 120;
/// Holds sent per `write_batch` call (its frames go out concurrently).
const HOLDS_PER_CALL: usize = 20_000;
/// The location every SKU is stocked at.
const LOCATION: &str = "dc-burst";

/// What to run.
#[derive(Debug, Clone)]
pub struct ExpiryBurstRequest {
    /// Where.
    pub cluster: ClusterChoice,
    /// Holds placed, all with one deadline.
    pub holds: u64,
    /// SKUs the holds are spread over (one balance each).
    pub skus: u64,
    /// Seconds from the start of the placing to the shared deadline: enough to place them all.
    pub lead_s: u64,
}

/// What the burst showed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExpiryBurstReport {
    /// Holds granted (all with the one deadline).
    pub holds: u64,
    /// SKUs they were spread over.
    pub skus: u64,
    /// Seconds the placing took.
    pub place_s: f64,
    /// Milliseconds from the deadline until the leader's status showed no live hold.
    pub drained_after_ms: f64,
    /// Holds released per second of that time.
    pub holds_per_s: f64,
    /// The nodes' longest apply pause and apply CPU in the seconds of the placing.
    pub placing: NodePauses,
    /// The same in the seconds of the drain.
    pub draining: NodePauses,
}

/// The nodes' longest apply pause in some seconds, and the most CPU one apply used in them.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct NodePauses {
    /// Longest apply pause, µs.
    pub apply_us: u64,
    /// Most CPU time of the applying thread in one apply, µs.
    pub cpu_us: u64,
}

/// The `expiry-burst` command.
pub fn expiry_burst(req: ExpiryBurstRequest) -> ExitCode {
    let (cluster, runtime) =
        match Cluster::open_with_runtime(req.cluster.clone(), RuntimeKind::Multi) {
            Ok(opened) => opened,
            Err(code) => return code,
        };
    let result = runtime.block_on(run(cluster.config.clone(), &req));
    drop(runtime);
    cluster.stop();
    match result {
        Ok(r) => {
            let ms = |us: u64| us as f64 / 1_000.0;
            println!(
                "expiry burst: {} holds on {} SKUs, one deadline: all released {:.1} ms after it, {:.0} holds/s; longest apply pause while draining {:.3} ms (CPU {:.3} ms), while placing them ({:.1} s) {:.3} ms (CPU {:.3} ms)",
                r.holds,
                r.skus,
                r.drained_after_ms,
                r.holds_per_s,
                ms(r.draining.apply_us),
                ms(r.draining.cpu_us),
                r.place_s,
                ms(r.placing.apply_us),
                ms(r.placing.cpu_us),
            );
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stockd-load: expiry-burst: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn run(
    config: client::ClientConfig,
    req: &ExpiryBurstRequest,
) -> Result<ExpiryBurstReport, ClientError> {
    let client = Client::connect(config).await?;
    stock(&client, req).await?;
    let started = Instant::now();
    let placing_from_ms = now_ms();
    let deadline_ms = placing_from_ms + req.lead_s * 1_000;
    let holds = place(&client, req, deadline_ms).await?;
    let place_s = started.elapsed().as_secs_f64();
    let placing = pauses_between(&client, placing_from_ms, now_ms()).await;
    let live = live_holds(&client).await?;
    if now_ms() >= deadline_ms || live < holds {
        return Err(ClientError::Unexpected(format!(
            "placing took {place_s:.1} s, past the deadline (or holds left early: {live} live of {holds}): raise --lead-s"
        )));
    }
    tokio::time::sleep(Duration::from_millis(deadline_ms - now_ms())).await;
    let drained_after_ms = wait_for_drain(&client, deadline_ms).await?;
    // Statuses keep 60 s of per-second maxima: the drain's seconds are all there.
    let draining = pauses_between(&client, deadline_ms, u64::MAX).await;
    client.close();
    Ok(ExpiryBurstReport {
        holds,
        skus: req.skus,
        place_s,
        drained_after_ms,
        holds_per_s: holds as f64 / (drained_after_ms / 1_000.0).max(1e-3),
        placing,
        draining,
    })
}

/// Defines the location and gives each SKU enough on hand for its share of the holds.
async fn stock(client: &Client, req: &ExpiryBurstRequest) -> Result<(), ClientError> {
    let define = Command::DefineLocation(LocationDef {
        location: LocationId::from(LOCATION),
        kind: LocationKind::Warehouse,
        pickup: false,
        coordinates: None,
        channels: None,
    });
    if let Err(r) = client.write(define).await?.outcome {
        return Err(ClientError::Unexpected(format!("define_location: {r}")));
    }
    let per_sku = i64::try_from(req.holds.div_ceil(req.skus.max(1))).unwrap_or(i64::MAX);
    let requests = (0..req.skus.max(1))
        .map(|i| Request {
            request_id: new_request_id(),
            command: Command::SetOnHand {
                sku: SkuId::from(format!("burst-{i}")),
                location: LocationId::from(LOCATION),
                qty: per_sku,
                reason: Reason::from("expiry-burst"),
                expected: None,
            },
        })
        .collect();
    for result in client.write_batch(requests).await {
        if let Err(r) = result?.outcome {
            return Err(ClientError::Unexpected(format!("set_on_hand: {r}")));
        }
    }
    Ok(())
}

/// Places the holds, each with the TTL that ends it at `deadline_ms`; returns those granted.
async fn place(
    client: &Client,
    req: &ExpiryBurstRequest,
    deadline_ms: u64,
) -> Result<u64, ClientError> {
    let mut granted = 0u64;
    let mut next = 0u64;
    while next < req.holds {
        let end = (next + HOLDS_PER_CALL as u64).min(req.holds);
        let ttl_ms = deadline_ms.saturating_sub(now_ms()).max(1);
        let requests = (next..end)
            .map(|n| Request {
                request_id: new_request_id(),
                command: Command::Reserve {
                    reservation: ReservationId::from(format!("burst-h{n}")),
                    channel: ChannelId::from("web"),
                    lines: vec![Line {
                        sku: SkuId::from(format!("burst-{}", n % req.skus.max(1))),
                        target: Target::Location(LocationId::from(LOCATION)),
                        qty: 1,
                    }],
                    ttl_ms,
                },
            })
            .collect();
        for result in client.write_batch(requests).await {
            if result?.outcome.is_ok() {
                granted += 1;
            }
        }
        next = end;
    }
    Ok(granted)
}

/// The leader's count of live holds (linearizable).
async fn live_holds(client: &Client) -> Result<u64, ClientError> {
    match client
        .read(Query::Status, Consistency::Linearizable)
        .await?
        .answer
    {
        Ok(Answer::Status(s)) => Ok(s.live_reservations),
        other => Err(ClientError::Unexpected(format!("status: {other:?}"))),
    }
}

/// Reads the live holds every [`POLL_MS`] until none is left; returns ms since the deadline.
async fn wait_for_drain(client: &Client, deadline_ms: u64) -> Result<f64, ClientError> {
    let since_deadline_ms = || {
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6);
        (now_us - deadline_ms as f64 * 1_000.0) / 1_000.0
    };
    loop {
        if live_holds(client).await? == 0 {
            return Ok(since_deadline_ms());
        }
        if since_deadline_ms() > (DRAIN_TIMEOUT_S * 1_000) as f64 {
            return Err(ClientError::Unexpected(format!(
                "holds still live {DRAIN_TIMEOUT_S} s after their deadline"
            )));
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// Every node's longest apply pause and longest apply CPU, µs, in the seconds that overlap
/// `[from_ms, to_ms)` (ms since the Unix epoch).
async fn pauses_between(client: &Client, from_ms: u64, to_ms: u64) -> NodePauses {
    let mut found = NodePauses::default();
    for report in client.status().await {
        let Ok(status) = report.status else { continue };
        for second in &status.pauses.recent {
            if second.start_ms + 1_000 > from_ms && second.start_ms < to_ms {
                found.apply_us = found.apply_us.max(second.apply_pause_max_us);
                found.cpu_us = found.cpu_us.max(second.apply_cpu_max_us);
            }
        }
    }
    found
}
