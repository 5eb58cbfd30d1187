//! Real `stockd` processes on loopback, for the crash tests.

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use client::Client;
use protocol::NodeStatus;

use crate::error::Error;
use crate::temp::TempDir;
use crate::wait::{self, Awaited, Digest, Observe, WaitTimeout};

/// How to start a [`ProcessCluster`].
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The `stockd` binary (in a server test: `env!("CARGO_BIN_EXE_stockd")`; only cargo knows
    /// where it built it, and only the server's own tests are told).
    pub binary: PathBuf,
    /// Names the temporary root, so a kept directory says which test left it.
    pub name: String,
    /// Nodes, with ids `1..=nodes`.
    pub nodes: u64,
    /// Extra flags given to every node (e.g. `--durability fsync`).
    pub flags: Vec<String>,
    /// Data directories placed elsewhere than under the root (e.g. on a small file system).
    pub data_dirs: BTreeMap<u64, PathBuf>,
    /// Whether every node also serves HTTP (`--http`) on a free loopback port of its own
    /// ([`ProcessCluster::http_url`]).
    pub http: bool,
}

impl ProcessConfig {
    /// `nodes` nodes of `binary`, their data under a root named after `name`, no extra flags.
    pub fn new(binary: impl Into<PathBuf>, name: &str, nodes: u64) -> ProcessConfig {
        ProcessConfig {
            binary: binary.into(),
            name: name.to_owned(),
            nodes,
            flags: Vec::new(),
            data_dirs: BTreeMap::new(),
            http: false,
        }
    }

    /// Has every node serve HTTP too, each on a free loopback port.
    pub fn with_http(mut self) -> ProcessConfig {
        self.http = true;
        self
    }

    /// Adds `flags` to every node's command line.
    pub fn flags(mut self, flags: &[&str]) -> ProcessConfig {
        self.flags.extend(flags.iter().map(|f| (*f).to_owned()));
        self
    }

    /// Puts node `id`'s data directory at `dir`.
    pub fn data_dir(mut self, id: u64, dir: PathBuf) -> ProcessConfig {
        self.data_dirs.insert(id, dir);
        self
    }
}

/// `stockd` processes forming one cluster on loopback. Each node has its own data directory
/// under one temporary root, its own UDP port and its own log file (`n<id>.log` in the root).
/// [`ProcessCluster::kill`] is SIGKILL: no QUIC close, no log flush, as in a crash.
///
/// Dropping it kills every process (continuing stopped ones first) and removes the root,
/// unless the test is failing: then the root and its node logs are kept, and their place printed.
pub struct ProcessCluster {
    dir: TempDir,
    ports: Vec<u16>,
    /// Each node's HTTP port (empty when the nodes serve no HTTP).
    http_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    config: ProcessConfig,
}

/// A free UDP port on loopback (the node binds it right after; a clash fails loudly).
fn free_port() -> Result<u16, Error> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(Error::Runtime)?;
    Ok(socket.local_addr().map_err(Error::Runtime)?.port())
}

/// A free TCP port on loopback, for a node's HTTP (bound by the node right after, as above).
fn free_tcp_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::Runtime)?;
    Ok(listener.local_addr().map_err(Error::Runtime)?.port())
}

