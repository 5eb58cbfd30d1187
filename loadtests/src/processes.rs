//! The cluster as it is deployed (SPEC section 5): `stockd` PROCESSES, each with its own data
//! directory, port, runtime and allocator, the generator in a process of its own. Started from
//! the real `stockd` binary by testkit's [`ProcessCluster`], on free loopback ports under a
//! fresh temporary root; stopped (SIGKILL) and removed when [`NodeProcesses`] is dropped, so an
//! error or an early return leaves nothing behind (Ctrl-C and SIGTERM are turned into such a
//! return by the command line).
//!
//! Which binary: `--stockd PATH` if given; else, when `stockd-load` was started by cargo
//! (`cargo run`, or a test under `cargo test`), cargo builds `stockd` in the same profile and
//! target directory first, so generator and server always come from the same tree; else the
//! `stockd` next to `stockd-load` (`target/release/stockd` beside `target/release/stockd-load`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use server::raft::log_store::Durability;
use testkit::{ProcessCluster, ProcessConfig};

/// How long the nodes have to elect a leader after they start.
pub const LEADER_WITHIN_MS: u64 = 20_000;
/// Most nodes a local process cluster runs (as the in-process one).
pub const NODES_MAX: u64 = 7;

/// How to start the [`NodeProcesses`].
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Nodes (1..=[`NODES_MAX`]).
    pub nodes: u64,
    /// The `stockd` binary (`None`: see the module doc).
    pub binary: Option<PathBuf>,
    /// Log durability (`stockd --durability`).
    pub durability: Durability,
    /// Raft entries between snapshots (`stockd --snapshot-every`; `None`: the server's
    /// default; 0 counts as 1, as on the in-process cluster, since stockd refuses 0).
    pub snapshot_every: Option<u64>,
    /// MiB of log that also trigger a snapshot (`stockd --snapshot-log-mib`; `None`: the
    /// server's default; 0 counts as 1).
    pub snapshot_log_mib: Option<u64>,
    /// Seconds since the last snapshot that also trigger one (`stockd --snapshot-interval-s`;
    /// `None`: the server's default; 0 counts as 1).
    pub snapshot_interval_s: Option<u64>,
    /// Threads of each node's runtime (`stockd --runtime-threads`; `None`: the server's
    /// default, one thread; not passed then, so a `--stockd` binary older than the flag
    /// still starts).
    pub runtime_threads: Option<u16>,
    /// Each node's memory budget, MiB (`stockd --memory-limit-mib`; `None`: the server's
    /// default, a share of the host for ONE node, so three nodes on one host want a third).
    pub memory_limit_mib: Option<u64>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            nodes: 3,
            binary: None,
            durability: Durability::default(),
            snapshot_every: None,
            snapshot_log_mib: None,
            snapshot_interval_s: None,
            runtime_threads: None,
            memory_limit_mib: None,
        }
    }
}

impl ProcessOptions {
    /// The flags every `stockd` process is started with: `--durability`, and the snapshot
    /// thresholds and runtime threads that were given.
    pub fn stockd_flags(&self) -> Vec<String> {
        let durability = match self.durability {
            Durability::Fsync => "fsync",
            Durability::Replicated { .. } => "replicated",
        };
        let mut flags = vec!["--durability".to_owned(), durability.to_owned()];
        let thresholds = [
            ("--snapshot-every", self.snapshot_every),
            ("--snapshot-log-mib", self.snapshot_log_mib),
            ("--snapshot-interval-s", self.snapshot_interval_s),
        ];
        for (flag, value) in thresholds {
            if let Some(value) = value {
                flags.push(flag.to_owned());
                flags.push(value.max(1).to_string());
            }
        }
        if let Some(threads) = self.runtime_threads {
            flags.push("--runtime-threads".to_owned());
            flags.push(threads.to_string());
        }
        if let Some(mib) = self.memory_limit_mib {
            flags.push("--memory-limit-mib".to_owned());
            flags.push(mib.to_string());
        }
        flags
    }
}

/// Why the processes did not start.
#[derive(Debug)]
pub enum ProcessError {
    /// No `stockd` binary at any of these places.
    NoBinary {
        /// Where it was looked for.
        looked: Vec<PathBuf>,
    },
    /// cargo could not build `stockd`.
    Build {
        /// The command.
        command: String,
        /// What it said or why it did not run.
        error: String,
    },
    /// The processes did not start or elected no leader.
    Cluster(testkit::Error),
    /// The thread that waits for the leader could not run.
    Runtime(std::io::Error),
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::NoBinary { looked } => {
                let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "no stockd binary (looked at {}); build it in the same profile \
                     (`cargo build --release -p server --bin stockd`), pass --stockd PATH, \
                     or use --in-process",
                    looked.join(", ")
                )
            }
            ProcessError::Build { command, error } => write!(f, "{command}: {error}"),
            ProcessError::Cluster(e) => write!(f, "{e}"),
            ProcessError::Runtime(e) => write!(f, "cannot wait for a leader: {e}"),
        }
    }
}

