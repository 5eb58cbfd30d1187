//! Real stockd nodes in this process, on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use client::{Client, ClientConfig};
use protocol::{NodeAddr, NodeStatus};
use server::clock::Clock;
use server::node::{Node, NodeConfig, RaftTimings};
use server::raft::log_store::Durability;
use tokio::runtime::RuntimeFlavor;

use crate::error::Error;
use crate::temp::TempDir;
use crate::wait::{self, Awaited, Digest, Observe, WaitTimeout};

/// Raft timings for tests: fast elections, so failover tests take a second, not ten.
pub fn fast_timings() -> RaftTimings {
    RaftTimings {
        heartbeat_ms: 50,
        election_min_ms: 250,
        election_max_ms: 500,
        ..RaftTimings::default()
    }
}

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Nodes, with ids `1..=nodes`.
    pub nodes: u64,
    /// Log durability of every node.
    pub durability: Durability,
    /// Raft timings of every node.
    pub timings: RaftTimings,
    /// The data directory (emptied first, removed at the end); a fresh one under the system's
    /// temporary directory when `None`.
    pub dir: Option<PathBuf>,
    /// How long [`Cluster::start`] waits for the first leader.
    pub leader_within: Duration,
    /// Every node's memory budget, MiB (`NodeConfig::memory_limit_mib`). The nodes share
    /// this process's memory, so the default is `Some(0)`, none.
    pub memory_limit_mib: Option<u64>,
}

impl ClusterConfig {
    /// `nodes` nodes, `replicated` durability flushing every 50 ms, [`fast_timings`], a fresh
    /// directory, 10 s for the first leader.
    pub fn new(nodes: u64) -> ClusterConfig {
        ClusterConfig {
            nodes,
            durability: Durability::Replicated {
                flush_interval_ms: 50,
            },
            timings: fast_timings(),
            dir: None,
            leader_within: Duration::from_secs(10),
            memory_limit_mib: Some(0),
        }
    }
}

/// A cluster of in-process nodes on loopback: real Raft, real QUIC with TLS, real disks, one
/// shared [`Clock`]. Node `id` is at index `id - 1` of every list.
///
/// Dropping it stops the nodes still running (on the runtime they run on, since stopping is
/// asynchronous) and then removes the directory; [`Cluster::shutdown`] does both at once.
pub struct Cluster {
    dir: Option<TempDir>,
    nodes: Vec<Option<Node>>,
    addrs: Vec<SocketAddr>,
    clock: Arc<Clock>,
    config: ClusterConfig,
    runtime: tokio::runtime::Handle,
}

