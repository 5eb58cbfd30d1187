//! `stockd-load`'s command line: argument parsing and dispatch (the binary only calls
//! [`main`]). The commands' logic lives in [`crate::demo`] (`replay`, `demo`),
//! [`crate::drive`] (`run`), [`crate::compare`] (`compare`) and [`crate::streams`].
//!
//! - `replay`: the real orders through an in-process engine (no server).
//! - `demo`: starts a local 3-node cluster in this process, replays the real orders through
//!   it with a progress bar, and checks the result against the engine replay.
//! - `run`: one scenario against one target (stockd, redis or postgres), open loop at a rate,
//!   closed loop, a search for the maximum throughput, or a soak (`--soak MINUTES`: a fixed
//!   rate for long, pauses and each node's memory per window).
//! - `compare`: every scenario against every target in turn, and a side-by-side table.
//! - `limited-sale`: a flash sale under a per-customer purchase limit ([`crate::limited_sale`]).
//!
//! `run`, `compare` and `streams` start the cluster as `stockd` processes by default
//! ([`crate::processes`]); `--in-process` runs the nodes in this process instead, `--connect`
//! uses an existing cluster. The demo keeps its cluster in this process (see `demo`). Ctrl-C or
//! SIGTERM ends a command early and still stops the cluster and removes its data.
//!
//! Outputs of `run` and `compare` go to `--out` (default `target/stockd-load/<name>-<time>`):
//! `summary.txt`, `record.json`, one `.hgrm` per target, scenario and operation, and SVG
//! charts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use retail::PlanConfig;

use crate::cluster::{Cluster, ClusterChoice};
use crate::compare::{self, CompareRequest};
use crate::connect::{TargetKind, TargetSettings};
use crate::demo::{self, DemoRequest, EngineReplayRequest};
use crate::drive::{self, DriveMode, LoadSettings, RunRequest, Soak};
use crate::mix::CheckoutMix;
use crate::processes::ProcessOptions;
use crate::retention::{self, RetentionChange};
use crate::scenario::{Kind, ScenarioConfig};
use crate::stockd::{ClusterOptions, RuntimeKind};

/// Default location of the data, relative to the repository root.
pub const DEFAULT_DATA: &str =
    "../shared/data/online-retail/online_retail_II_2009-12_2010-11.csv.gz";

#[derive(Parser)]
#[command(
    name = "stockd-load",
    about = "Load generators for stockd: the real-data demo, scenarios, baselines",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay the Online Retail II order lines through an in-process engine (no server).
    Replay {
        /// The CSV file (gzipped if it ends in .gz).
        #[arg(long, default_value = DEFAULT_DATA)]
        data: PathBuf,
        /// Print the summary as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print every batch, request and outcome to stderr (large: ~260,000 lines).
        #[arg(long)]
        trace: bool,
        /// Replenishment target: days of recent average demand (default: the mapping's).
        #[arg(long)]
        cover_days: Option<i64>,
        /// Opening stock: days of the first 28 days' average demand.
        #[arg(long)]
        opening_cover_days: Option<i64>,
        /// Store stock above safety stock: percent of a week of UK demand.
        #[arg(long)]
        store_share_percent: Option<i64>,
    },
    /// The demo: a local 3-node cluster (in this process) replays a year of real orders,
    /// checked against the engine.
    Demo(DemoArgs),
    /// A sneaker drop with a per-customer purchase limit: N customers (single holds,
    /// retriers, several concurrent holds each) over several connections; checks that exactly
    /// min(stock, sum of the limits) units are granted and no customer passes the limit.
    LimitedSale(LimitedSaleArgs),
    /// Many holds with one deadline: how long after it the cluster has released them all,
    /// and its longest pause meanwhile (SPEC sections 3 and 4).
    ExpiryBurst(ExpiryBurstArgs),
    /// One scenario against one target.
    Run(RunArgs),
    /// Every scenario against every target in turn, side by side.
    Compare(CompareArgs),
    /// Long-lived QUIC streams against a stream per request (raw protocol, stockd only).
    Streams(StreamsArgs),
}

