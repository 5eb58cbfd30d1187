//! Real `stockd` processes on loopback for the crash tests: each node has its own data
//! directory under one temporary root (removed at the end unless the test failed), its own UDP
//! port and its own log file; `kill` is SIGKILL (no QUIC close, no log flush).

#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use client::{Client, ClientConfig};
use pki::Trust;
use protocol::{NodeStatus, Role};

/// A free UDP port on loopback (the node binds it right after; a clash fails loudly).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Three (or more) `stockd` processes forming one cluster.
pub struct Cluster {
    pub root: PathBuf,
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    /// Extra flags given to every node (e.g. `--durability fsync`).
    flags: Vec<String>,
    /// Data directories placed elsewhere than under `root` (e.g. on a small file system).
    dirs: Vec<Option<PathBuf>>,
}

impl Cluster {
    /// Starts `nodes` processes named after `test` (the temporary root's name), each with
    /// `flags` added to its command line.
    pub fn start(test: &str, nodes: usize, flags: &[&str]) -> Cluster {
        Cluster::start_with_dirs(test, nodes, flags, |_| None)
    }

    /// [`Cluster::start`] with node `id`'s data directory at `dir(id)` where that is `Some`.
    pub fn start_with_dirs(
        test: &str,
        nodes: usize,
        flags: &[&str],
        dir: impl Fn(usize) -> Option<PathBuf>,
    ) -> Cluster {
        let dirs: Vec<Option<PathBuf>> = (1..=nodes).map(dir).collect();
        let root = std::env::temp_dir().join(format!("stockd-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("root");
        let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        for i in 1..=nodes {
            let out = dirs[i - 1]
                .clone()
                .unwrap_or_else(|| root.join(format!("n{i}")));
            let status = Command::new(env!("CARGO_BIN_EXE_stockd"))
                .args(["certs", "--ca-dir"])
                .arg(root.join("ca"))
                .arg("--out")
                .arg(out)
                .output()
                .expect("stockd certs");
            assert!(status.status.success(), "{status:?}");
        }
        let mut cluster = Cluster {
            root,
            ports,
            children: (0..nodes).map(|_| None).collect(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            dirs,
        };
        for i in 1..=nodes {
            cluster.spawn(i);
        }
        cluster
    }

    /// The data directory of node `id`.
    pub fn dir(&self, id: usize) -> PathBuf {
        self.dirs[id - 1]
            .clone()
            .unwrap_or_else(|| self.root.join(format!("n{id}")))
    }

    /// Starts (or restarts) node `id`; its output is appended to `n<id>.log`.
    pub fn spawn(&mut self, id: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("n{id}.log")))
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_stockd"));
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.ports[id - 1]))
            .arg("--data-dir")
            .arg(self.dir(id))
            .arg("--ca-dir")
            .arg(self.root.join("ca"))
            .args(&self.flags);
        for (i, port) in self.ports.iter().enumerate() {
            command
                .arg("--peer")
                .arg(format!("{}=127.0.0.1:{port}", i + 1));
        }
        let child = command
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn stockd");
        self.children[id - 1] = Some(child);
    }

    /// SIGKILL: what a crash or power cut leaves (the page cache survives, see [`cut_tail`]).
    pub fn kill(&mut self, id: usize) {
        if let Some(mut child) = self.children[id - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (e.g. `STOP`, `CONT`) to node `id`'s process.
    pub fn signal(&self, id: usize, signal: &str) {
        if let Some(child) = &self.children[id - 1] {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .expect("kill");
            assert!(status.success(), "kill -{signal}");
        }
    }

    pub fn addr(&self, id: usize) -> String {
        format!("127.0.0.1:{}", self.ports[id - 1])
    }

    pub fn addrs(&self) -> Vec<String> {
        (1..=self.ports.len()).map(|i| self.addr(i)).collect()
    }

    pub fn ca(&self) -> PathBuf {
        self.root.join("ca").join("ca.pem")
    }

    /// A client of the whole cluster that retries for up to `deadline_ms`.
    pub async fn client(&self, deadline_ms: u64) -> Client {
        client(self.addrs(), &self.ca(), deadline_ms).await
    }

    /// Node `id`'s status through a fresh connection (measures the node, not a pool), or
    /// `None` if it does not answer within 500 ms.
    pub async fn status(&self, id: usize) -> Option<NodeStatus> {
        let ca = pki::load_certs(&self.ca()).expect("CA");
        let mut config = ClientConfig::new(vec![self.addr(id)], Trust::Ca(ca));
        config.timeout_ms = 500;
        config.connect_timeout_ms = 500;
        config.deadline_ms = 1_000;
        let probe = Client::connect(config).await.ok()?;
        let status = probe.status_of(&self.addr(id)).await.ok();
        probe.close();
        status
    }

    /// The node that says it leads (in the highest term), waiting up to `within`.
    pub async fn leader(&self, within: Duration) -> usize {
        let start = Instant::now();
        loop {
            let mut best: Option<(u64, usize)> = None;
            for id in 1..=self.ports.len() {
                if let Some(s) = self.status(id).await {
                    if s.role == Role::Leader && best.is_none_or(|(t, _)| s.term > t) {
                        best = Some((s.term, id));
                    }
                }
            }
            if let Some((_, id)) = best {
                return id;
            }
            assert!(start.elapsed() < within, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes node `id` the leader: kills and restarts whichever node leads until it is `id`.
    pub async fn make_leader(&mut self, id: usize) {
        for _ in 0..20 {
            let leader = self.leader(Duration::from_secs(20)).await;
            if leader == id {
                return;
            }
            self.kill(leader);
            let start = Instant::now();
            while self.leader(Duration::from_secs(20)).await == leader {
                assert!(start.elapsed() < Duration::from_secs(20), "no new leader");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            self.spawn(leader);
        }
        panic!("node {id} never became the leader");
    }

    /// Units on hand of `sku` at `location`, read linearizably.
    pub async fn on_hand(&self, client: &Client, sku: &str, location: &str) -> i64 {
        let query = engine::Query::Availability {
            skus: vec![engine::SkuId::from(sku)],
            target: engine::Target::Location(engine::LocationId::from(location)),
            channel: engine::ChannelId::from("web"),
        };
        let read = client
            .read(query, protocol::Consistency::Linearizable)
            .await
            .expect("read");
        match read.answer {
            Ok(engine::Answer::Availability(rows)) => rows[0].rows[0].balance.on_hand,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Waits until every node answers with the same applied index and ledger digest.
    pub async fn wait_converged(&self, client: &Client, within: Duration) {
        let start = Instant::now();
        loop {
            let mut digests = Vec::new();
            for addr in self.addrs() {
                match client.digest_of(&addr).await {
                    Ok(d) => digests.push(Some((d.applied_index, d.digest))),
                    Err(_) => digests.push(None),
                }
            }
            if digests[0].is_some() && digests.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                start.elapsed() < within,
                "replicas did not converge within {within:?}: {digests:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.children.len() {
            if let Some(child) = &self.children[id - 1] {
                // A stopped process cannot die until it is continued.
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(child.id().to_string())
                    .status();
            }
            self.kill(id);
        }
        if std::thread::panicking() {
            eprintln!("node logs kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A client of `nodes` trusting the CA in `ca`.
pub async fn client(nodes: Vec<String>, ca: &Path, deadline_ms: u64) -> Client {
    let ca = pki::load_certs(ca).expect("CA");
    let mut config = ClientConfig::new(nodes, Trust::Ca(ca));
    config.deadline_ms = deadline_ms;
    Client::connect(config).await.expect("client")
}

/// Cuts the last `bytes` bytes off the newest segment of the log in `data_dir`: the torn tail
/// that a power cut leaves (the writes of the last moments never reached the disk). Returns
/// the segment and how many bytes were cut.
pub fn cut_tail(data_dir: &Path, bytes: u64) -> (PathBuf, u64) {
    let log = data_dir.join("log");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&log)
        .expect("log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let newest = segments.pop().expect("a segment");
    let len = std::fs::metadata(&newest).expect("segment").len();
    // Keep the 8-byte magic: a segment cut to nothing is another case (a new segment).
    let cut = bytes.min(len.saturating_sub(8));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .expect("open segment");
    file.set_len(len - cut).expect("truncate");
    file.sync_all().expect("sync");
    (newest, cut)
}
