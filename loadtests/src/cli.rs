//! `stockd-load`'s commands (the binary only calls [`main`]).
//!
//! - `replay`: the real orders through an in-process engine (no server).
//! - `demo`: starts a local 3-node cluster in this process, replays the real orders through
//!   it with a progress bar, and checks the result against the engine replay.
//! - `run`: one scenario against one target (stockd, redis or postgres), open loop at a rate,
//!   closed loop, or a search for the maximum throughput.
//! - `compare`: every scenario against every target in turn, and a side-by-side table.
//!
//! Outputs of `run` and `compare` go to `--out` (default `target/stockd-load/<name>-<time>`):
//! `summary.txt`, `record.json`, one `.hgrm` per target, scenario and operation, and SVG
//! charts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;

use crate::baseline_targets::{PostgresTarget, RedisTarget};
use crate::cluster_replay::{self, ReplayOptions};
use crate::mix::CheckoutMix;
use crate::report::{self, Series, Table};
use crate::retail::{self, describe, PlanConfig};
use crate::run::{self, Mode, RunConfig};
use crate::scenario::{self, FlashSaleReport, Kind, ScenarioConfig, Workload};
use crate::stats::RunStats;
use crate::stockd::{ClusterOptions, LocalCluster, RuntimeKind, StockdOptions, StockdTarget};
use crate::target::Target;

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
    /// The demo: a local 3-node cluster replays a year of real orders, checked against the
    /// engine.
    Demo(DemoArgs),
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
    /// cluster in this process.
    #[arg(long, value_delimiter = ',')]
    connect: Vec<String>,
    /// The existing cluster's CA certificate (its `ca.pem`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Runtime of the local cluster's nodes.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Multi)]
    cluster_runtime: RuntimeKind,
    /// Log durability of the local cluster.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Replicated)]
    durability: DurabilityArg,
    /// Raft entries between snapshots on the local cluster (default: the server's, 100,000).
    #[arg(long)]
    snapshot_every: Option<u64>,
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
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
enum TargetKind {
    /// stockd through the client library.
    Stockd,
    /// Redis with a Lua script per operation.
    Redis,
    /// PostgreSQL with a transaction per operation.
    Postgres,
}

impl TargetKind {
    fn as_str(self) -> &'static str {
        match self {
            TargetKind::Stockd => "stockd",
            TargetKind::Redis => "redis",
            TargetKind::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
enum ModeArg {
    /// A fixed arrival rate (`--rate`), latency from the intended send time.
    Open,
    /// A fixed number of outstanding requests (`--concurrency`).
    Closed,
    /// Closed loop at each of a ladder of concurrencies; the best one's run.
    Max,
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
    #[arg(long, value_enum, default_value_t = ModeArg::Max)]
    mode: ModeArg,
    /// Open loop: requests per second (frames per second with `--frame`).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Closed loop: outstanding requests.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
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
    #[command(flatten)]
    load: LoadArgs,
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
        } => engine_replay(
            &data,
            json,
            trace,
            cover_days,
            opening_cover_days,
            store_share_percent,
        ),
        Cmd::Demo(args) => demo(args),
        Cmd::Run(args) => {
            let targets = [args.target];
            with_cluster(&args.load, &targets, |cluster| {
                block_on(args.load.runtime, run_command(&args, cluster))
            })
        }
        Cmd::Compare(args) => with_cluster(&args.load, &args.targets, |cluster| {
            block_on(args.load.runtime, compare_command(&args, cluster))
        }),
        Cmd::Streams(args) => with_cluster(&args.load, &[TargetKind::Stockd], |cluster| {
            block_on(args.load.runtime, streams_command(&args, cluster))
        }),
    }
}