impl ProcessCluster {
    /// Issues every node a certificate from a new CA (`stockd certs`), then starts the nodes.
    pub fn start(config: ProcessConfig) -> Result<ProcessCluster, Error> {
        let dir = TempDir::new(&config.name)?.keep_if_panicking();
        let ports = (0..config.nodes)
            .map(|_| free_port())
            .collect::<Result<_, _>>()?;
        let http_nodes = if config.http { config.nodes } else { 0 };
        let http_ports = (0..http_nodes)
            .map(|_| free_tcp_port())
            .collect::<Result<_, _>>()?;
        let mut cluster = ProcessCluster {
            dir,
            ports,
            http_ports,
            children: (0..config.nodes).map(|_| None).collect(),
            config,
        };
        for id in 1..=cluster.config.nodes {
            cluster.issue_certificate(id)?;
        }
        for id in 1..=cluster.config.nodes {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn issue_certificate(&self, id: u64) -> Result<(), Error> {
        let mut command = Command::new(&self.config.binary);
        command
            .args(["certs", "--ca-dir"])
            .arg(self.ca_dir())
            .arg("--out")
            .arg(self.dir(id));
        let output = command.output().map_err(|source| Error::Spawn {
            command: format!("{command:?}"),
            source,
        })?;
        if !output.status.success() {
            return Err(Error::Certs {
                output: format!("{output:?}"),
            });
        }
        Ok(())
    }

    /// The temporary root: the CA, the node logs, the data directories not placed elsewhere.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    fn ca_dir(&self) -> PathBuf {
        self.root().join("ca")
    }

    /// The data directory of node `id`.
    pub fn dir(&self, id: u64) -> PathBuf {
        match self.config.data_dirs.get(&id) {
            Some(dir) => dir.clone(),
            None => self.root().join(format!("n{id}")),
        }
    }

    /// Starts (or restarts) node `id`, which must not be running (a second process would
    /// escape the cluster's Drop); its output is appended to `n<id>.log` in the root.
    pub fn spawn(&mut self, id: u64) -> Result<(), Error> {
        if self.is_running(id) {
            return Err(Error::Running(id));
        }
        let log_path = self.root().join(format!("n{id}.log"));
        let open_log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
        };
        let dir_error = |source| Error::Dir {
            path: log_path.clone(),
            source,
        };
        let (stdout, stderr) = (
            open_log().map_err(dir_error)?,
            open_log().map_err(dir_error)?,
        );
        let mut command = Command::new(&self.config.binary);
        command
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(self.addr(id))
            .arg("--data-dir")
            .arg(self.dir(id))
            .arg("--ca-dir")
            .arg(self.ca_dir())
            .args(&self.config.flags);
        if let Some(port) = self.http_ports.get(index(id)) {
            command.arg("--http").arg(format!("127.0.0.1:{port}"));
        }
        for (peer, port) in (1..).zip(&self.ports) {
            command
                .arg("--peer")
                .arg(format!("{peer}=127.0.0.1:{port}"));
        }
        let child = command
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| Error::Spawn {
                command: format!("{command:?}"),
                source,
            })?;
        self.children[index(id)] = Some(child);
        Ok(())
    }

    /// SIGKILL node `id`: what a crash or power cut leaves (the page cache survives, see
    /// [`crate::cut_tail`]). Nothing happens if it is not running.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[index(id)].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to node `id`'s process, if it runs.
    pub fn signal(&self, id: u64, signal: &str) -> Result<(), Error> {
        let Some(child) = &self.children[index(id)] else {
            return Ok(());
        };
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        match sent {
            Ok(status) if status.success() => Ok(()),
            _ => Err(Error::Signal {
                id,
                signal: signal.to_owned(),
            }),
        }
    }

    /// The address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[index(id)])
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<String> {
        (1..=self.config.nodes).map(|id| self.addr(id)).collect()
    }

    /// The HTTP base URL of node `id` (`http://127.0.0.1:PORT`), if the nodes serve HTTP
    /// ([`ProcessConfig::with_http`]).
    pub fn http_url(&self, id: u64) -> Option<String> {
        let port = self.http_ports.get(index(id))?;
        Some(format!("http://127.0.0.1:{port}"))
    }

    /// Every node's HTTP base URL, by node id (empty when the nodes serve no HTTP).
    pub fn http_urls(&self) -> Vec<String> {
        (1..=self.config.nodes)
            .filter_map(|id| self.http_url(id))
            .collect()
    }

    /// The cluster CA certificate file.
    pub fn ca(&self) -> PathBuf {
        self.ca_dir().join("ca.pem")
    }

    /// A client of the whole cluster that retries for up to `deadline_ms`.
    pub async fn client(&self, deadline_ms: u64) -> Result<Client, Error> {
        crate::fixtures::client(self.addrs(), &self.ca(), deadline_ms).await
    }

    /// A client of node `id` alone that gives up within a second: it measures the node, not
    /// a pool that would retry elsewhere.
    async fn probe(&self, id: u64) -> Option<Client> {
        let mut config = crate::fixtures::admin_config(vec![self.addr(id)], &self.ca()).ok()?;
        config.timeout_ms = 500;
        config.connect_timeout_ms = 500;
        config.deadline_ms = 1_000;
        Client::connect(config).await.ok()
    }

    /// Node `id`'s status through a fresh connection, or `None` if it does not answer within
    /// 500 ms.
    pub async fn status(&self, id: u64) -> Option<NodeStatus> {
        let probe = self.probe(id).await?;
        let status = probe.status_of(&self.addr(id)).await.ok();
        probe.close();
        status
    }

    async fn digest(&self, id: u64) -> Option<Digest> {
        let probe = self.probe(id).await?;
        let digest = probe.digest_of(&self.addr(id)).await.ok();
        probe.close();
        digest.map(|d| Digest {
            applied_index: d.applied_index,
            digest: d.digest,
        })
    }

    /// Waits up to `within` until node `id`'s status satisfies `ok` (`what` says what that
    /// means, for the timeout); returns that status.
    pub async fn wait_status(
        &self,
        id: u64,
        what: &str,
        within: Duration,
        ok: impl Fn(&NodeStatus) -> bool,
    ) -> Result<NodeStatus, WaitTimeout> {
        let awaited = Awaited::Status {
            id,
            what: what.to_owned(),
        };
        let every = self.every(&awaited);
        let ok = &ok;
        wait::poll(awaited, within, every, move || async move {
            match self.status(id).await {
                Some(status) if ok(&status) => Ok(status),
                seen => Err(seen.map(|s| (s.role, s.ready, s.applied_index, s.health))),
            }
        })
        .await
    }

    /// The process id of node `id`, if it runs (to watch it from outside).
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children[index(id)].as_ref().map(Child::id)
    }

    fn is_running(&self, id: u64) -> bool {
        self.children[index(id)].is_some()
    }

    /// Waits up to `within` for a leader ([`crate::leader_of`]); returns its id.
    pub async fn leader(&self, within: Duration) -> Result<u64, WaitTimeout> {
        wait::wait_leader_where(self, Awaited::Leader, within, |_| true).await
    }

    /// Makes node `id` the leader: kills and restarts whichever node leads until it is `id`.
    pub async fn make_leader(&mut self, id: u64) -> Result<(), Error> {
        const TRIES: u32 = 20;
        let within = Duration::from_secs(20);
        let start = Instant::now();
        for _ in 0..TRIES {
            let leader = self.leader(within).await?;
            if leader == id {
                return Ok(());
            }
            self.kill(leader);
            let other = Awaited::NewLeader { old: leader };
            wait::wait_leader_where(self, other, within, |l| l != leader).await?;
            self.spawn(leader)?;
        }
        Err(Error::Wait(WaitTimeout {
            awaited: Awaited::LeaderIs(id),
            within: start.elapsed(),
            last_seen: format!("another leader after {TRIES} elections"),
        }))
    }

    /// Waits until every running node answers with the same applied index and ledger digest;
    /// returns that digest.
    pub async fn wait_converged(&self, within: Duration) -> Result<Digest, WaitTimeout> {
        wait::wait_converged(self, within).await
    }
}

/// Node `id`'s place in the lists (ids start at 1).
fn index(id: u64) -> usize {
    (id as usize).wrapping_sub(1)
}

impl Observe for ProcessCluster {
    fn members(&self) -> usize {
        self.children.len()
    }

    fn every(&self, awaited: &Awaited) -> Duration {
        match awaited {
            Awaited::Convergence => Duration::from_millis(200),
            _ => Duration::from_millis(100),
        }
    }

    async fn statuses(&self) -> Vec<Option<NodeStatus>> {
        let mut statuses = Vec::new();
        for id in 1..=self.config.nodes {
            // A killed node cannot answer: no need to wait out the probe's timeout.
            let status = match self.is_running(id) {
                true => self.status(id).await,
                false => None,
            };
            statuses.push(status);
        }
        statuses
    }

    async fn digests(&self) -> Vec<Option<Digest>> {
        let mut digests = Vec::new();
        for id in (1..=self.config.nodes).filter(|id| self.is_running(*id)) {
            digests.push(self.digest(id).await);
        }
        digests
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for id in 1..=self.config.nodes {
            // A stopped process cannot die until it is continued.
            let _ = self.signal(id, "CONT");
            self.kill(id);
        }
    }
}
