//! The Redis and PostgreSQL baselines against real servers: the same exact-value checks for
//! both backends.
//!
//! The servers come from `scripts/baselines.sh start`; the tests find them through
//! `STOCKD_REDIS_URL` and `STOCKD_PG_URL` (`eval "$(scripts/baselines.sh env)"`). When a
//! variable is unset its tests print a `skipped:` line and pass, unless
//! `STOCKD_REQUIRE_BASELINES=1`, when they fail. Each backend's tests take a lock, since they
//! share (and reset) one database.
//!
//! `quick_throughput` (ignored) prints a rough reservations-per-second figure:
//! `cargo test -p loadtests --test baselines -- --ignored --nocapture quick_throughput`.
//!
//! The baselines exist only with the `baselines` feature (on by default).
#![cfg(feature = "baselines")]

use std::io::Write;
use std::time::{Duration, Instant};

use engine::ids::{LocationId, SkuId};
use loadtests::baselines::{BaselineError, Line, PostgresBaseline, RedisBaseline, ReserveOutcome};
use loadtests::target::Key;

/// The server URL in `var`, or `None` (after saying so) when the tests should be skipped.
fn url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            let required = std::env::var("STOCKD_REQUIRE_BASELINES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{var} is unset but STOCKD_REQUIRE_BASELINES=1: run scripts/baselines.sh start \
                 and eval \"$(scripts/baselines.sh env)\""
            );
            // Straight to stderr: libtest would swallow a println! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {var} unset; run scripts/baselines.sh start && \
                 eval \"$(scripts/baselines.sh env)\""
            );
            None
        }
    }
}

fn stock(rows: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    rows.iter()
        .map(|(s, l, q)| (s.to_string(), l.to_string(), *q))
        .collect()
}

fn keys(k: &[(&str, &str)]) -> Vec<Key> {
    k.iter()
        .map(|&(s, l)| (SkuId::from(s), LocationId::from(l)))
        .collect()
}

fn short(sku: &str, location: &str, available: i64) -> ReserveOutcome {
    ReserveOutcome::Insufficient {
        sku: sku.into(),
        location: location.into(),
        available,
    }
}

const TTL: u64 = 60_000;

