//! Long-lived QUIC streams against a stream per request, on stockd's own protocol, without the
//! client library (which only has long-lived pipelined streams): `stockd-load streams`.
//!
//! `concurrency` tasks share one QUIC connection to the leader. Each sends single-reservation
//! frames one after the other (no pipelining inside a task), either on ONE stream it keeps for
//! the whole run (`long-lived`) or on a NEW bidirectional stream per request, finished after
//! the frame (`per-request`). Everything else is identical, so the difference is the cost of
//! opening, finishing and tearing down a stream per request on both sides.

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{ChannelId, Command, LocationId, Request, ReservationId, SkuId};
use pki::Trust;
use protocol::{ClientFrame, Op, OpResult, ServerMessage};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::connect::{connect_stockd, ConnectError};
use crate::drive::{run_tag, LoadSettings};
use crate::outputs;
use crate::report;
use crate::scenario::Kind;
use crate::stats::{Recorder, RunStats};
use crate::target::{OpError, Target};

/// Why a stream comparison could not run.
#[derive(Debug)]
pub enum StreamError {
    /// The TLS client configuration could not be made.
    Tls(pki::TlsError),
    /// The local QUIC endpoint could not be bound.
    Endpoint(std::io::Error),
    /// The connection to the leader could not start.
    Connect(quinn::ConnectError),
    /// The connection to the leader failed.
    Connection(quinn::ConnectionError),
    /// stockd could not be reached through the client.
    Target(ConnectError),
    /// The hot SKU's stock could not be loaded.
    LoadStock(OpError),
    /// No node says it is the leader.
    NoLeader,
    /// The leader's address does not parse.
    LeaderAddress {
        /// The address as reported.
        addr: String,
        /// Why it does not parse.
        error: std::net::AddrParseError,
    },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Tls(e) => write!(f, "{e}"),
            StreamError::Endpoint(e) => write!(f, "{e}"),
            StreamError::Connect(e) => write!(f, "{e}"),
            StreamError::Connection(e) => write!(f, "{e}"),
            StreamError::Target(e) => write!(f, "{e}"),
            StreamError::LoadStock(e) => write!(f, "{e}"),
            StreamError::NoLeader => write!(f, "no leader"),
            StreamError::LeaderAddress { addr, error } => {
                write!(f, "leader address {addr}: {error}")
            }
        }
    }
}

impl std::error::Error for StreamError {}

/// How requests use streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum StreamMode {
    /// One stream per task for the whole run.
    LongLived,
    /// A new stream for every request.
    PerRequest,
}

/// What to send: single-line holds of `sku` at `location`, ids prefixed with `tag`.
#[derive(Debug, Clone)]
pub struct StreamBench {
    /// The leader's address.
    pub leader: SocketAddr,
    /// What the client trusts.
    pub trust: Trust,
    /// Who the client is.
    pub identity: Option<pki::Identity>,
    /// Tasks (outstanding requests).
    pub concurrency: usize,
    /// Measured time.
    pub duration: Duration,
    /// The SKU (loaded with plenty of stock beforehand).
    pub sku: String,
    /// Its location.
    pub location: String,
    /// Prefix of the hold ids.
    pub tag: String,
}

fn frame(id: u64, bench: &StreamBench, i: u64) -> Result<Vec<u8>, protocol::FrameError> {
    let request = Request {
        request_id: client::new_request_id(),
        command: Command::Reserve {
            reservation: ReservationId::from(format!("{}{i}", bench.tag).as_str()),
            channel: ChannelId::from("web"),
            lines: vec![engine::Line {
                sku: SkuId::from(bench.sku.as_str()),
                target: engine::Target::Location(LocationId::from(bench.location.as_str())),
                qty: 1,
            }],
            ttl_ms: 60_000,
        },
    };
    protocol::encode(&ClientFrame {
        id,
        ops: vec![Op::Write(request)],
    })
}

fn code_of(reply: Result<Option<Vec<u8>>, String>) -> String {
    match reply {
        Ok(Some(bytes)) => match protocol::parse::<ServerMessage>(&bytes) {
            Ok(ServerMessage::Reply { results, .. }) => match results.first() {
                Some(OpResult::Written { outcome, .. }) => {
                    engine::code_of(outcome).as_str().to_owned()
                }
                Some(OpResult::Failed(e)) => format!("error:{}", e.code()),
                _ => "error:unexpected".to_owned(),
            },
            Ok(_) => "error:unexpected".to_owned(),
            Err(_) => "error:decode".to_owned(),
        },
        Ok(None) => "error:stream-ended".to_owned(),
        Err(_) => "error:transport".to_owned(),
    }
}