fn block_on(kind: RuntimeKind, f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match kind.build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("stockd-load: cannot start the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

fn engine_replay(
    data: &Path,
    json: bool,
    trace: bool,
    cover_days: Option<i64>,
    opening_cover_days: Option<i64>,
    store_share_percent: Option<i64>,
) -> ExitCode {
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
    let tracer = |batch: &retail::Batch, outcomes: &[engine::Outcome]| {
        if !trace {
            return;
        }
        eprintln!(
            "batch t={} ({})",
            batch.timestamp_ms,
            retail::input::format_datetime_ms(batch.timestamp_ms)
        );
        for (request, outcome) in batch.requests.iter().zip(outcomes) {
            eprintln!(
                "  {} -> {}",
                describe::request(request),
                describe::outcome(outcome)
            );
        }
    };
    let replay = match retail::replay_file(data, config, tracer) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stockd-load: {}: {e}", data.display());
            return ExitCode::from(2);
        }
    };
    let summary = &replay.summary;
    if json {
        match serde_json::to_string_pretty(summary) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("stockd-load: json: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", retail::render(summary));
    }
    for m in &replay.mismatch_samples {
        eprintln!("mismatch: {m}");
    }
    if summary.is_clean() {
        ExitCode::SUCCESS
    } else {
        eprintln!("stockd-load: the replay did not end clean (see checks)");
        ExitCode::FAILURE
    }
}

/// A cluster to test: a local one we started (and stop), or an existing one.
struct Cluster {
    local: Option<LocalCluster>,
    config: client::ClientConfig,
}

fn durability(arg: DurabilityArg) -> server::raft::log_store::Durability {
    match arg {
        DurabilityArg::Fsync => server::raft::log_store::Durability::Fsync,
        DurabilityArg::Replicated => server::raft::log_store::Durability::default(),
    }
}

fn open_cluster(args: &ClusterArgs, say: bool) -> Result<Cluster, String> {
    if !args.connect.is_empty() {
        let trust = match &args.ca {
            Some(path) => pki::Trust::Ca(
                pki::load_certs(path).map_err(|e| format!("{}: {e}", path.display()))?,
            ),
            None => return Err("--connect needs --ca (the cluster's ca.pem)".to_owned()),
        };
        return Ok(Cluster {
            local: None,
            config: client::ClientConfig::new(args.connect.clone(), trust),
        });
    }
    let started = Instant::now();
    let local = LocalCluster::start(ClusterOptions {
        nodes: args.nodes,
        dir: None,
        runtime: args.cluster_runtime,
        durability: durability(args.durability),
        snapshot_every: args.snapshot_every,
    })?;
    if say {
        eprintln!(
            "started a local {}-node cluster in {:.1} s: {} (data in {}, removed at the end)",
            args.nodes.clamp(1, 7),
            started.elapsed().as_secs_f64(),
            local.addrs().join(" "),
            local.root().display()
        );
    }
    let config = local.client_config()?;
    Ok(Cluster {
        local: Some(local),
        config,
    })
}

fn demo(args: DemoArgs) -> ExitCode {
    let t0 = Instant::now();
    eprintln!("reading {} ...", args.data.display());
    let dataset = match retail::input::open(&args.data).and_then(retail::read_lines) {
        Ok(lines) => retail::build(lines),
        Err(e) => {
            eprintln!("stockd-load: {}: {e}", args.data.display());
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "{} order lines, {} invoices, {} SKUs, {} .. {} ({:.1} s)",
        dataset.stats.lines_used,
        dataset.stats.invoices_read,
        dataset.stats.skus,
        dataset.stats.first_event,
        dataset.stats.last_event,
        t0.elapsed().as_secs_f64()
    );
    let cluster = match open_cluster(&args.cluster, true) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stockd-load: cluster: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match RuntimeKind::Current.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stockd-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let input = args.data.display().to_string();
    let options = ReplayOptions {
        speed: args.speed,
        progress: !args.quiet,
    };
    let config = cluster.config.clone();
    eprintln!("replaying the orders through the cluster (the catalogue and opening stock load as SKUs first sell) ...");
    let result = runtime.block_on(async move {
        let client = client::Client::connect(config)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        // Ctrl-C stops the replay cleanly: the local cluster still stops and removes its data.
        let report = tokio::select! {
            r = cluster_replay::replay(&client, &input, dataset, PlanConfig::default(), &options) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        };
        client.close();
        report
    });
    drop(runtime);
    if let Some(local) = cluster.local {
        local.stop();
    }
    match result {
        Ok(report) => {
            println!();
            print!("{}", cluster_replay::render(&report));
            println!("total        {:.1} s", t0.elapsed().as_secs_f64());
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("stockd-load: json: {e}"),
                }
            }
            if report.is_consistent() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("stockd-load: replay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn scenario_config(load: &LoadArgs, tag: String) -> ScenarioConfig {
    ScenarioConfig {
        tag,
        seed: load.seed,
        mix: CheckoutMix {
            skus: load.skus.max(1),
            skew: load.skew.max(0.0),
            ..CheckoutMix::default()
        },
        stock_per_sku: load.stock.clamp(0, engine::limits::QTY_MAX),
        ttl_ms: load.ttl_ms.clamp(1, engine::limits::TTL_MS_MAX),
        frame: load.frame.clamp(1, protocol::OPS_PER_FRAME_MAX),
        listing: load.listing.clamp(1, engine::limits::QUERY_SKUS_MAX),
        flash_units: load.flash_units.max(0),
        flash_contenders: load.flash_contenders,
        ..ScenarioConfig::default()
    }
}

fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(86_400.0))
    } else {
        Duration::ZERO
    }
}

