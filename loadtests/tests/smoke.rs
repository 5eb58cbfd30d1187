//! Smoke runs of every scenario against a local 3-node cluster (in process, on loopback), a
//! second or so each, through the client library (QUIC) and over HTTP/JSON, and of the replay of real orders (the first days of the data) through
//! the cluster, checked against the engine. Kept short for CI's two cores.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use loadtests::cluster_replay::{self, ReplayOptions};
use loadtests::mix::CheckoutMix;
use loadtests::run::{self, Mode, RunConfig};
use loadtests::scenario::{self, Kind, ScenarioConfig, Workload};
use loadtests::stockd::{ClusterOptions, LocalCluster, StockdOptions, StockdTarget};
use loadtests::stockd_http::{HttpCluster, HttpOptions, StockdHttpTarget};
use loadtests::target::Target;

#[cfg(feature = "baselines")]
/// A baseline server's URL from the environment, or `None` (the test is skipped) unless
/// `STOCKD_REQUIRE_BASELINES=1` (CI starts the servers: `.ci/run`).
fn baseline_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            let required = std::env::var("STOCKD_REQUIRE_BASELINES").is_ok_and(|v| v == "1");
            assert!(!required, "{var} is unset but STOCKD_REQUIRE_BASELINES=1");
            eprintln!("skipped: {var} unset (scripts/baselines.sh start)");
            None
        }
    }
}

#[cfg(feature = "baselines")]
/// The same checkout and flash sale through the generator against a baseline.
async fn baseline_smoke<T: Target>(target: T) {
    target.reset().await.expect("reset");
    let w = Arc::new(Workload::new(Kind::Checkout, small("bc:")));
    target.load_stock(w.stock()).await.expect("stock loads");
    let (stats, _) = run::run(&target, &w, &short(Mode::Closed { concurrency: 8 }), 0).await;
    let reserve = stats.op("reserve").expect("reservations");
    assert!(reserve.latency.count > 0);
    assert!(
        reserve.outcomes.keys().all(|c| c == "ok"),
        "{:?}",
        reserve.outcomes
    );
    target.reset().await.expect("reset");
    let w = Arc::new(Workload::new(Kind::FlashSale, small("bf:")));
    target.load_stock(w.stock()).await.expect("stock loads");
    let report = scenario::flash_sale(&target, &w).await;
    assert!(report.exact, "{report:?}");
    assert_eq!(report.granted, 40);
}

#[cfg(feature = "baselines")]
#[test]
fn the_generator_drives_the_baselines_too() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if let Some(url) = baseline_url("STOCKD_REDIS_URL") {
            let t = loadtests::baseline_targets::RedisTarget::connect(&url, 4)
                .await
                .expect("redis");
            baseline_smoke(t).await;
        }
        if let Some(url) = baseline_url("STOCKD_PG_URL") {
            let t = loadtests::baseline_targets::PostgresTarget::connect(&url, 4)
                .await
                .expect("postgres");
            baseline_smoke(t).await;
        }
    });
}

const DATA: &str = "../../shared/data/online-retail/online_retail_II_2009-12_2010-11.csv.gz";

fn small(tag: &str) -> ScenarioConfig {
    ScenarioConfig {
        tag: tag.to_owned(),
        mix: CheckoutMix {
            skus: 500,
            ..CheckoutMix::default()
        },
        ttl_ms: 2_000,
        flash_units: 40,
        flash_contenders: 300,
        ..ScenarioConfig::default()
    }
}

fn short(mode: Mode) -> RunConfig {
    RunConfig {
        mode,
        duration: Duration::from_millis(1_000),
        warmup: Duration::from_millis(200),
        ..RunConfig::default()
    }
}

/// Every one of the `n` intended reservations of a run was answered `ok`.
fn every_reservation_ok(stats: &loadtests::stats::RunStats, n: u64) {
    let reserve = stats.op("reserve").expect("reservations");
    assert_eq!(reserve.latency.count, n, "{stats:?}");
    assert_eq!(
        reserve.outcomes.get("ok"),
        Some(&n),
        "{:?}",
        reserve.outcomes
    );
}

async fn loaded<T: Target>(target: &T, kind: Kind, config: ScenarioConfig) -> Arc<Workload> {
    let workload = Arc::new(Workload::new(kind, config));
    target
        .load_stock(workload.stock())
        .await
        .expect("stock loads");
    workload
}