#[derive(Args)]
struct StreamsArgs {
    /// Tasks sending one request at a time each.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args, Clone)]
struct ClusterArgs {
    /// Nodes of an existing cluster (`host:port`, comma-separated); default: start a local
    /// cluster of `stockd` processes (the demo: nodes in this process).
    #[arg(long, value_delimiter = ',')]
    connect: Vec<String>,
    /// The existing cluster's CA certificate (its `ca.pem`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The existing cluster's HTTP base URLs (`http://host:port`, comma-separated, in the
    /// order of --connect), for the `stockd-http` target.
    #[arg(long, value_delimiter = ',', requires = "connect")]
    connect_http: Vec<String>,
    /// The bearer token of the `stockd-http` target, in a file (default: the `admin.token`
    /// next to --ca, which the embedded default and `dev` write).
    #[arg(long, requires = "connect")]
    token_file: Option<PathBuf>,
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Run the local cluster's nodes in this process (on a runtime of their own) instead of
    /// as `stockd` processes.
    #[arg(long)]
    in_process: bool,
    /// The `stockd` binary of the local processes (default: built by cargo when run by cargo,
    /// else the one next to stockd-load).
    #[arg(long, conflicts_with = "in_process")]
    stockd: Option<PathBuf>,
    /// Runtime of the cluster's nodes: `current`, one thread per node (`stockd
    /// --runtime-threads 1`); `multi`, a worker per core (`--runtime-threads 0`). Not given:
    /// `stockd`'s own default for processes (one thread; no flag is passed, so an older
    /// `--stockd` binary still starts) and `multi` for the in-process cluster (`current` runs
    /// all its nodes on one thread).
    #[arg(long, value_enum)]
    cluster_runtime: Option<RuntimeKind>,
    /// Each `stockd` process's memory budget, MiB (`stockd --memory-limit-mib`: above it new
    /// holds are answered busy; 0 none; default stockd's, 80% of the host per node).
    #[arg(long)]
    memory_limit_mib: Option<u64>,
    /// Log durability of the local cluster.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Replicated)]
    durability: DurabilityArg,
    /// Raft entries between snapshots on the local cluster (default: the server's, 100,000).
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// MiB of log that also trigger a snapshot on the local cluster (default: the server's,
    /// 256).
    #[arg(long)]
    snapshot_log_mib: Option<u64>,
    /// Seconds since the last snapshot that also trigger one on the local cluster (default:
    /// the server's, 600).
    #[arg(long)]
    snapshot_interval_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DurabilityArg {
    /// Ack on a majority in memory; the log is flushed within 50 ms.
    Replicated,
    /// Ack after a majority fsynced.
    Fsync,
}

#[derive(Args)]
struct DemoArgs {
    /// The CSV file (gzipped if it ends in .gz).
    #[arg(long, default_value = DEFAULT_DATA)]
    data: PathBuf,
    /// Data seconds per second (e.g. 1000000 replays the year in about 30 s); default: as
    /// fast as the cluster answers.
    #[arg(long)]
    speed: Option<f64>,
    /// Print the summary as JSON too.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct LimitedSaleArgs {
    /// Customers.
    #[arg(long, default_value_t = 3_000)]
    customers: u64,
    /// Units on sale.
    #[arg(long, default_value_t = 1_000)]
    units: i64,
    /// Units each customer may hold or buy (the purchase limit).
    #[arg(long, default_value_t = 1)]
    limit: i64,
    /// Holds a greedy customer sends at once.
    #[arg(long, default_value_t = 3)]
    greedy_holds: u64,
    /// Client connections the customers are spread over.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Print the report as JSON too.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct ExpiryBurstArgs {
    /// Holds placed, all with one deadline.
    #[arg(long, default_value_t = 200_000)]
    holds: u64,
    /// SKUs the holds are spread over (one balance each).
    #[arg(long, default_value_t = 10_000)]
    skus: u64,
    /// Seconds from the start of the placing to the deadline (enough to place every hold).
    #[arg(long, default_value_t = 30)]
    lead_s: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Measured seconds (per step when searching for the maximum).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Holds per frame in `checkout` (100: a checkout gateway; reservations only).
    #[arg(long, default_value_t = 1)]
    frame: usize,
    /// Connections to each target (stockd: client connections; redis/postgres: pool size).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// stockd: request streams per connection.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// stockd: retries of a request without a final answer (busy, timeout).
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// stockd-http: HTTP/2 (h2c) over --connections connections, requests multiplexed,
    /// instead of HTTP/1.1 with keep-alive (a connection per request in flight).
    #[arg(long)]
    http2: bool,
    /// SKUs in the catalogue.
    #[arg(long, default_value_t = 10_000)]
    skus: usize,
    /// Zipf exponent of SKU popularity (0: uniform).
    #[arg(long, default_value_t = 1.0)]
    skew: f64,
    /// Opening units of every SKU.
    #[arg(long, default_value_t = 1_000_000_000)]
    stock: i64,
    /// TTL of holds, ms (10% of checkouts are left to expire).
    #[arg(long, default_value_t = 10_000)]
    ttl_ms: u64,
    /// SKUs per listing read (`store-reads`).
    #[arg(long, default_value_t = 50)]
    listing: usize,
    /// Flash sale: units on sale.
    #[arg(long, default_value_t = 100)]
    flash_units: i64,
    /// Flash sale: contenders, one unit each, all at once.
    #[arg(long, default_value_t = 10_000)]
    flash_contenders: u64,
    /// Seed of every workload choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The generator's tokio runtime.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Current)]
    runtime: RuntimeKind,
    /// Open loop: requests outstanding beyond which new ones are dropped (and counted).
    #[arg(long, default_value_t = 100_000)]
    max_in_flight: u64,
    /// Where to write the reports (default `target/stockd-load/<name>-<time>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Redis URL (default: $STOCKD_REDIS_URL).
    #[arg(long)]
    redis_url: Option<String>,
    /// PostgreSQL URL (default: $STOCKD_PG_URL).
    #[arg(long)]
    pg_url: Option<String>,
    /// stockd: finished objects the cluster keeps (`retired_entries`, 1..=10,000,000), set
    /// once the cluster is up and before any load, so a soak's memory levels off.
    #[arg(long, value_name = "N")]
    retention_finished: Option<u64>,
    /// stockd: request ids the cluster remembers (`dedup_entries`, 524,288..=4,000,000).
    #[arg(long, value_name = "N")]
    retention_dedup: Option<u64>,
    /// stockd: change-feed events the cluster keeps (`feed_events`, 10,000..=1,000,000).
    #[arg(long, value_name = "N")]
    retention_feed: Option<u64>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The scenario.
    #[arg(long, value_enum, default_value_t = Kind::Checkout)]
    scenario: Kind,
    /// The system under test.
    #[arg(long, value_enum, default_value_t = TargetKind::Stockd)]
    target: TargetKind,
    /// Open loop, closed loop, or a search for the maximum throughput.
    #[arg(long, value_enum, default_value_t = DriveMode::Max)]
    mode: DriveMode,
    /// Open loop: requests per second (frames per second with `--frame`).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Closed loop: outstanding requests.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// A soak: an open loop at `--rate` for this many minutes (instead of `--mode` and
    /// `--duration`), reporting per window the rate achieved, the latency, the longest pause
    /// and each node's memory.
    #[arg(long)]
    soak: Option<f64>,
    /// Width of a soak's windows, seconds.
    #[arg(long, default_value_t = 10.0)]
    soak_window: f64,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// Scenarios, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "checkout,flash-sale,store-reads"
    )]
    scenarios: Vec<Kind>,
    /// Targets, in order (the first is the reference of the ratios).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "stockd,redis,postgres"
    )]
    targets: Vec<TargetKind>,
    /// Fixed rate of the checkout's open-loop phase (default: half of stockd's maximum).
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds of the checkout's fixed-rate phase, right after the maximum (SPEC
    /// section 5: 30 s at half of the maximum).
    #[arg(long, default_value_t = 30.0)]
    sustain: f64,
    #[command(flatten)]
    load: LoadArgs,
}