macro_rules! backend_tests {
    ($module:ident, $backend:ty, $var:literal, $connections:expr) => {
        mod $module {
            use super::*;

            /// One test at a time per backend: they share and reset one database.
            static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

            async fn setup() -> Option<(tokio::sync::MutexGuard<'static, ()>, $backend)> {
                let url = url($var)?;
                let guard = LOCK.lock().await;
                let b = <$backend>::connect(&url, $connections)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {}: {e}", $var));
                b.reset().await.expect("reset");
                Some((guard, b))
            }

            async fn ats(b: &$backend, k: &[(&str, &str)]) -> Vec<i64> {
                b.available(&keys(k)).await.expect("available")
            }

            async fn reserve(
                b: &$backend,
                id: &str,
                lines: &[(&str, &str, i64)],
            ) -> ReserveOutcome {
                reserve_ttl(b, id, lines, TTL).await
            }

            async fn reserve_ttl(
                b: &$backend,
                id: &str,
                lines: &[(&str, &str, i64)],
                ttl: u64,
            ) -> ReserveOutcome {
                let lines: Vec<Line> = lines
                    .iter()
                    .map(|(s, l, q)| Line::new(*s, *l, *q))
                    .collect();
                b.reserve(id, &lines, ttl).await.expect("reserve")
            }

            #[tokio::test]
            async fn all_or_nothing_over_several_lines() {
                let Some((_g, b)) = setup().await else { return };
                b.load_stock(&stock(&[("A", "w1", 10), ("B", "w1", 5), ("C", "w2", 3)]))
                    .await
                    .expect("load");
                let abc = [("A", "w1"), ("B", "w1"), ("C", "w2")];
                assert_eq!(ats(&b, &abc).await, vec![10, 5, 3]);
                assert_eq!(b.totals().await.expect("totals"), (18, 0));

                // B is short: nothing is held, not even A.
                assert_eq!(
                    reserve(&b, "r1", &[("A", "w1", 4), ("B", "w1", 6)]).await,
                    short("B", "w1", 5)
                );
                assert_eq!(ats(&b, &abc).await, vec![10, 5, 3]);
                assert_eq!(b.totals().await.expect("totals"), (18, 0));

                assert_eq!(
                    reserve(&b, "r2", &[("A", "w1", 4), ("B", "w1", 5), ("C", "w2", 3)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(ats(&b, &abc).await, vec![6, 0, 0]);
                assert_eq!(b.totals().await.expect("totals"), (18, 12));

                // A balance never loaded has ATS 0.
                assert_eq!(
                    reserve(&b, "r3", &[("A", "w1", 1), ("D", "w1", 1)]).await,
                    short("D", "w1", 0)
                );
                assert_eq!(ats(&b, &[("A", "w1"), ("D", "w1")]).await, vec![6, 0]);

                // A rejected reserve leaves no hold: its id is free.
                assert_eq!(
                    reserve(&b, "r1", &[("A", "w1", 6)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(ats(&b, &abc).await, vec![0, 0, 0]);
                assert_eq!(b.totals().await.expect("totals"), (18, 18));
            }

            #[tokio::test]
            async fn demand_for_one_balance_is_summed() {
                let Some((_g, b)) = setup().await else { return };
                b.load_stock(&stock(&[("A", "w1", 5), ("B", "w1", 6), ("C", "w1", 5)]))
                    .await
                    .expect("load");
                // 3 + 3 > 5 although each line fits.
                assert_eq!(
                    reserve(&b, "s1", &[("A", "w1", 3), ("A", "w1", 3)]).await,
                    short("A", "w1", 5)
                );
                assert_eq!(
                    reserve(&b, "s2", &[("A", "w1", 2), ("A", "w1", 3)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(ats(&b, &[("A", "w1")]).await, vec![0]);
                assert_eq!(b.totals().await.expect("totals"), (16, 5));
                // The line named is the engine's: the first whose running demand is short.
                assert_eq!(
                    reserve(&b, "s3", &[("B", "w1", 3), ("C", "w1", 10), ("B", "w1", 5)]).await,
                    short("C", "w1", 5)
                );
                assert_eq!(
                    reserve(&b, "s4", &[("B", "w1", 3), ("C", "w1", 1), ("B", "w1", 4)]).await,
                    short("B", "w1", 6)
                );
                assert_eq!(b.totals().await.expect("totals"), (16, 5));
                // A later load_stock row for the same balance wins; reserved is kept.
                b.load_stock(&stock(&[("A", "w1", 1), ("A", "w1", 9)]))
                    .await
                    .expect("load");
                assert_eq!(ats(&b, &[("A", "w1")]).await, vec![4]);
                assert_eq!(b.totals().await.expect("totals"), (20, 5));
            }

            #[tokio::test]
            async fn hold_ids_are_unique() {
                let Some((_g, b)) = setup().await else { return };
                b.load_stock(&stock(&[("A", "w1", 10)]))
                    .await
                    .expect("load");
                assert_eq!(
                    reserve(&b, "x1", &[("A", "w1", 2)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(
                    reserve(&b, "x1", &[("A", "w1", 1)]).await,
                    ReserveOutcome::AlreadyExists
                );
                assert_eq!(b.totals().await.expect("totals"), (10, 2));
                // Even once the hold is finished.
                assert!(b.release("x1").await.expect("release"));
                assert_eq!(
                    reserve(&b, "x1", &[("A", "w1", 1)]).await,
                    ReserveOutcome::AlreadyExists
                );
                assert_eq!(
                    reserve(&b, "x2", &[("A", "w1", 1)]).await,
                    ReserveOutcome::Granted
                );
                assert!(b.commit("x2").await.expect("commit"));
                assert_eq!(
                    reserve(&b, "x2", &[("A", "w1", 1)]).await,
                    ReserveOutcome::AlreadyExists
                );
                // AlreadyExists wins over Insufficient, as in the engine.
                assert_eq!(
                    reserve(&b, "x2", &[("A", "w1", 1000)]).await,
                    ReserveOutcome::AlreadyExists
                );
                assert_eq!(b.totals().await.expect("totals"), (9, 0));
            }

            #[tokio::test]
            async fn release_and_commit_move_the_totals() {
                let Some((_g, b)) = setup().await else { return };
                b.load_stock(&stock(&[("A", "w1", 10), ("B", "w2", 4)]))
                    .await
                    .expect("load");
                let ab = [("A", "w1"), ("B", "w2")];
                assert_eq!(
                    reserve(&b, "h1", &[("A", "w1", 3), ("B", "w2", 1)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(
                    reserve(&b, "h2", &[("A", "w1", 2)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(b.totals().await.expect("totals"), (14, 6));
                assert_eq!(ats(&b, &ab).await, vec![5, 3]);

                assert!(b.release("h1").await.expect("release"));
                assert_eq!(b.totals().await.expect("totals"), (14, 2));
                assert_eq!(ats(&b, &ab).await, vec![8, 4]);
                assert!(!b.release("h1").await.expect("release twice"));
                assert!(!b.commit("h1").await.expect("commit a released hold"));
                assert_eq!(b.totals().await.expect("totals"), (14, 2));

                // Commit: the units leave reserved AND on_hand; ATS stays.
                assert!(b.commit("h2").await.expect("commit"));
                assert_eq!(b.totals().await.expect("totals"), (12, 0));
                assert_eq!(ats(&b, &ab).await, vec![8, 4]);
                assert!(!b.commit("h2").await.expect("commit twice"));
                assert!(!b.release("h2").await.expect("release a committed hold"));
                assert!(!b.release("nope").await.expect("release unknown"));
                assert!(!b.commit("nope").await.expect("commit unknown"));
                assert_eq!(b.totals().await.expect("totals"), (12, 0));

                // Bad input is an error, not an outcome, and changes nothing.
                let bad: Result<ReserveOutcome, BaselineError> =
                    b.reserve("h3", &[Line::new("A", "w1", 0)], TTL).await;
                assert!(bad.is_err());
                assert!(b.reserve("h3", &[], TTL).await.is_err());
                assert!(b
                    .reserve("h 3", &[Line::new("A", "w1", 1)], TTL)
                    .await
                    .is_err());
                assert!(b
                    .reserve("h3", &[Line::new("A", "w1", 1)], 0)
                    .await
                    .is_err());
                assert_eq!(b.totals().await.expect("totals"), (12, 0));
            }

            #[tokio::test]
            async fn expired_holds_count_nowhere() {
                let Some((_g, b)) = setup().await else { return };
                b.load_stock(&stock(&[("A", "w1", 5), ("B", "w1", 2)]))
                    .await
                    .expect("load");
                let a = [("A", "w1")];
                assert_eq!(
                    reserve_ttl(&b, "e1", &[("A", "w1", 3), ("B", "w1", 2)], 1_000).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(
                    reserve(&b, "e2", &[("A", "w1", 2)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(ats(&b, &a).await, vec![0]);
                assert_eq!(b.totals().await.expect("totals"), (7, 7));
                assert_eq!(
                    reserve(&b, "e3", &[("A", "w1", 1)]).await,
                    short("A", "w1", 0)
                );

                tokio::time::sleep(Duration::from_millis(1_300)).await;
                // Reads first (in PostgreSQL, before any reserve swept the expired lines).
                assert_eq!(ats(&b, &[("A", "w1"), ("B", "w1")]).await, vec![3, 2]);
                assert_eq!(b.totals().await.expect("totals"), (7, 2));
                assert!(!b.release("e1").await.expect("release expired"));
                assert!(!b.commit("e1").await.expect("commit expired"));
                assert_eq!(
                    reserve(&b, "e1", &[("A", "w1", 1)]).await,
                    ReserveOutcome::AlreadyExists
                );
                assert_eq!(
                    reserve(&b, "e4", &[("A", "w1", 3)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(ats(&b, &[("A", "w1"), ("B", "w1")]).await, vec![0, 2]);
                assert_eq!(b.totals().await.expect("totals"), (7, 5));
                assert!(b.commit("e2").await.expect("commit live"));
                assert_eq!(b.totals().await.expect("totals"), (5, 3));
                // B's expired line was never swept by a reserve on B, and still counts nowhere.
                assert_eq!(
                    reserve(&b, "e5", &[("B", "w1", 2)]).await,
                    ReserveOutcome::Granted
                );
                assert_eq!(b.totals().await.expect("totals"), (5, 5));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_single_units_grant_exactly_the_stock() {
                let Some((_g, b)) = setup().await else { return };
                b.load_stock(&stock(&[("HOT", "w1", 50)]))
                    .await
                    .expect("load");
                let mut tasks = Vec::new();
                for i in 0..200 {
                    let b = b.clone();
                    tasks.push(tokio::spawn(async move {
                        b.reserve(&format!("c{i}"), &[Line::new("HOT", "w1", 1)], TTL)
                            .await
                    }));
                }
                let (mut granted, mut refused) = (0, 0);
                for t in tasks {
                    match t.await.expect("join").expect("reserve") {
                        ReserveOutcome::Granted => granted += 1,
                        outcome => {
                            assert_eq!(outcome, short("HOT", "w1", 0));
                            refused += 1;
                        }
                    }
                }
                assert_eq!((granted, refused), (50, 150));
                assert_eq!(b.totals().await.expect("totals"), (50, 50));
                assert_eq!(ats(&b, &[("HOT", "w1")]).await, vec![0]);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_multi_line_in_both_orders() {
                let Some((_g, b)) = setup().await else { return };
                b.load_stock(&stock(&[("A", "w1", 60), ("B", "w1", 60)]))
                    .await
                    .expect("load");
                let mut tasks = Vec::new();
                for i in 0..200 {
                    let b = b.clone();
                    // Half ask A then B, half B then A: a lock-order trap for a naive database
                    // baseline.
                    let lines = if i % 2 == 0 {
                        vec![Line::new("A", "w1", 1), Line::new("B", "w1", 1)]
                    } else {
                        vec![Line::new("B", "w1", 1), Line::new("A", "w1", 1)]
                    };
                    tasks.push(tokio::spawn(async move {
                        let id = format!("m{i}");
                        let outcome = b.reserve(&id, &lines, TTL).await;
                        (id, outcome)
                    }));
                }
                let mut granted = Vec::new();
                for t in tasks {
                    let (id, outcome) = t.await.expect("join");
                    if outcome.expect("reserve") == ReserveOutcome::Granted {
                        granted.push(id);
                    }
                }
                assert_eq!(granted.len(), 60);
                assert_eq!(b.totals().await.expect("totals"), (120, 120));
                // Release them all, concurrently.
                let mut tasks = Vec::new();
                for id in granted {
                    let b = b.clone();
                    tasks.push(tokio::spawn(async move { b.release(&id).await }));
                }
                for t in tasks {
                    assert!(t.await.expect("join").expect("release"));
                }
                assert_eq!(b.totals().await.expect("totals"), (120, 0));
                assert_eq!(ats(&b, &[("A", "w1"), ("B", "w1")]).await, vec![60, 60]);
            }

            /// Not a check: prints a rough throughput of single-line reserves (run with
            /// `--ignored --nocapture`). Closed loop, `STOCKD_BASELINE_CONCURRENCY` (64) in
            /// flight, `STOCKD_BASELINE_SECONDS` (3) long, 1000 SKUs x 1 location, each
            /// reserve followed by nothing (the holds pile up; stock is ample).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "timing, not a test: run with --ignored --nocapture"]
            async fn quick_throughput() {
                let Some((_g, b)) = setup().await else { return };
                let env = |k: &str, d: u64| {
                    std::env::var(k)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(d)
                };
                let concurrency = env("STOCKD_BASELINE_CONCURRENCY", 64);
                let seconds = env("STOCKD_BASELINE_SECONDS", 3);
                let rows: Vec<(String, String, i64)> = (0..1000)
                    .map(|i| (format!("sku-{i}"), "w1".to_string(), 1_000_000_000))
                    .collect();
                b.load_stock(&rows).await.expect("load");
                let start = Instant::now();
                let deadline = start + Duration::from_secs(seconds);
                let mut tasks = Vec::new();
                for w in 0..concurrency {
                    let b = b.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut n = 0u64;
                        let mut lat = Vec::new();
                        while Instant::now() < deadline {
                            let sku = format!("sku-{}", (w * 7919 + n * 31) % 1000);
                            let line = Line::new(sku, "w1", 1);
                            let t = Instant::now();
                            let o = b.reserve(&format!("t{w}-{n}"), &[line], 600_000).await;
                            lat.push(t.elapsed());
                            assert_eq!(o.expect("reserve"), ReserveOutcome::Granted);
                            n += 1;
                        }
                        lat
                    }));
                }
                let mut lat = Vec::new();
                for t in tasks {
                    lat.extend(t.await.expect("join"));
                }
                let elapsed = start.elapsed().as_secs_f64();
                lat.sort();
                let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
                println!(
                    "{}: {} reserves in {:.2} s = {:.0}/s with {} in flight; \
                     latency p50 {:?} p99 {:?}",
                    stringify!($module),
                    lat.len(),
                    elapsed,
                    lat.len() as f64 / elapsed,
                    concurrency,
                    pct(0.50),
                    pct(0.99),
                );
            }
        }
    };
}

backend_tests!(redis, RedisBaseline, "STOCKD_REDIS_URL", 4);
backend_tests!(postgres, PostgresBaseline, "STOCKD_PG_URL", 16);