#[test]
fn every_scenario_runs_against_a_local_cluster() {
    let cluster = LocalCluster::start(ClusterOptions::default()).expect("cluster starts");
    let config = cluster.client_config().expect("client config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let target = StockdTarget::connect(config, &StockdOptions::default())
            .await
            .expect("connects");

        // checkout, open loop: every intended request is answered, and the generator kept up.
        let w = loaded(&target, Kind::Checkout, small("so:")).await;
        let (stats, next) = run::run(&target, &w, &short(Mode::Open { rate: 100.0 }), 0).await;
        every_reservation_ok(&stats, 100);
        assert_eq!(next, 20 + 100, "warm-up indices come first");
        assert!(stats.lateness.is_some());
        let commits = stats.op("commit").map_or(0, |o| o.latency.count);
        let releases = stats.op("release").map_or(0, |o| o.latency.count);
        assert!(commits > releases && releases > 0, "{commits} {releases}");
        assert!(stats.histograms.contains_key("reserve"));

        // checkout, closed loop, and frames of 20 holds.
        let w = loaded(&target, Kind::Checkout, small("sc:")).await;
        let (stats, _) = run::run(&target, &w, &short(Mode::Closed { concurrency: 8 }), 0).await;
        assert!(stats.throughput > 0.0);
        assert!(stats.rejections().keys().all(|c| c == "insufficient_stock"));
        let framed = ScenarioConfig {
            frame: 20,
            ..small("sf:")
        };
        let w = loaded(&target, Kind::Checkout, framed).await;
        let (stats, _) = run::run(&target, &w, &short(Mode::Closed { concurrency: 2 }), 0).await;
        let reserve = stats.op("reserve").expect("reservations");
        assert_eq!(reserve.latency.count % 20, 0);
        assert!(stats.op("commit").is_none(), "gateway mode only reserves");

        // store-reads.
        let w = loaded(&target, Kind::StoreReads, small("sr:")).await;
        let (stats, _) = run::run(&target, &w, &short(Mode::Closed { concurrency: 4 }), 0).await;
        let reads = stats.op("read").expect("reads");
        assert_eq!(reads.outcomes.keys().collect::<Vec<_>>(), ["ok"]);

        // flash-sale: exactly K of N.
        let w = loaded(&target, Kind::FlashSale, small("fs:")).await;
        let report = scenario::flash_sale(&target, &w).await;
        assert!(report.exact, "{report:?}");
        assert_eq!(report.granted, 40);
        assert_eq!(report.outcomes.get("insufficient_stock"), Some(&260));
        assert_eq!((report.reserved_after, report.on_hand_after), (40, 40));
    });
    cluster.stop();
}

#[test]
fn every_scenario_runs_over_http_against_a_local_cluster() {
    let cluster = LocalCluster::start(ClusterOptions::default()).expect("cluster starts");
    let token_file = cluster
        .ca_path()
        .parent()
        .expect("the CA's directory")
        .join(pki::ADMIN_TOKEN_FILE);
    let http = HttpCluster {
        quic: cluster.client_config().expect("client config"),
        urls: cluster.http_urls().to_vec(),
        token: std::fs::read_to_string(token_file).expect("the admin token"),
    };
    assert_eq!(http.urls.len(), 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let target = StockdHttpTarget::connect(http, &HttpOptions::default())
            .await
            .expect("connects");

        // checkout, open loop: every intended reservation is answered `ok`, and the holds are
        // committed (an order, then its fulfilment) or released.
        let w = loaded(&target, Kind::Checkout, small("ho:")).await;
        let (stats, _) = run::run(&target, &w, &short(Mode::Open { rate: 100.0 }), 0).await;
        every_reservation_ok(&stats, 100);
        let commits = stats.op("commit").expect("commits");
        let releases = stats.op("release").expect("releases");
        assert!(commits.latency.count > releases.latency.count);
        assert_eq!(commits.outcomes.keys().collect::<Vec<_>>(), ["ok"]);
        assert_eq!(releases.outcomes.keys().collect::<Vec<_>>(), ["ok"]);

        // A gateway's frames of 20 holds, each frame one `POST /v1/batch`.
        let framed = ScenarioConfig {
            frame: 20,
            ..small("hf:")
        };
        let w = loaded(&target, Kind::Checkout, framed).await;
        let (stats, _) = run::run(&target, &w, &short(Mode::Closed { concurrency: 2 }), 0).await;
        let reserve = stats.op("reserve").expect("reservations");
        assert!(reserve.latency.count > 0);
        assert_eq!(reserve.latency.count % 20, 0);
        assert!(stats.rejections().keys().all(|c| c == "insufficient_stock"));

        // store-reads: 50-SKU pages from every node.
        let w = loaded(&target, Kind::StoreReads, small("hr:")).await;
        let (stats, _) = run::run(&target, &w, &short(Mode::Closed { concurrency: 4 }), 0).await;
        let reads = stats.op("read").expect("reads");
        assert!(reads.latency.count > 0);
        assert_eq!(reads.outcomes.keys().collect::<Vec<_>>(), ["ok"]);

        // flash-sale: exactly K of N, the others refused `insufficient_stock` (a 409 problem).
        let w = loaded(&target, Kind::FlashSale, small("hs:")).await;
        let report = scenario::flash_sale(&target, &w).await;
        assert!(report.exact, "{report:?}");
        assert_eq!(report.granted, 40);
        assert_eq!(report.outcomes.get("insufficient_stock"), Some(&260));
        assert_eq!((report.reserved_after, report.on_hand_after), (40, 40));
    });
    cluster.stop();
}

#[test]
fn the_first_days_of_real_orders_replay_identically_through_a_cluster() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DATA);
    let lines = retail::input::open(&path)
        .and_then(retail::read_lines)
        .expect("the Online Retail II data (../shared/data) is readable");
    // The first ~3 days (lines are in time order).
    let lines: Vec<_> = lines.into_iter().take(6_000).collect();
    let dataset = retail::build(lines);
    let cluster = LocalCluster::start(ClusterOptions::default()).expect("cluster starts");
    let config = cluster.client_config().expect("client config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let client = client::Client::connect(config).await.expect("connects");
        cluster_replay::replay(
            &client,
            "first 6,000 lines",
            dataset,
            retail::PlanConfig::default(),
            &ReplayOptions::default(),
        )
        .await
        .expect("replays")
    });
    cluster.stop();
    assert!(report.plan.orders_placed > 100, "{:?}", report.plan);
    assert!(report.cluster_stock.balances > 1_000);
    assert_eq!(
        report.stock_mismatches, 0,
        "{:?}",
        report.stock_mismatch_samples
    );
    assert!(report.same_outcomes);
    assert!(report.replicas_equal, "{:?}", report.replicas);
    assert_eq!(report.replicas.len(), 3);
    assert!(report.is_consistent());
    let text = cluster_replay::render(&report);
    assert!(text.contains("result       CONSISTENT"), "{text}");
}