const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl Cluster {
    /// Starts the nodes, initialises the cluster from node 1 and waits for a leader. Must be
    /// called on the tokio runtime the nodes are to run on.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, Error> {
        let dir = match &config.dir {
            Some(path) => TempDir::at(path.clone())?,
            None => TempDir::new("cluster")?,
        };
        let mut cluster = Cluster {
            dir: Some(dir),
            nodes: Vec::new(),
            addrs: Vec::new(),
            clock: Arc::new(Clock::default()),
            runtime: tokio::runtime::Handle::current(),
            config,
        };
        match cluster.form().await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.shutdown().await;
                Err(e)
            }
        }
    }

    /// [`Cluster::start`] with [`ClusterConfig::new`]`(nodes)`.
    pub async fn replicated(nodes: u64) -> Result<Cluster, Error> {
        Cluster::start(ClusterConfig::new(nodes)).await
    }

    async fn form(&mut self) -> Result<(), Error> {
        for _ in 0..self.config.nodes {
            self.start_joining().await?;
        }
        let members = self.members();
        self.node(1)
            .initialize(&members)
            .await
            .map_err(Error::Initialise)?;
        self.wait_leader(self.config.leader_within).await?;
        Ok(())
    }

    fn node_config(&self, id: u64, listen: SocketAddr) -> NodeConfig {
        let dir = self.root().join(format!("n{id}"));
        NodeConfig {
            id,
            listen,
            advertise: None,
            data_dir: dir.clone(),
            durability: self.config.durability,
            tls_dir: Some(dir),
            ca_dir: Some(self.root().to_owned()),
            initial_members: Vec::new(),
            timings: self.config.timings,
            clock: self.clock.clone(),
            // Every node serves HTTP on a free port (`Cluster::http_addr`).
            http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            memory_limit_mib: self.config.memory_limit_mib,
        }
    }

    /// Every node's id and address, running or not.
    pub fn members(&self) -> Vec<NodeAddr> {
        (1..)
            .zip(&self.addrs)
            .map(|(id, a)| NodeAddr {
                id,
                addr: a.to_string(),
            })
            .collect()
    }

    /// Node addresses, `host:port`.
    pub fn addrs(&self) -> Vec<String> {
        self.addrs.iter().map(SocketAddr::to_string).collect()
    }

    /// The address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.addrs[index(id)].to_string()
    }

    /// The shared clock (move it forward to expire holds without sleeping).
    pub fn clock(&self) -> Arc<Clock> {
        self.clock.clone()
    }

    /// The root data directory (node `id`'s data is in `n<id>`).
    pub fn root(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), TempDir::path)
    }

    /// The cluster CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.root().join("ca.pem")
    }

    /// A client configuration trusting the cluster CA and presenting its admin identity,
    /// seeded with `nodes`.
    pub fn client_config(&self, nodes: Vec<String>) -> Result<ClientConfig, Error> {
        crate::fixtures::admin_config(nodes, &self.ca_path())
    }

    /// The HTTP base URL of node `id` (`http://127.0.0.1:PORT`), which must be running.
    pub fn http_url(&self, id: u64) -> String {
        match self.node(id).http_addr() {
            Some(addr) => format!("http://{addr}"),
            None => panic!("node {id} serves no HTTP"),
        }
    }

    /// The administrator's bearer token written next to the CA (its grant reaches the
    /// ledger once a leader proposed it: wait for a token-protected route to answer).
    pub fn admin_token(&self) -> Result<String, Error> {
        let dir = self.ca_dir();
        let (_, token) =
            pki::ensure_admin_token(&dir).map_err(|source| Error::Ca { path: dir, source })?;
        Ok(token.text())
    }

    /// Waits up to `within` until every running node holds the admin token
    /// ([`Cluster::admin_token`]); returns it. The leader writes its grant on its own, once
    /// ready (`server::http::identity`): a test that counts the cluster's writes waits for it
    /// first, or counts that write among its own at a time it cannot know.
    pub async fn wait_admin_token(&self, within: Duration) -> Result<String, Error> {
        let dir = self.ca_dir();
        let (_, token) =
            pki::ensure_admin_token(&dir).map_err(|source| Error::Ca { path: dir, source })?;
        let awaited = Awaited::AdminToken;
        let every = self.every(&awaited);
        let missing = || -> Vec<u64> {
            let running = self.running().into_iter();
            running
                .filter(|id| !self.node(*id).holds_token(&token.id))
                .collect()
        };
        wait::poll(awaited, within, every, || {
            let without = missing();
            std::future::ready(if without.is_empty() {
                Ok(())
            } else {
                Err(without)
            })
        })
        .await?;
        Ok(token.text())
    }

    /// The directory of the cluster CA (where `stockd certs --client` writes identities).
    pub fn ca_dir(&self) -> PathBuf {
        self.root().to_owned()
    }

    /// A client of the whole cluster.
    pub async fn client(&self) -> Result<Client, Error> {
        Ok(Client::connect(self.client_config(self.addrs())?).await?)
    }

    /// Node `id`, which must be running (a test asking for a stopped node is wrong).
    ///
    /// # Panics
    /// If node `id` is stopped or does not exist.
    pub fn node(&self, id: u64) -> &Node {
        match self.nodes.get(index(id)) {
            Some(Some(node)) => node,
            _ => panic!("node {id} is not running"),
        }
    }

    /// The value of the unlabelled series `name` (a gauge or counter) in node `id`'s
    /// `/metrics` text, if it exposes one. Panics like [`Cluster::node`], or if the text does
    /// not parse.
    pub fn metric(&self, id: u64, name: &str) -> Option<f64> {
        self.metric_with(id, name, &[])
    }

    /// The value of series `name` with (at least) the labels `labels` in node `id`'s
    /// `/metrics` text, as [`Cluster::metric`].
    pub fn metric_with(&self, id: u64, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.node(id).metrics().render();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("the metrics text parses");
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        (1..)
            .zip(&self.nodes)
            .filter_map(|(id, n)| n.as_ref().map(|_| id))
            .collect()
    }

    /// Waits until a running node that is not cut off leads with a majority of all members
    /// naming it ([`crate::leader_of`]); returns its id.
    pub async fn wait_leader(&self, within: Duration) -> Result<u64, WaitTimeout> {
        wait::wait_leader_where(self, Awaited::Leader, within, |_| true).await
    }

    /// Waits until every running node has applied the same index with the same ledger digest
    /// ([`crate::agreed`]); returns that digest.
    pub async fn wait_converged(&self, within: Duration) -> Result<Digest, WaitTimeout> {
        wait::wait_converged(self, within).await
    }

    /// Waits up to `within` until running node `id`'s status satisfies `ok` (`what` says what
    /// that means, for the timeout); returns that status.
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
        wait::poll(awaited, within, every, || {
            let status = self.node(id).status();
            std::future::ready(if ok(&status) { Ok(status) } else { Err(status) })
        })
        .await
    }

    /// Stops node `id`; its directory and address stay, for [`Cluster::restart`].
    pub async fn kill(&mut self, id: u64) -> Result<(), Error> {
        let node = self.nodes.get_mut(index(id)).and_then(Option::take);
        node.ok_or(Error::NotRunning(id))?.shutdown().await;
        Ok(())
    }

    /// Restarts stopped node `id` on its old address from its data directory, retrying for up
    /// to 5 s while the old socket is released.
    pub async fn restart(&mut self, id: u64) -> Result<(), Error> {
        if self.nodes.get(index(id)).is_none_or(Option::is_some) {
            return Err(Error::Running(id));
        }
        let config = self.node_config(id, self.addrs[index(id)]);
        let every = Duration::from_millis(100);
        let node = wait::poll(Awaited::Restart(id), Duration::from_secs(5), every, || {
            Node::start(config.clone())
        })
        .await?;
        self.nodes[index(id)] = Some(node);
        Ok(())
    }

    /// Cuts node `id` off from its peers, or heals it: Raft messages to and from it fail,
    /// clients still reach it.
    pub fn isolate(&self, id: u64, isolated: bool) {
        self.node(id).faults().set_isolated(isolated);
    }

    /// Starts one more node (the next id) on a free port, uninitialised like `stockd --join`:
    /// it serves clients but belongs to no cluster until `add-node` adds it. Returns its id.
    pub async fn start_joining(&mut self) -> Result<u64, Error> {
        let id = self.nodes.len() as u64 + 1;
        let node = Node::start(self.node_config(id, ANY_PORT))
            .await
            .map_err(|source| Error::Start { id, source })?;
        self.addrs.push(node.local_addr());
        self.nodes.push(Some(node));
        Ok(id)
    }

    /// Stops every node and waits until their ports are free again (see [`ports_released`]),
    /// then removes the data.
    pub async fn shutdown(mut self) {
        let mut stopped = Vec::new();
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            stopped.push(node.local_addr());
            node.shutdown().await;
        }
        ports_released(&stopped).await;
    }
}