/// A tag unique to this run: names never collide with an earlier run on the same cluster.
fn run_tag(scenario: Kind) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let short = match scenario {
        Kind::Checkout => "c",
        Kind::FlashSale => "f",
        Kind::StoreReads => "s",
    };
    format!("{short}{:x}:", ms % (1 << 40))
}

fn out_dir(load: &LoadArgs, name: &str) -> PathBuf {
    load.out.clone().unwrap_or_else(|| {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("target/stockd-load/{name}-{s}"))
    })
}

/// What one scenario against one target produced.
#[derive(Debug, Clone, Serialize)]
enum Outcome {
    /// An open- or closed-loop run.
    Load {
        /// How it was driven.
        mode: String,
        /// Its statistics.
        stats: RunStats,
    },
    /// A search for the maximum: each step's concurrency and throughput, and the best run.
    Max {
        /// (outstanding requests, throughput) per step.
        steps: Vec<(usize, f64)>,
        /// Outstanding requests of the best step.
        concurrency: usize,
        /// The best step's statistics.
        stats: RunStats,
    },
    /// A flash sale.
    Flash(Box<FlashSaleReport>),
}

impl Outcome {
    fn stats(&self) -> &RunStats {
        match self {
            Outcome::Load { stats, .. } | Outcome::Max { stats, .. } => stats,
            Outcome::Flash(f) => &f.stats,
        }
    }
}

/// A target ready for scenarios.
#[derive(Clone)]
enum AnyTarget {
    Stockd(StockdTarget),
    Redis(RedisTarget),
    Postgres(PostgresTarget),
}

fn env_or(flag: &Option<String>, var: &str) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var(var).ok())
        .filter(|s| !s.is_empty())
}

async fn connect_target(
    kind: TargetKind,
    load: &LoadArgs,
    cluster: Option<&Cluster>,
) -> Result<AnyTarget, String> {
    match kind {
        TargetKind::Stockd => {
            let cluster = cluster.ok_or("no cluster")?;
            let options = StockdOptions {
                connections: load.connections.max(1),
                streams: load.streams,
                retries: load.retries,
                ..StockdOptions::default()
            };
            StockdTarget::connect(cluster.config.clone(), &options)
                .await
                .map(AnyTarget::Stockd)
                .map_err(|e| format!("stockd: {e}"))
        }
        TargetKind::Redis => {
            let url = env_or(&load.redis_url, "STOCKD_REDIS_URL").ok_or(
                "redis: no URL (--redis-url or STOCKD_REDIS_URL; `scripts/baselines.sh start` then `eval \"$(scripts/baselines.sh env)\"`)",
            )?;
            RedisTarget::connect(&url, load.connections.max(1))
                .await
                .map(AnyTarget::Redis)
                .map_err(|e| format!("redis at {url}: {e}"))
        }
        TargetKind::Postgres => {
            let url = env_or(&load.pg_url, "STOCKD_PG_URL").ok_or(
                "postgres: no URL (--pg-url or STOCKD_PG_URL; `scripts/baselines.sh start` then `eval \"$(scripts/baselines.sh env)\"`)",
            )?;
            PostgresTarget::connect(&url, load.connections.max(1))
                .await
                .map(AnyTarget::Postgres)
                .map_err(|e| format!("postgres at {url}: {e}"))
        }
    }
}

/// How a scenario is driven.
#[derive(Debug, Clone, Copy)]
enum Drive {
    Open(f64),
    Closed(usize),
    Max,
}

async fn scenario_on(
    target: &AnyTarget,
    kind: Kind,
    load: &LoadArgs,
    drive: Drive,
    label: &str,
) -> Result<Outcome, String> {
    match target {
        AnyTarget::Stockd(t) => scenario_generic(t, kind, load, drive, label).await,
        AnyTarget::Redis(t) => scenario_generic(t, kind, load, drive, label).await,
        AnyTarget::Postgres(t) => scenario_generic(t, kind, load, drive, label).await,
    }
}