impl std::error::Error for ProcessError {}

/// The `stockd` binary a cluster runs, and how it was chosen (for the reports).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StockdBinary {
    /// Its path.
    pub path: PathBuf,
    /// `given` (`--stockd`), `built by cargo` or `next to stockd-load`.
    pub how: &'static str,
}

/// Where a test binary has cargo build `stockd`, inside the target directory (see
/// `build_with_cargo`).
const TEST_STOCKD_TARGET_DIR: &str = "stockd-for-tests";

/// The cargo profile whose output directory is `dir` (`target/<dir>`): `debug` is `dev`'s.
fn profile_of(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    Some(if name == "debug" { "dev" } else { name }.to_owned())
}

/// The profile output directory this executable runs from (a test binary sits in its
/// `deps/`).
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        return dir.parent().map(Path::to_owned);
    }
    Some(dir.to_owned())
}

/// Builds `stockd` with the cargo that started this process, in its profile and target
/// directory; `Ok(None)` when this process was not started by cargo.
fn build_with_cargo(profile_dir: &Path) -> Result<Option<PathBuf>, ProcessError> {
    let (Some(cargo), Some(manifest_dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        return Ok(None);
    };
    let (Some(profile), Some(target_dir)) = (profile_of(profile_dir), profile_dir.parent()) else {
        return Ok(None);
    };
    // A test binary (in `deps/`) builds stockd into a target directory of its own: `cargo
    // test` resolves features with dev-dependencies, this build without them, and a second
    // feature variant of a library in the same `deps/` makes rustdoc's doctests of that run
    // fail to pick one ("can't find crate").
    let under_test = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.ends_with("deps")))
        .unwrap_or(false);
    let target_dir = if under_test {
        target_dir.join(TEST_STOCKD_TARGET_DIR)
    } else {
        target_dir.to_owned()
    };
    let built = target_dir.join(profile_dir.file_name().unwrap_or_default());
    let mut command = Command::new(cargo);
    // `-p loadtests` too: cargo resolves features over the packages named, so this is the
    // feature set stockd-load was built with, and the server's dependencies are not built a
    // second time with another one (`-p server` alone rebuilds them: minutes in release).
    command
        .args(["build", "--quiet", "--profile", &profile])
        .args(["-p", "server", "-p", "loadtests", "--bin", "stockd"])
        .arg("--manifest-path")
        .arg(Path::new(&manifest_dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    let described = format!("{command:?}");
    eprintln!("building stockd (cargo, profile {profile}) ...");
    let status = command.status().map_err(|e| ProcessError::Build {
        command: described.clone(),
        error: e.to_string(),
    })?;
    if !status.success() {
        return Err(ProcessError::Build {
            command: described,
            error: status.to_string(),
        });
    }
    Ok(Some(built.join("stockd")))
}

/// Finds (or has cargo build) the `stockd` binary; see the module doc for the order.
pub fn find_stockd(given: Option<&Path>) -> Result<StockdBinary, ProcessError> {
    if let Some(path) = given {
        if path.is_file() {
            return Ok(StockdBinary {
                path: path.to_owned(),
                how: "given",
            });
        }
        return Err(ProcessError::NoBinary {
            looked: vec![path.to_owned()],
        });
    }
    let exe = std::env::current_exe().map_err(ProcessError::Runtime)?;
    let Some(dir) = profile_dir(&exe) else {
        return Err(ProcessError::NoBinary { looked: vec![exe] });
    };
    if let Some(path) = build_with_cargo(&dir)? {
        return Ok(StockdBinary {
            path,
            how: "built by cargo",
        });
    }
    let beside = dir.join("stockd");
    if beside.is_file() {
        return Ok(StockdBinary {
            path: beside,
            how: "next to stockd-load",
        });
    }
    Err(ProcessError::NoBinary {
        looked: vec![beside],
    })
}

/// Resident memory of one node, as `/proc/<pid>/status` tells it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NodeMemory {
    /// Node id.
    pub node: u64,
    /// Its process id.
    pub pid: u32,
    /// `VmRSS`, bytes (`None`: the process is gone, or this is not Linux).
    pub rss_bytes: Option<u64>,
}

/// `VmRSS` of process `pid`, bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `stockd` processes forming one cluster on loopback, with a leader.
pub struct NodeProcesses {
    cluster: ProcessCluster,
    binary: StockdBinary,
    nodes: u64,
}