fn durability(arg: DurabilityArg) -> server::raft::log_store::Durability {
    match arg {
        DurabilityArg::Fsync => server::raft::log_store::Durability::Fsync,
        DurabilityArg::Replicated => server::raft::log_store::Durability::default(),
    }
}

impl ClusterArgs {
    /// The cluster the flags name: `--connect`'s, else a local one: `stockd` processes unless
    /// `--in-process`.
    fn choice(&self) -> ClusterChoice {
        if !self.connect.is_empty() || self.in_process {
            return self.demo_choice();
        }
        ClusterChoice::Processes(ProcessOptions {
            nodes: self.nodes,
            binary: self.stockd.clone(),
            durability: durability(self.durability),
            snapshot_every: self.snapshot_every,
            snapshot_log_mib: self.snapshot_log_mib,
            snapshot_interval_s: self.snapshot_interval_s,
            runtime_threads: self.cluster_runtime.map(|kind| match kind {
                RuntimeKind::Current => 1,
                RuntimeKind::Multi => 0,
            }),
            memory_limit_mib: self.memory_limit_mib,
        })
    }

    /// The demo's cluster: `--connect`'s, else one in this process. The demo is the README's
    /// one-command showcase of correctness on real data (`cargo run ... demo` builds only
    /// stockd-load); its timings are not among SPEC section 5's goals.
    fn demo_choice(&self) -> ClusterChoice {
        if !self.connect.is_empty() {
            return ClusterChoice::Existing {
                nodes: self.connect.clone(),
                ca: self.ca.clone(),
                http: self.connect_http.clone(),
                token_file: self.token_file.clone(),
            };
        }
        ClusterChoice::Local(ClusterOptions {
            nodes: self.nodes,
            dir: None,
            runtime: self.cluster_runtime.unwrap_or(RuntimeKind::Multi),
            durability: durability(self.durability),
            snapshot_every: self.snapshot_every,
            snapshot_log_mib: self.snapshot_log_mib,
            snapshot_interval_s: self.snapshot_interval_s,
        })
    }
}