/// Outstanding requests tried when searching for the maximum throughput.
fn ladder(frame: usize) -> &'static [usize] {
    if frame > 1 {
        &[1, 2, 4, 8, 16]
    } else {
        &[16, 64, 256, 1_024, 4_096]
    }
}

async fn scenario_generic<T: Target>(
    target: &T,
    kind: Kind,
    load: &LoadArgs,
    drive: Drive,
    label: &str,
) -> Result<Outcome, String> {
    let tag = run_tag(kind);
    let workload = Arc::new(Workload::new(kind, scenario_config(load, tag)));
    target
        .reset()
        .await
        .map_err(|e| format!("{}: reset: {e}", target.name()))?;
    let loading = Instant::now();
    target
        .load_stock(workload.stock())
        .await
        .map_err(|e| format!("{}: loading stock: {e}", target.name()))?;
    if !load.quiet {
        eprintln!(
            "{label}: loaded {} balances in {:.1} s",
            workload.stock().len(),
            loading.elapsed().as_secs_f64()
        );
    }
    if kind == Kind::FlashSale {
        let report = scenario::flash_sale(target, &workload).await;
        return Ok(Outcome::Flash(Box::new(report)));
    }
    let base = RunConfig {
        mode: Mode::Closed { concurrency: 1 },
        duration: secs(load.duration),
        warmup: secs(load.warmup),
        max_in_flight: load.max_in_flight,
        progress: !load.quiet,
        label: label.to_owned(),
    };
    match drive {
        Drive::Open(rate) => {
            let config = RunConfig {
                mode: Mode::Open { rate },
                ..base
            };
            let (stats, _) = run::run(target, &workload, &config, 0).await;
            Ok(Outcome::Load {
                mode: format!("open loop at {} requests/s", report::thousands(rate)),
                stats,
            })
        }
        Drive::Closed(concurrency) => {
            let config = RunConfig {
                mode: Mode::Closed { concurrency },
                ..base
            };
            let (stats, _) = run::run(target, &workload, &config, 0).await;
            Ok(Outcome::Load {
                mode: format!("closed loop, {concurrency} outstanding"),
                stats,
            })
        }
        Drive::Max => {
            let mut steps = Vec::new();
            let mut best: Option<(usize, RunStats)> = None;
            let mut next = 0;
            for &c in ladder(load.frame) {
                let config = RunConfig {
                    mode: Mode::Closed { concurrency: c },
                    label: format!("{label} x{c}"),
                    ..base.clone()
                };
                let (stats, n) = run::run(target, &workload, &config, next).await;
                next = n;
                let tput = stats.throughput;
                steps.push((c, tput));
                if !load.quiet {
                    eprintln!(
                        "{label}: {c} outstanding: {} {}/s",
                        report::thousands(tput),
                        stats.primary
                    );
                }
                // Every step runs: on a noisy machine one flat step says little.
                if best.as_ref().is_none_or(|(_, b)| tput > b.throughput) {
                    best = Some((c, stats));
                }
            }
            let (concurrency, stats) = best.ok_or("no step ran")?;
            Ok(Outcome::Max {
                steps,
                concurrency,
                stats,
            })
        }
    }
}

fn describe_outcome(target: &str, kind: Kind, o: &Outcome) -> String {
    match o {
        Outcome::Load { mode, stats } => {
            report::render_run(&format!("{target} {} ({mode})", kind.as_str()), stats)
        }
        Outcome::Max {
            steps,
            concurrency,
            stats,
        } => {
            let ladder: Vec<String> = steps
                .iter()
                .map(|(c, t)| format!("{c}: {}", report::thousands(*t)))
                .collect();
            format!(
                "{}  search (outstanding: per second): {}\n",
                report::render_run(
                    &format!(
                        "{target} {} (maximum: closed loop, best at {concurrency} outstanding)",
                        kind.as_str()
                    ),
                    stats
                )
                .trim_end(),
                ladder.join(", ")
            )
        }
        Outcome::Flash(f) => format!(
            "{}  flash sale: {} contenders for {} units: granted {}  answers {:?}  after: reserved {} on_hand {} available {}  exact: {}\n",
            report::render_run(&format!("{target} flash-sale"), &f.stats).trim_end(),
            f.contenders,
            f.units,
            f.granted,
            f.outcomes,
            f.reserved_after,
            f.on_hand_after,
            f.available_after,
            if f.exact { "yes" } else { "NO" }
        ),
    }
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "os": std::env::consts::OS,
    })
}