impl NodeProcesses {
    /// Starts `options.nodes` processes of the binary and waits (up to [`LEADER_WITHIN_MS`])
    /// for a leader. On an error every process started is killed and the root removed.
    pub fn start(options: &ProcessOptions) -> Result<NodeProcesses, ProcessError> {
        let binary = find_stockd(options.binary.as_deref())?;
        let nodes = options.nodes.clamp(1, NODES_MAX);
        let flags = options.stockd_flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        // Every node serves HTTP too, for the `stockd-http` target.
        let config = ProcessConfig::new(&binary.path, "load", nodes)
            .flags(&flags)
            .with_http();
        let cluster = ProcessCluster::start(config).map_err(ProcessError::Cluster)?;
        wait_leader(&cluster)?;
        Ok(NodeProcesses {
            cluster,
            binary,
            nodes,
        })
    }

    /// Node addresses, `host:port`.
    pub fn addrs(&self) -> Vec<String> {
        self.cluster.addrs()
    }

    /// Every node's HTTP base URL (`http://127.0.0.1:PORT`), by node id.
    pub fn http_urls(&self) -> Vec<String> {
        self.cluster.http_urls()
    }

    /// The cluster CA certificate (the admin identity and token are beside it).
    pub fn ca(&self) -> PathBuf {
        self.cluster.ca()
    }

    /// The temporary root: data directories, the CA, each node's log `n<id>.log`.
    pub fn root(&self) -> &Path {
        self.cluster.root()
    }

    /// The binary the nodes run.
    pub fn binary(&self) -> &StockdBinary {
        &self.binary
    }

    /// The nodes' process ids, by node id.
    pub fn pids(&self) -> Vec<u32> {
        (1..=self.nodes)
            .filter_map(|node| self.cluster.pid(node))
            .collect()
    }

    /// Every node's resident memory now.
    pub fn memory(&self) -> Vec<NodeMemory> {
        (1..=self.nodes)
            .filter_map(|node| {
                let pid = self.cluster.pid(node)?;
                Some(NodeMemory {
                    node,
                    pid,
                    rss_bytes: rss_of(pid),
                })
            })
            .collect()
    }

    /// Kills every process and removes the root.
    pub fn stop(self) {
        drop(self.cluster);
    }
}

/// Waits for a leader on a thread of its own (the caller may be inside a runtime, where
/// another runtime cannot block).
fn wait_leader(cluster: &ProcessCluster) -> Result<(), ProcessError> {
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ProcessError::Runtime)?;
            let within = Duration::from_millis(LEADER_WITHIN_MS);
            runtime
                .block_on(cluster.leader(within))
                .map(|_| ())
                .map_err(|e| ProcessError::Cluster(testkit::Error::Wait(e)))
        });
        waiter.join().unwrap_or_else(|_| {
            Err(ProcessError::Runtime(std::io::Error::other(
                "the leader wait panicked",
            )))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_read_from_the_output_directory() {
        assert_eq!(
            profile_of(Path::new("/t/target/debug")).as_deref(),
            Some("dev")
        );
        assert_eq!(
            profile_of(Path::new("/t/target/release")).as_deref(),
            Some("release")
        );
        let test_exe = Path::new("/t/target/debug/deps/smoke-0123");
        assert_eq!(
            profile_dir(test_exe),
            Some(PathBuf::from("/t/target/debug"))
        );
        let bin = Path::new("/t/target/release/stockd-load");
        assert_eq!(profile_dir(bin), Some(PathBuf::from("/t/target/release")));
    }

    #[test]
    fn snapshot_thresholds_become_stockd_flags_only_when_given() {
        let defaults = ProcessOptions::default();
        assert_eq!(defaults.stockd_flags(), ["--durability", "replicated"]);
        let given = ProcessOptions {
            durability: Durability::Fsync,
            snapshot_every: Some(500),
            snapshot_log_mib: Some(0),
            snapshot_interval_s: Some(30),
            runtime_threads: Some(1),
            memory_limit_mib: Some(7000),
            ..ProcessOptions::default()
        };
        assert_eq!(
            given.stockd_flags(),
            [
                "--durability",
                "fsync",
                "--snapshot-every",
                "500",
                "--snapshot-log-mib",
                "1",
                "--snapshot-interval-s",
                "30",
                "--runtime-threads",
                "1",
                "--memory-limit-mib",
                "7000"
            ]
        );
    }

    #[test]
    fn a_given_binary_must_exist() {
        let missing = Path::new("/nonexistent/stockd");
        match find_stockd(Some(missing)) {
            Err(ProcessError::NoBinary { looked }) => assert_eq!(looked, [missing]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_memory_of_this_process_is_readable() {
        let rss = rss_of(std::process::id()).expect("Linux /proc");
        assert!(rss > 1 << 20, "{rss}");
    }
}