/// How long [`ports_released`] waits for a stopped node's port.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Waits, at most [`PORT_RELEASE_WAIT`], until every address in `addrs` can be bound again. A
/// node's UDP socket belongs to quinn's endpoint driver, a task that closes it on the runtime
/// just after the node's last endpoint handle goes, so it can still be open for a moment when
/// `Node::shutdown` returns (on a busy host, long enough for a test's check to see it). A port
/// still bound after the wait is left for the caller's checks to report.
async fn ports_released(addrs: &[SocketAddr]) {
    let free = |a: &SocketAddr| std::net::UdpSocket::bind(a).is_ok();
    let deadline = tokio::time::Instant::now() + PORT_RELEASE_WAIT;
    while !addrs.iter().all(free) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Node `id`'s place in the lists (ids start at 1).
fn index(id: u64) -> usize {
    (id as usize).wrapping_sub(1)
}

impl Observe for Cluster {
    fn members(&self) -> usize {
        self.nodes.len()
    }

    fn every(&self, awaited: &Awaited) -> Duration {
        match awaited {
            Awaited::Convergence => Duration::from_millis(50),
            _ => Duration::from_millis(20),
        }
    }

    async fn statuses(&self) -> Vec<Option<NodeStatus>> {
        let connected = |n: &Node| (!n.faults().is_isolated()).then(|| n.status());
        self.nodes
            .iter()
            .map(|n| n.as_ref().and_then(connected))
            .collect()
    }

    async fn digests(&self) -> Vec<Option<Digest>> {
        let running = self.nodes.iter().flatten();
        running.map(|n| Some(Digest::from(n.digest()))).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let nodes: Vec<Node> = self.nodes.iter_mut().filter_map(Option::take).collect();
        let dir = self.dir.take();
        if nodes.is_empty() {
            return;
        }
        let stop = async move {
            let addrs: Vec<SocketAddr> = nodes.iter().map(Node::local_addr).collect();
            for node in nodes {
                node.shutdown().await;
            }
            ports_released(&addrs).await;
            // Only now: nodes still running would write into a directory being removed.
            drop(dir);
        };
        // Stopping is asynchronous and Drop is not. On a multi-thread runtime (every cluster
        // test's, where a failing test drops its cluster) this thread may block while the
        // workers stop the nodes. Elsewhere the nodes stop on their own runtime in the
        // background; if that runtime is ending, tokio drops the task instead, which drops
        // the nodes' last handles and then the directory.
        match tokio::runtime::Handle::try_current() {
            Ok(here) if here.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| here.block_on(stop));
            }
            _ => {
                self.runtime.spawn(stop);
            }
        }
    }
}