/// Sends one frame and reads its reply: on the task's kept stream (opened on first use) for
/// [`StreamMode::LongLived`], on a new stream for [`StreamMode::PerRequest`]; `None`: the
/// stream ended before a reply.
async fn exchange(
    conn: &quinn::Connection,
    mode: StreamMode,
    kept: &mut Option<(quinn::SendStream, quinn::RecvStream)>,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    match mode {
        StreamMode::LongLived => {
            if kept.is_none() {
                *kept = conn.open_bi().await.ok();
            }
            let Some((send, recv)) = kept.as_mut() else {
                return Err("open".to_owned());
            };
            protocol::write_frame(send, bytes)
                .await
                .map_err(|e| e.to_string())?;
            protocol::read_frame(recv).await.map_err(|e| e.to_string())
        }
        StreamMode::PerRequest => {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            protocol::write_frame(&mut send, bytes)
                .await
                .map_err(|e| e.to_string())?;
            let _ = send.finish();
            protocol::read_frame(&mut recv)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// Runs the comparison in one mode; latency from the send of each frame.
pub async fn run(bench: &StreamBench, mode: StreamMode) -> Result<RunStats, StreamError> {
    let config =
        pki::client_config_with(&bench.trust, bench.identity.as_ref()).map_err(StreamError::Tls)?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(StreamError::Endpoint)?;
    endpoint.set_default_client_config(config);
    let connection = endpoint
        .connect(bench.leader, pki::SERVER_NAME)
        .map_err(StreamError::Connect)?
        .await
        .map_err(StreamError::Connection)?;
    let start = Instant::now();
    let deadline = start + bench.duration;
    let rec = Arc::new(Recorder::new(start, "reserve"));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..bench.concurrency.max(1) {
        let (conn, rec, next, bench) =
            (connection.clone(), rec.clone(), next.clone(), bench.clone());
        tasks.spawn(async move {
            let mut kept = None;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Ok(bytes) = frame(i, &bench, i) else {
                    return;
                };
                let sent = Instant::now();
                let reply = exchange(&conn, mode, &mut kept, &bytes).await;
                if reply.is_err() {
                    kept = None;
                }
                let done = Instant::now();
                rec.record("reserve", done - sent, &code_of(reply), done);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let stats = rec.finish(start.elapsed());
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(stats)
}

/// Loads a hot SKU on stockd and finds the leader the streams go to.
async fn prepare(
    load: &LoadSettings,
    cluster: &Cluster,
    concurrency: usize,
) -> Result<StreamBench, StreamError> {
    let target = connect_stockd(&load.targets, Some(cluster))
        .await
        .map_err(StreamError::Target)?;
    let tag = run_tag(Kind::Checkout);
    let sku = format!("{tag}hot");
    target
        .load_stock(vec![(
            sku.clone(),
            "dc-1".to_owned(),
            engine::limits::QTY_MAX,
        )])
        .await
        .map_err(StreamError::LoadStock)?;
    let leader = target
        .client()
        .status()
        .await
        .into_iter()
        .find_map(|r| r.status.ok().filter(|s| s.role == protocol::Role::Leader))
        .ok_or(StreamError::NoLeader)?;
    let addr = leader.node.addr;
    let leader: SocketAddr = addr
        .parse()
        .map_err(|error| StreamError::LeaderAddress { addr, error })?;
    Ok(StreamBench {
        leader,
        trust: cluster.config.trust.clone(),
        identity: cluster.config.identity.clone(),
        concurrency: concurrency.max(1),
        duration: load.duration,
        sku,
        location: "dc-1".to_owned(),
        tag,
    })
}

/// The `streams` command: long-lived, per-request, then long-lived again (the repeat shows
/// how much of a difference is noise), on one connection to the leader.
pub async fn command(
    load: &LoadSettings,
    cluster: Option<&Cluster>,
    concurrency: usize,
) -> ExitCode {
    let Some(cluster) = cluster else {
        return ExitCode::from(2);
    };
    let bench = match prepare(load, cluster, concurrency).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("stockd-load: {e}");
            return ExitCode::from(2);
        }
    };
    let mut summary = String::new();
    let modes = [
        StreamMode::LongLived,
        StreamMode::PerRequest,
        StreamMode::LongLived,
    ];
    for (k, mode) in modes.into_iter().enumerate() {
        let mut b = bench.clone();
        b.tag = format!("{}{k}-", bench.tag);
        match run(&b, mode).await {
            Ok(stats) => {
                let text = report::render_run(
                    &format!("{mode:?}, {} tasks on one connection", b.concurrency),
                    &stats,
                );
                print!("{text}");
                summary.push_str(&text);
            }
            Err(e) => {
                eprintln!("stockd-load: {mode:?}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let dir = outputs::out_dir(load.out.as_deref(), "streams");
    report::write_file(&dir, "summary.txt", &summary);
    ExitCode::SUCCESS
}