/// Starts (or connects to) the cluster when stockd is among the targets, runs `f`, and stops
/// a local cluster afterwards.
fn with_cluster(
    load: &LoadArgs,
    targets: &[TargetKind],
    f: impl FnOnce(Option<&Cluster>) -> ExitCode,
) -> ExitCode {
    if !targets.contains(&TargetKind::Stockd) {
        return f(None);
    }
    let cluster = match open_cluster(&load.cluster, !load.quiet) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stockd-load: cluster: {e}");
            return ExitCode::from(2);
        }
    };
    let code = f(Some(&cluster));
    if let Some(local) = cluster.local {
        local.stop();
    }
    code
}

fn write_outputs(
    dir: &Path,
    summary: &str,
    record: &serde_json::Value,
    runs: &[(String, &RunStats)],
) {
    report::write_file(dir, "summary.txt", summary);
    match serde_json::to_string_pretty(record) {
        Ok(text) => {
            report::write_file(dir, "record.json", &text);
        }
        Err(e) => eprintln!("stockd-load: json: {e}"),
    }
    for (name, stats) in runs {
        for (op, h) in &stats.histograms {
            report::write_file(dir, &format!("{name}-{op}.hgrm"), &crate::stats::hgrm(h));
        }
    }
}

fn charts(dir: &Path, name: &str, title: &str, runs: &[(String, &RunStats)]) {
    let series: Vec<Series<'_>> = runs
        .iter()
        .filter_map(|(label, s)| {
            s.op(&s.primary).map(|op| Series {
                label: label.clone(),
                curve: &op.curve,
                timeline: &s.timeline,
                bucket_ms: s.timeline_bucket_ms,
            })
        })
        .collect();
    if series.is_empty() {
        return;
    }
    report::write_file(
        dir,
        &format!("{name}-latency.svg"),
        &report::latency_svg(&format!("{title}: latency by percentile"), &series),
    );
    report::write_file(
        dir,
        &format!("{name}-throughput.svg"),
        &report::throughput_svg(&format!("{title}: throughput"), &series),
    );
}