/// Seconds from a flag: negative, NaN or infinite count as zero; at most a day.
fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(86_400.0))
    } else {
        Duration::ZERO
    }
}

impl LoadArgs {
    /// The workload's settings, clamped to the engine's and the protocol's limits.
    fn scenario(&self) -> ScenarioConfig {
        ScenarioConfig {
            tag: String::new(),
            seed: self.seed,
            mix: CheckoutMix {
                skus: self.skus.max(1),
                skew: self.skew.max(0.0),
                ..CheckoutMix::default()
            },
            stock_per_sku: self.stock.clamp(0, engine::limits::QTY_MAX),
            ttl_ms: self.ttl_ms.clamp(1, engine::limits::TTL_MS_MAX),
            frame: self.frame.clamp(1, protocol::OPS_PER_FRAME_MAX),
            listing: self.listing.clamp(1, engine::limits::QUERY_SKUS_MAX),
            flash_units: self.flash_units.max(0),
            flash_contenders: self.flash_contenders,
            ..ScenarioConfig::default()
        }
    }

    fn retention(&self) -> RetentionChange {
        RetentionChange {
            finished_entries: self.retention_finished,
            dedup_entries: self.retention_dedup,
            feed_events: self.retention_feed,
        }
    }

    fn settings(&self) -> LoadSettings {
        LoadSettings {
            duration: secs(self.duration),
            warmup: secs(self.warmup),
            frame: self.frame,
            max_in_flight: self.max_in_flight,
            quiet: self.quiet,
            scenario: self.scenario(),
            targets: TargetSettings {
                connections: self.connections,
                streams: self.streams,
                retries: self.retries,
                http2: self.http2,
                redis_url: self.redis_url.clone(),
                pg_url: self.pg_url.clone(),
            },
            out: self.out.clone(),
            window: None,
        }
    }
}

/// The planner's settings from `replay`'s flags (negative values count as zero).
fn plan_config(
    cover_days: Option<i64>,
    opening_cover_days: Option<i64>,
    store_share_percent: Option<i64>,
) -> PlanConfig {
    let mut config = PlanConfig::default();
    if let Some(days) = cover_days {
        config.cover_days = days.max(0);
    }
    if let Some(days) = opening_cover_days {
        config.opening_cover_days = days.max(0);
    }
    if let Some(percent) = store_share_percent {
        config.store_share_percent = percent.max(0);
    }
    config
}

/// Runs the command line; the exit code says whether every check passed.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Replay {
            data,
            json,
            trace,
            cover_days,
            opening_cover_days,
            store_share_percent,
        } => demo::engine_replay(EngineReplayRequest {
            data,
            json,
            trace,
            config: plan_config(cover_days, opening_cover_days, store_share_percent),
        }),
        Cmd::Demo(args) => demo::demo(DemoRequest {
            cluster: args.cluster.demo_choice(),
            data: args.data,
            speed: args.speed,
            json: args.json,
            quiet: args.quiet,
        }),
        Cmd::LimitedSale(args) => {
            crate::limited_sale::limited_sale(crate::limited_sale::LimitedSaleRequest {
                cluster: args.cluster.demo_choice(),
                customers: args.customers,
                units: args.units,
                limit: args.limit,
                greedy_holds: args.greedy_holds,
                connections: args.connections,
                json: args.json,
            })
        }
        Cmd::ExpiryBurst(args) => {
            crate::expiry_burst::expiry_burst(crate::expiry_burst::ExpiryBurstRequest {
                cluster: args.cluster.choice(),
                holds: args.holds,
                skus: args.skus,
                lead_s: args.lead_s,
            })
        }
        Cmd::Run(args) => run(&args),
        Cmd::Compare(args) => compare(&args),
        Cmd::Streams(args) => streams(&args),
    }
}

/// The `compare` command on a session (cluster, baselines) opened for it.
fn compare(args: &CompareArgs) -> ExitCode {
    let req = CompareRequest {
        scenarios: args.scenarios.clone(),
        targets: args.targets.clone(),
        rate: args.rate,
        sustain: secs(args.sustain),
    };
    let load = args.load.settings();
    Session::open(&args.load, &args.targets).map_or_else(
        |code| code,
        |session| {
            let code = session.run(compare::compare_command(&req, &load, session.cluster()));
            session.finish();
            code
        },
    )
}

