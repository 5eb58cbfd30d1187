//! The registry renders what was recorded, in a text a Prometheus parser reads back.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use super::*;

fn scrape(metrics: &Metrics) -> Scrape {
    let text = metrics.render();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the text parses")
}

/// The value of the series `name` whose labels include `labels`; a histogram's count.
#[track_caller]
fn check(scrape: &Scrape, name: &str, labels: &[(&str, &str)], expected: f64) {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    let value = match found.map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(Value::Histogram(buckets)) => buckets.last().map_or(0.0, |b| b.count),
        Some(other) => panic!("{name}: {other:?}"),
        None => panic!("no {name} {labels:?} in {:#?}", scrape.samples),
    };
    assert_eq!(value, expected, "{name} {labels:?}");
}

fn reserve(outcome: Outcome) -> RequestKey {
    RequestKey {
        transport: Transport::Quic,
        operation: Operation::Reserve,
        outcome,
    }
}

#[test]
fn recorded_series_render_with_their_labels_and_units() {
    let metrics = Metrics::new();
    let answered = [
        (Operation::Reserve, Outcome::OK),
        (Operation::Reserve, Outcome::OK),
        (
            Operation::Reserve,
            Outcome::Ledger(engine::Code::InsufficientStock),
        ),
        (Operation::Reserve, Outcome::OK),
    ];
    metrics.record_requests(Transport::Quic, answered, Duration::from_micros(300));
    metrics.record_entry_writes(3);
    metrics.record_apply(Duration::from_micros(40));
    metrics.denied(ClientRole::Checkout);
    let open = metrics.connection(ConnectionKind::Client);
    metrics.record_pause(Duration::from_millis(2));
    metrics.record_pause(Duration::from_millis(1));

    let s = scrape(&metrics);
    let ok = [
        ("transport", "quic"),
        ("operation", "reserve"),
        ("outcome", "ok"),
    ];
    check(&s, "stockd_requests_total", &ok, 3.0);
    check(&s, "stockd_request_duration_seconds", &ok, 3.0);
    let short = [("operation", "reserve"), ("outcome", "insufficient_stock")];
    check(&s, "stockd_requests_total", &short, 1.0);
    check(&s, "stockd_raft_entry_writes", &[], 1.0);
    check(&s, "stockd_apply_duration_seconds", &[], 1.0);
    check(&s, "stockd_snapshot_build_duration_seconds", &[], 0.0);
    check(
        &s,
        "stockd_denied_requests_total",
        &[("role", "checkout")],
        1.0,
    );
    check(
        &s,
        "stockd_denied_requests_total",
        &[("role", "reader")],
        0.0,
    );
    check(&s, "stockd_connections", &[("kind", "client")], 1.0);
    check(&s, "stockd_connections", &[("kind", "peer")], 0.0);
    check(&s, "stockd_pause_max_seconds", &[], 0.002);
    drop(open);
    check(
        &scrape(&metrics),
        "stockd_connections",
        &[("kind", "client")],
        0.0,
    );
    assert_eq!(metrics.requests(reserve(Outcome::OK)), 3);
    assert_eq!(metrics.requests(reserve(Outcome::Busy)), 0);
}

#[test]
fn a_series_appears_with_its_first_request_and_in_the_prometheus_text_format() {
    let metrics = Metrics::new();
    assert!(!metrics.render().contains("operation=\"reserve\""));
    metrics.record_request(reserve(Outcome::Busy), Duration::from_millis(3), 2);
    let text = metrics.render();
    // 0.0.4 text: TYPE lines, cumulative buckets ending in +Inf, no OpenMetrics `# EOF`.
    assert!(
        text.contains("# TYPE stockd_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE stockd_request_duration_seconds histogram\n"),
        "{text}"
    );
    let le = |bound: &str| {
        format!(
            "stockd_request_duration_seconds_bucket{{transport=\"quic\",operation=\"reserve\",outcome=\"busy\",le=\"{bound}\"}} "
        )
    };
    let count_at = |bound: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(&le(bound)))
            .expect("bucket");
        line.rsplit(' ').next().map(str::to_owned)
    };
    assert_eq!(count_at("0.0025").as_deref(), Some("0"));
    assert_eq!(count_at("0.005").as_deref(), Some("2"));
    assert_eq!(count_at("+Inf").as_deref(), Some("2"));
    assert!(!text.contains("# EOF"));
}