async fn run_command(args: &RunArgs, cluster: Option<&Cluster>) -> ExitCode {
    let load = &args.load;
    let target = match connect_target(args.target, load, cluster).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("stockd-load: {e}");
            return ExitCode::from(2);
        }
    };
    let drive = match args.mode {
        ModeArg::Open => Drive::Open(args.rate),
        ModeArg::Closed => Drive::Closed(args.concurrency.max(1)),
        ModeArg::Max => Drive::Max,
    };
    let name = format!("{}-{}", args.target.as_str(), args.scenario.as_str());
    let outcome = match scenario_on(&target, args.scenario, load, drive, &name).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("stockd-load: {e}");
            return ExitCode::from(2);
        }
    };
    let batching = batch_stats(&target).await;
    let mut summary = describe_outcome(args.target.as_str(), args.scenario, &outcome);
    if let Some(b) = &batching {
        summary.push_str(&format!("  {b}\n"));
    }
    print!("{summary}");
    let dir = out_dir(load, &name);
    let record = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": machine(),
        "scenario": args.scenario,
        "target": args.target,
        "mode": args.mode,
        "result": outcome,
        "batching": batching,
    });
    let runs = [(name.clone(), outcome.stats())];
    write_outputs(&dir, &summary, &record, &runs);
    charts(&dir, &name, &name, &runs);
    eprintln!("reports in {}", dir.display());
    if let Outcome::Flash(f) = &outcome {
        if !f.exact {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The leader's batching counters (Raft entries, writes, most writes per entry), for stockd.
async fn batch_stats(target: &AnyTarget) -> Option<String> {
    let AnyTarget::Stockd(t) = target else {
        return None;
    };
    let reports = t.client().status().await;
    let leader = reports.iter().find_map(|r| {
        r.status
            .as_ref()
            .ok()
            .filter(|s| s.role == protocol::Role::Leader)
    })?;
    let b = &leader.batches;
    Some(format!(
        "leader batching since start: {} writes in {} Raft entries ({:.1} per entry, at most {}), {} shed as busy, {} deadline ticks",
        b.writes,
        b.entries,
        b.writes as f64 / (b.entries.max(1)) as f64,
        b.writes_max,
        b.shed,
        b.ticks
    ))
}

/// Per scenario, per target: the outcome.
type Results = Vec<(Kind, &'static str, Vec<(TargetKind, Outcome)>)>;

async fn compare_command(args: &CompareArgs, cluster: Option<&Cluster>) -> ExitCode {
    let load = &args.load;
    let mut targets = Vec::new();
    for &kind in &args.targets {
        match connect_target(kind, load, cluster).await {
            Ok(t) => targets.push((kind, t)),
            Err(e) => eprintln!("stockd-load: skipping {}: {e}", kind.as_str()),
        }
    }
    if targets.is_empty() {
        eprintln!("stockd-load: no target to compare");
        return ExitCode::from(2);
    }
    let names: Vec<String> = targets.iter().map(|(k, _)| k.as_str().to_owned()).collect();
    let mut results: Results = Vec::new();
    let mut failed = false;
    let mut half_rate = args.rate;
    for &scenario in &args.scenarios {
        let phases: Vec<(&'static str, Option<Drive>)> = match scenario {
            Kind::Checkout => vec![("max", Some(Drive::Max)), ("rate", None)],
            Kind::FlashSale => vec![("burst", Some(Drive::Max))],
            Kind::StoreReads => vec![("max", Some(Drive::Max))],
        };
        for (phase, drive) in phases {
            let mut row = Vec::new();
            for (kind, target) in &targets {
                let drive = match drive {
                    Some(d) => d,
                    None => match half_rate {
                        Some(r) => Drive::Open(r),
                        None => continue,
                    },
                };
                let label = format!("{}-{}-{phase}", kind.as_str(), scenario.as_str());
                match scenario_on(target, scenario, load, drive, &label).await {
                    Ok(o) => {
                        print!("{}", describe_outcome(kind.as_str(), scenario, &o));
                        if let Outcome::Flash(f) = &o {
                            failed |= !f.exact;
                        }
                        row.push((*kind, o));
                    }
                    Err(e) => {
                        eprintln!("stockd-load: {label}: {e}");
                        failed = true;
                    }
                }
            }
            // The fixed rate: half of the first target's (stockd's) maximum.
            if scenario == Kind::Checkout && phase == "max" && half_rate.is_none() {
                half_rate = row
                    .first()
                    .map(|(_, o)| o.stats().throughput / 2.0 / load.frame.max(1) as f64);
            }
            results.push((scenario, phase, row));
        }
    }
    let table = compare_table(&names, &results, load.frame.max(1));
    let mut summary = String::new();
    for (scenario, phase, row) in &results {
        for (kind, o) in row {
            summary.push_str(&describe_outcome(
                &format!("{} [{phase}]", kind.as_str()),
                *scenario,
                o,
            ));
        }
    }
    for (kind, target) in &targets {
        if let Some(b) = batch_stats(target).await {
            summary.push_str(&format!("{}: {b}\n", kind.as_str()));
        }
    }
    summary.push('\n');
    summary.push_str(&table.render());
    println!();
    print!("{}", table.render());
    let dir = out_dir(load, "compare");
    let record = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": machine(),
        "targets": names,
        "results": results.iter().map(|(s, p, row)| json!({
            "scenario": s, "phase": p,
            "runs": row.iter().map(|(k, o)| json!({"target": k, "result": o})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "table": table,
    });
    let mut runs: Vec<(String, &RunStats)> = Vec::new();
    for (scenario, phase, row) in &results {
        let group: Vec<(String, &RunStats)> = row
            .iter()
            .map(|(k, o)| (k.as_str().to_owned(), o.stats()))
            .collect();
        let name = format!("{}-{phase}", scenario.as_str());
        let title = match (*scenario, *phase) {
            (Kind::Checkout, "max") => "checkout at maximum throughput".to_owned(),
            (Kind::Checkout, _) => format!(
                "checkout at {} reservations/s",
                report::thousands(half_rate.unwrap_or(0.0) * load.frame.max(1) as f64)
            ),
            (Kind::FlashSale, _) => "flash sale".to_owned(),
            (Kind::StoreReads, _) => "store reads (50 SKUs each) at maximum throughput".to_owned(),
        };
        charts(&dir, &name, &title, &group);
        runs.extend(group.into_iter().map(|(k, s)| (format!("{name}-{k}"), s)));
    }
    write_outputs(&dir, &summary, &record, &runs);
    eprintln!("reports in {}", dir.display());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn compare_table(names: &[String], results: &Results, frame: usize) -> Table {
    let mut t = Table::new(names.to_vec());
    let col = |row: &Vec<(TargetKind, Outcome)>,
               f: &dyn Fn(&Outcome) -> Option<f64>|
     -> Vec<Option<f64>> {
        names
            .iter()
            .map(|n| {
                row.iter()
                    .find(|(k, _)| k.as_str() == n)
                    .and_then(|(_, o)| f(o))
            })
            .collect()
    };
    let p = |o: &Outcome, q: fn(&crate::stats::LatencySummary) -> f64| {
        let s = o.stats();
        s.op(&s.primary).map(|op| q(&op.latency) / 1_000.0)
    };
    for (scenario, phase, row) in results {
        let name = match (*scenario, *phase) {
            (Kind::Checkout, "max") if frame > 1 => format!("checkout max, {frame}/frame"),
            (Kind::Checkout, "max") => "checkout max".to_owned(),
            (Kind::Checkout, _) => "checkout fixed rate".to_owned(),
            (Kind::FlashSale, _) => "flash-sale".to_owned(),
            (Kind::StoreReads, _) => "store-reads max".to_owned(),
        };
        let unit = if *scenario == Kind::StoreReads {
            "reads/s"
        } else {
            "reservations/s"
        };
        t.row(&name, unit, true, col(row, &|o| Some(o.stats().throughput)));
        t.row(
            &format!("{name} p50"),
            "ms",
            false,
            col(row, &|o| p(o, |l| l.p50_us)),
        );
        t.row(
            &format!("{name} p99"),
            "ms",
            false,
            col(row, &|o| p(o, |l| l.p99_us)),
        );
        t.row(
            &format!("{name} p99.9"),
            "ms",
            false,
            col(row, &|o| p(o, |l| l.p999_us)),
        );
        if *scenario == Kind::FlashSale {
            t.row(
                &format!("{name} granted"),
                "holds",
                true,
                col(row, &|o| match o {
                    Outcome::Flash(f) => Some(f.granted as f64),
                    _ => None,
                }),
            );
        }
    }
    t
}

async fn streams_command(args: &StreamsArgs, cluster: Option<&Cluster>) -> ExitCode {
    let load = &args.load;
    let Some(cluster) = cluster else {
        return ExitCode::from(2);
    };
    let prepared = async {
        let target = match connect_target(TargetKind::Stockd, load, Some(cluster)).await? {
            AnyTarget::Stockd(t) => t,
            _ => return Err("not stockd".to_owned()),
        };
        let tag = run_tag(Kind::Checkout);
        let sku = format!("{tag}hot");
        target
            .load_stock(vec![(
                sku.clone(),
                "dc-1".to_owned(),
                engine::limits::QTY_MAX,
            )])
            .await
            .map_err(|e| e.to_string())?;
        let leader = target
            .client()
            .status()
            .await
            .into_iter()
            .find_map(|r| r.status.ok().filter(|s| s.role == protocol::Role::Leader))
            .ok_or("no leader")?;
        let leader: std::net::SocketAddr = leader
            .node
            .addr
            .parse()
            .map_err(|e| format!("leader address {}: {e}", leader.node.addr))?;
        Ok::<_, String>(crate::streams::StreamBench {
            leader,
            trust: cluster.config.trust.clone(),
            concurrency: args.concurrency.max(1),
            duration: secs(load.duration),
            sku,
            location: "dc-1".to_owned(),
            tag,
        })
    };
    let bench = match prepared.await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("stockd-load: {e}");
            return ExitCode::from(2);
        }
    };
    let mut summary = String::new();
    let modes = [
        crate::streams::StreamMode::LongLived,
        crate::streams::StreamMode::PerRequest,
        crate::streams::StreamMode::LongLived,
    ];
    for (k, mode) in modes.into_iter().enumerate() {
        let mut b = bench.clone();
        b.tag = format!("{}{k}-", bench.tag);
        match crate::streams::run(&b, mode).await {
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
    report::write_file(&out_dir(load, "streams"), "summary.txt", &summary);
    ExitCode::SUCCESS
}
