//! `stockctl` and the case runner over real QUIC against a mock node wrapping an in-process
//! engine (`client/tests/support`): every scenario case through `ClusterTarget`, and the
//! binary end to end.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use stockctl::case::run_case;
use stockctl::cluster_target::{options_for, ClusterTarget};
use support::*;

/// The workspace root: this crate is client/stockctl.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

fn case_files() -> Vec<PathBuf> {
    stockctl::case::case_dirs(&workspace())
        .iter()
        .flat_map(|dir| {
            stockctl::case::case_files(dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        })
        .collect()
}

#[test]
fn every_case_passes_through_the_client_against_a_ledger_node() {
    let cluster = LedgerCluster::start("cases");
    let mut target =
        ClusterTarget::connect(config(&cluster.certs, vec![cluster.addr()])).expect("connects");
    let node = cluster.node.clone();
    target.on_advance(Box::new(move |ms| {
        node.offset_ms.fetch_add(ms, Ordering::SeqCst);
        Ok(())
    }));
    let files = case_files();
    assert!(files.len() >= 30, "cases found: {}", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).expect("readable");
        // Each case in its own namespace on the shared ledger, run twice: a rerun must not
        // be a replay.
        for _ in 0..2 {
            let report = run_case(&name, &text, &mut target, &options_for(&name));
            if let Some(why) = report.failure {
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------------------------
// stockctl end to end

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn stockctl(cluster: &LedgerCluster, args: &[&str]) -> Run {
    stockctl_at(cluster, &cluster.addr(), args)
}

/// stockctl with `--connect` set to `connect`.
fn stockctl_at(cluster: &LedgerCluster, connect: &str, args: &[&str]) -> Run {
    let ca = cluster.certs.ca_path();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stockctl"))
        .arg("--connect")
        .arg(connect)
        .arg("--ca")
        .arg(&ca)
        .args(args)
        .output()
        .expect("stockctl runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[track_caller]
fn check(run: &Run, code: i32, stdout_starts: &str) {
    assert_eq!(
        run.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.starts_with(stdout_starts),
        "stdout {:?} does not start with {stdout_starts:?} (stderr {:?})",
        run.stdout,
        run.stderr
    );
}

#[test]
fn stockctl_operates_a_ledger_in_display_units() {
    let cluster = LedgerCluster::start("stockctl");
    check(
        &stockctl(&cluster, &["define-location", "wh1", "warehouse"]),
        0,
        "ok\n",
    );
    check(
        &stockctl(&cluster, &["define-location", "wh2", "warehouse"]),
        0,
        "ok\n",
    );
    check(
        &stockctl(&cluster, &["define-group", "online", "wh1", "wh2"]),
        0,
        "ok\n",
    );
    check(
        &stockctl(&cluster, &["define-sku", "CLOTH", "--scale", "2"]),
        0,
        "ok\n",
    );
    check(
        &stockctl(&cluster, &["set-on-hand", "CLOTH@wh2", "33.6"]),
        0,
        "ok: on_hand=33.60 reserved=0.00",
    );
    // Too many decimals: invalid, decided locally.
    check(
        &stockctl(
            &cluster,
            &["reserve", "r1", "web", "CLOTH@online:0.591", "--ttl", "15m"],
        ),
        1,
        "rejected: invalid: quantity 0.591: more than 2 decimal places (not sent)",
    );
    // A group line: sourced from wh2 (wh1 has nothing).
    let reserved = stockctl(
        &cluster,
        &["reserve", "r1", "web", "CLOTH@online:0.59", "--ttl", "15m"],
    );
    check(&reserved, 0, "ok: reserved until ");
    assert!(
        reserved.stdout.contains("\n  line 1: CLOTH 0.59 at wh2\n"),
        "{}",
        reserved.stdout
    );
    check(
        &stockctl(
            &cluster,
            &["reserve", "r2", "web", "CLOTH@wh2:40", "--ttl", "15m"],
        ),
        1,
        "rejected: insufficient_stock: CLOTH@wh2: requested 40.00, available 33.01",
    );
    check(
        &stockctl(&cluster, &["availability", "CLOTH", "--at", "online"]),
        0,
        "CLOTH (scale 2): available=33.01 available[pos]=33.01\n  wh2: available=33.01",
    );
    let json = stockctl(
        &cluster,
        &["availability", "CLOTH", "--at", "wh2", "--json"],
    );
    check(&json, 0, "{");
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(value["code"], "ok");
    assert_eq!(value["answer"]["Availability"][0]["ats"], 3301);
    check(
        &stockctl(&cluster, &["reservation", "r1"]),
        0,
        "reservation r1: active (channel web)",
    );
    check(
        &stockctl(&cluster, &["order", "nope"]),
        1,
        "rejected: not_found: no order nope",
    );
    // A scripted retry: the same request id returns the original outcome, once.
    let first = stockctl(
        &cluster,
        &[
            "adjust",
            "CLOTH@wh1",
            "1.5",
            "--request-id",
            "abc123",
            "--json",
        ],
    );
    let again = stockctl(
        &cluster,
        &[
            "adjust",
            "CLOTH@wh1",
            "1.5",
            "--request-id",
            "abc123",
            "--json",
        ],
    );
    check(&first, 0, "{");
    let value: serde_json::Value = serde_json::from_str(first.stdout.trim()).expect("JSON");
    let replay: serde_json::Value = serde_json::from_str(again.stdout.trim()).expect("JSON");
    assert_eq!(
        replay["reply"], value["reply"],
        "a replay answers the original"
    );
    assert_eq!(replay["request_id"], value["request_id"]);
    assert_eq!(value["request_id"], "00000000000000000000000000abc123");
    assert_eq!(value["reply"]["Balance"]["on_hand"], 150);
    check(
        &stockctl(&cluster, &["adjust", "CLOTH@wh1", "-2"]),
        1,
        "rejected: insufficient_stock",
    );
    check(
        &stockctl(&cluster, &["status"]),
        0,
        &format!("{}: node 1 leader", cluster.addr()),
    );
    let status = stockctl(&cluster, &["status"]);
    let replies = "\n  replies: queued_bytes=0 connections_closed_unread=0 subscribers_cut=0 \
                   frames_shed=0";
    assert!(status.stdout.contains(replies), "{}", status.stdout);
    assert!(
        status.stdout.contains("\n  pauses: apply_max="),
        "{}",
        status.stdout
    );
    let json = stockctl(&cluster, &["status", "--json"]);
    let nodes: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    let status = &nodes[0]["status"];
    assert!(
        status["pauses"]["apply_pause_max_us"].is_u64()
            && status["pauses"]["recent"].is_array()
            && status["snapshots"]["built_total"].is_u64(),
        "{status}"
    );
    check(
        &stockctl(&cluster, &["digest"]),
        0,
        &format!("{}: applied=", cluster.addr()),
    );
    check(
        &stockctl(&cluster, &["changes", "--since", "1", "--max", "1"]),
        0,
        "#1 log=",
    );
    // Usage errors: status 2, nothing sent.
    let bad = stockctl(&cluster, &["sell", "CLOTH", "1"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    let bad = stockctl(&cluster, &["status", "--request-id", "1"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("only applies to writes"),
        "{}",
        bad.stderr
    );
}

#[test]
fn stockctl_shows_and_sets_the_retention_settings() {
    let cluster = LedgerCluster::start("stockctl-retention");
    check(
        &stockctl(&cluster, &["retention", "show"]),
        0,
        "finished objects: 10000000 entries, 90d (retired_ms=7776000000)\n\
         dedup: 4000000 entries, 1d (dedup_window_ms=86400000)\n\
         change feed: 1000000 events\n",
    );
    // Only the values given change; the others are read back and written as they were.
    let set = stockctl(
        &cluster,
        &[
            "retention",
            "set",
            "--finished-entries",
            "1000",
            "--finished-days",
            "7",
        ],
    );
    check(
        &set,
        0,
        "ok\nfinished objects: 1000 entries, 7d (retired_ms=604800000)\n\
         dedup: 4000000 entries, 1d",
    );
    let shown = stockctl(&cluster, &["retention", "show", "--json"]);
    check(&shown, 0, "{");
    let value: serde_json::Value = serde_json::from_str(shown.stdout.trim()).expect("JSON");
    let retention = &value["answer"]["Retention"];
    assert_eq!(retention["retired_entries"], 1_000, "{value}");
    assert_eq!(retention["retired_ms"], 604_800_000_u64, "{value}");
    assert_eq!(retention["feed_events"], 1_000_000, "{value}");
    // Out of range: rejected by the ledger, naming the field; nothing changes.
    let low = stockctl(
        &cluster,
        &["retention", "set", "--dedup-window-s", "1", "--json"],
    );
    check(&low, 1, "{");
    let value: serde_json::Value = serde_json::from_str(low.stdout.trim()).expect("JSON");
    assert_eq!(value["code"], "invalid");
    let message = value["message"].as_str().unwrap_or_default();
    assert!(message.contains("dedup_window_ms"), "{value}");
    check(
        &stockctl(&cluster, &["retention", "show"]),
        0,
        "finished objects: 1000 entries, 7d",
    );
}

#[test]
fn stockctl_case_runs_against_a_node() {
    let cluster = LedgerCluster::start("stockctl-case");
    let case = case_files()
        .into_iter()
        .find(|f| f.ends_with("06-retry-same-request.case"))
        .expect("the shared retry case");
    let run = stockctl(&cluster, &["case", case.to_str().expect("utf-8 path")]);
    check(&run, 0, "PASS 06-retry-same-request\n");
    let nobody = std::process::Command::new(env!("CARGO_BIN_EXE_stockctl"))
        .args(["--connect", "127.0.0.1:9", "--ca"])
        .arg(cluster.certs.ca_path())
        .args(["--timeout-ms", "300", "status"])
        .output()
        .expect("runs");
    assert_eq!(nobody.status.code(), Some(2), "unreachable node: status 2");
}

#[test]
fn stockctl_add_node_says_where_the_node_stands() {
    let cluster = LedgerCluster::start("add-node");
    check(
        &stockctl(&cluster, &["add-node", "4", "h:1"]),
        0,
        "ok: node 4 is a voter\n",
    );
    check(
        &stockctl(&cluster, &["add-node", "5", "h:1"]),
        3,
        "node 5 is a learner, catching up (matched index 3 of 10): it does not vote yet; run \
         `stockctl add-node 5 h:1` again to promote it once caught up\n",
    );
    check(
        &stockctl(&cluster, &["add-node", "6", "h:1"]),
        3,
        "node 6 is a learner, unreachable (it answers neither replication nor status): it does \
         not vote; start it and run `stockctl add-node 6 h:1` again, or `stockctl remove-node 6`",
    );
    check(
        &stockctl(&cluster, &["add-node", "7", "h:1"]),
        2,
        "node 7 not added (the membership is unchanged): nothing answered at h:1\n",
    );
    let json = stockctl(&cluster, &["add-node", "5", "h:1", "--json"]);
    check(&json, 3, "{");
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!({"node": 5, "state": "catching_up", "matched_index": 3,
                           "target_index": 10})
    );
    check(
        &stockctl(&cluster, &["members"]),
        0,
        "leader: node 1 term=3 last_log=0\n  node 1 node-1:7400 voter, leader matched=0 lag=0\n",
    );
    let json = stockctl(&cluster, &["members", "--json"]);
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!({"leader": 1, "term": 3, "last_log_index": 0, "members": [
            {"node": {"id": 1, "addr": "node-1:7400"}, "voter": true, "matched_index": 0}]})
    );
}

/// A node that was stopped (its UDP port silent) first in `--connect`: stockctl asks every node
/// at once and goes on with the first answers. Before, it dialed the seeds one by one and
/// waited the whole connect timeout (here 20 s) on the silent one.
#[test]
fn stockctl_does_not_wait_for_a_silent_node_first_in_its_list() {
    let cluster = LedgerCluster::start("silent-first");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let connect = format!("{},{}", silent.local_addr().expect("addr"), cluster.addr());
    let started = std::time::Instant::now();
    let run = stockctl_at(
        &cluster,
        &connect,
        &[
            "--timeout-ms",
            "20000",
            "define-location",
            "wh1",
            "warehouse",
        ],
    );
    let took = started.elapsed();
    check(&run, 0, "ok\n");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
