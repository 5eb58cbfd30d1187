//! `stockd-load run` against its default cluster, three `stockd` processes: a short soak
//! starts them, drives them and samples each one's memory; then every process is gone and the
//! data directory removed, also when the run is ended by Ctrl-C. stockd-load is run as a
//! process, as a person would run it (cargo builds the `stockd` it starts, see
//! `loadtests::processes`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What stockd-load said when its processes were up.
struct Started {
    pids: Vec<u32>,
    root: PathBuf,
}

/// Reads the start line (`started 3 stockd processes ... (pids [..]; ... data and logs in
/// ROOT, removed at the end)`).
fn parse_started(line: &str) -> Option<Started> {
    let rest = line.strip_prefix("started ")?;
    let pids = rest.split("(pids [").nth(1)?.split(']').next()?;
    let pids = pids
        .split(", ")
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()
        .ok()?;
    let root = rest
        .split("data and logs in ")
        .nth(1)?
        .strip_suffix(", removed at the end)")?;
    Some(Started {
        pids,
        root: PathBuf::from(root),
    })
}

fn stockd_load(args: &[&str], out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockd-load"));
    command
        .arg("run")
        .args([
            "--scenario",
            "checkout",
            "--skus",
            "200",
            "--connections",
            "2",
        ])
        .args(args)
        .arg("--out")
        .arg(out);
    command
}

/// Reads `stderr` until the start line; returns it and every line read. The rest is drained
/// by a thread (a closed pipe would make stockd-load's next message fail).
fn await_start(stderr: impl std::io::Read + Send + 'static) -> (Option<Started>, Vec<String>) {
    let mut seen = Vec::new();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        let started = parse_started(&line);
        seen.push(line);
        if started.is_some() {
            std::thread::spawn(move || lines.for_each(drop));
            return (started, seen);
        }
    }
    (None, seen)
}

#[track_caller]
fn assert_gone(started: &Started) {
    assert_eq!(started.pids.len(), 3, "three stockd processes");
    for pid in &started.pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "stockd {pid} outlived the run"
        );
    }
    assert!(
        !started.root.exists(),
        "{} left behind",
        started.root.display()
    );
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stockd-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_soak_starts_three_stockd_processes_samples_their_memory_and_leaves_none_behind() {
    let out = out_dir("soak");
    // 3 s at 100 checkouts/s, windows of 1 s; the snapshot thresholds are stockd's own flags
    // (a misspelt one would stop the processes from starting).
    let output = stockd_load(
        &["--rate", "100", "--soak", "0.05", "--soak-window", "1"],
        &out,
    )
    .args(["--warmup", "0.2"])
    .args(["--snapshot-every", "200", "--snapshot-log-mib", "64"])
    .args(["--snapshot-interval-s", "1"])
    .output()
    .expect("stockd-load runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("ignored"), "{stderr}");
    let started = stderr
        .lines()
        .find_map(parse_started)
        .unwrap_or_else(|| panic!("no start line in {stderr}"));
    assert_gone(&started);

    let text = std::fs::read_to_string(out.join("record.json")).expect("record.json");
    let record: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(record["cluster"]["kind"], "processes");
    assert_eq!(record["cluster"]["nodes"].as_array().map(Vec::len), Some(3));
    assert_eq!(record["mode"], "Soak");
    let stats = &record["result"]["Load"]["stats"];
    assert!(stats["throughput"].as_f64() > Some(50.0), "{stats}");
    assert!(
        stats["windows"].as_array().map(Vec::len) >= Some(3),
        "{stats}"
    );
    let memory = record["memory"].as_array().expect("memory samples");
    assert!(memory.len() >= 3, "{memory:?}");
    for sample in memory.iter().take(memory.len() - 1) {
        let nodes = sample["nodes"].as_array().expect("nodes");
        let pids: Vec<u64> = nodes.iter().filter_map(|n| n["pid"].as_u64()).collect();
        let expected: Vec<u64> = started.pids.iter().map(|&p| u64::from(p)).collect();
        assert_eq!(pids, expected, "each node's own process");
        for n in nodes {
            assert!(n["rss_bytes"].as_u64() > Some(1 << 20), "{n}");
        }
    }
}

#[test]
fn ctrl_c_stops_the_run_and_its_processes_and_removes_their_data() {
    let out = out_dir("interrupted");
    let mut child = stockd_load(
        &["--mode", "open", "--rate", "100", "--duration", "60"],
        &out,
    )
    .stderr(Stdio::piped())
    .spawn()
    .expect("stockd-load starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let (started, seen) = await_start(stderr);
    let started = started.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no start line: {seen:?}")
    });
    let interrupted = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = child.wait().expect("stockd-load ends");
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(
        status.code(),
        Some(130),
        "the exit code of an interrupted run"
    );
    assert!(interrupted.elapsed() < Duration::from_secs(30));
    assert_gone(&started);
}