/// The `streams` command on a session opened for stockd.
fn streams(args: &StreamsArgs) -> ExitCode {
    let load = args.load.settings();
    Session::open(&args.load, &[TargetKind::Stockd]).map_or_else(
        |code| code,
        |session| {
            let command = crate::streams::command(&load, session.cluster(), args.concurrency);
            let code = session.run(command);
            session.finish();
            code
        },
    )
}

fn run(args: &RunArgs) -> ExitCode {
    let req = RunRequest {
        scenario: args.scenario,
        target: args.target,
        mode: args.mode,
        rate: args.rate,
        concurrency: args.concurrency,
        soak: args.soak.map(|minutes| Soak {
            duration: secs(minutes * 60.0),
            window: secs(args.soak_window).max(Duration::from_secs(1)),
        }),
    };
    let load = args.load.settings();
    let session = match Session::open(&args.load, &[args.target]) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = session.run(drive::run_command(req, &load, session.cluster()));
    session.finish();
    code
}

/// A command's runtime (the generator's), its cluster, and the signals that end it early.
/// Ctrl-C and SIGTERM are caught from the moment the session opens, so even one that comes
/// while the cluster starts ends the command with the cluster stopped and its data removed.
struct Session {
    runtime: tokio::runtime::Runtime,
    /// Set to the signal's name when one came.
    stop: tokio::sync::watch::Receiver<Option<&'static str>>,
    cluster: Option<Cluster>,
}

impl Session {
    /// The runtime, the signal watch, and the cluster when stockd is among the targets
    /// (started, or connected to); `Err` is the exit code after saying why on stderr.
    fn open(load: &LoadArgs, targets: &[TargetKind]) -> Result<Session, ExitCode> {
        let runtime = load.runtime.build().map_err(|e| {
            eprintln!("stockd-load: cannot start the runtime: {e}");
            ExitCode::from(2)
        })?;
        let stop = watch_signals(&runtime).map_err(|e| {
            eprintln!("stockd-load: cannot watch for signals: {e}");
            ExitCode::from(2)
        })?;
        let mut session = Session {
            runtime,
            stop,
            cluster: None,
        };
        if targets.iter().any(|t| t.is_stockd()) {
            let cluster = Cluster::open(load.cluster.choice(), !load.quiet).map_err(|e| {
                eprintln!("stockd-load: cluster: {e}");
                ExitCode::from(2)
            })?;
            session.cluster = Some(cluster);
            if let Err(why) = session.set_retention(load) {
                eprintln!("stockd-load: retention: {why}");
                session.finish();
                return Err(ExitCode::from(2));
            }
        }
        Ok(session)
    }

    /// Sets the `--retention-*` values on the cluster (nothing if none is given).
    fn set_retention(&self, load: &LoadArgs) -> Result<(), String> {
        let (change, Some(cluster)) = (load.retention(), &self.cluster) else {
            return Ok(());
        };
        if change.is_empty() {
            return Ok(());
        }
        let config = self
            .runtime
            .block_on(retention::set(&cluster.config, change))?;
        if !load.quiet {
            eprintln!(
                "stockd-load: retention set: retired_entries={} dedup_entries={} feed_events={}",
                config.retired_entries, config.dedup_entries, config.feed_events
            );
        }
        Ok(())
    }

    fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Runs `command` on the runtime until it ends or a signal comes (exit code 130).
    fn run(&self, command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
        let mut stop = self.stop.clone();
        self.runtime.block_on(async move {
            tokio::select! {
                code = command => code,
                signal = stop.wait_for(Option::is_some) => {
                    let name = signal.ok().and_then(|s| *s).unwrap_or("signal");
                    eprintln!("stockd-load: {name}: stopping");
                    ExitCode::from(130)
                }
            }
        })
    }

    /// Stops a cluster we started (and removes its data).
    fn finish(self) {
        if let Some(cluster) = self.cluster {
            cluster.stop();
        }
    }
}

/// Catches SIGINT and SIGTERM from now on (their default action, which would leave the
/// cluster's processes and data behind, no longer applies) and reports the first on the
/// returned watch.
fn watch_signals(
    runtime: &tokio::runtime::Runtime,
) -> std::io::Result<tokio::sync::watch::Receiver<Option<&'static str>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let _entered = runtime.enter();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (tx, rx) = tokio::sync::watch::channel(None);
    runtime.spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "interrupted",
            _ = terminate.recv() => "terminated",
        };
        let _ = tx.send(Some(name));
    });
    Ok(rx)
}
