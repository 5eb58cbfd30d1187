//! # Test harness
//!
//! [`TestCluster`] runs real stockd nodes in this process, on free loopback ports, with their
//! data in a fresh temporary directory: real Raft, real QUIC with TLS, real disks. Tests talk to
//! it through the real client. Everything stops at the end of the test (the directory is removed
//! when the cluster is dropped), so nothing outlives a test.
//!
//! The project's own scenario cases live in `tests/cases/*.case`; they run against the engine
//! (client crate's tests) and against a live cluster (`tests/it/cases.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig};
use pki::Trust;
use protocol::{NodeAddr, Role};
use server::clock::Clock;
use server::node::{Node, NodeConfig, RaftTimings};
use server::raft::log_store::Durability;

/// Raft timings for tests: fast elections, so failover tests take a second, not ten.
pub fn fast_timings() -> RaftTimings {
    RaftTimings {
        heartbeat_ms: 50,
        election_min_ms: 250,
        election_max_ms: 500,
        ..RaftTimings::default()
    }
}

/// A cluster of in-process nodes on loopback.
pub struct TestCluster {
    root: PathBuf,
    nodes: Vec<Option<Node>>,
    addrs: Vec<SocketAddr>,
    clock: Arc<Clock>,
    durability: Durability,
    timings: RaftTimings,
}

/// A fresh, unique temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("stockd-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

impl TestCluster {
    /// Starts `n` nodes, initialises the cluster from node 1 and waits for a leader.
    pub async fn start(n: u64, durability: Durability) -> TestCluster {
        TestCluster::start_with(n, durability, fast_timings()).await
    }

    /// [`TestCluster::start`] in the default `replicated` durability (50 ms flush interval).
    pub async fn replicated(n: u64) -> TestCluster {
        TestCluster::start(
            n,
            Durability::Replicated {
                flush_interval_ms: 50,
            },
        )
        .await
    }

    /// [`TestCluster::start`] with other Raft timings.
    pub async fn start_with(n: u64, durability: Durability, timings: RaftTimings) -> TestCluster {
        let mut cluster = TestCluster {
            root: temp_dir("cluster"),
            nodes: Vec::new(),
            addrs: Vec::new(),
            clock: Arc::new(Clock::default()),
            durability,
            timings,
        };
        for id in 1..=n {
            let node = Node::start(cluster.config(id, SocketAddr::from(([127, 0, 0, 1], 0))))
                .await
                .expect("node starts");
            cluster.addrs.push(node.local_addr());
            cluster.nodes.push(Some(node));
        }
        let members = cluster.members();
        cluster
            .node(1)
            .initialize(&members)
            .await
            .expect("cluster initialises");
        cluster.wait_leader(Duration::from_secs(10)).await;
        cluster
    }

    fn config(&self, id: u64, listen: SocketAddr) -> NodeConfig {
        let dir = self.root.join(format!("n{id}"));
        NodeConfig {
            id,
            listen,
            advertise: None,
            data_dir: dir.clone(),
            durability: self.durability,
            tls_dir: Some(dir),
            ca_dir: Some(self.root.clone()),
            initial_members: Vec::new(),
            timings: self.timings,
            clock: self.clock.clone(),
        }
    }

    /// Every node's id and address.
    pub fn members(&self) -> Vec<NodeAddr> {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| NodeAddr {
                id: i as u64 + 1,
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
        self.addrs[id as usize - 1].to_string()
    }

    /// The shared clock (move it forward to expire holds without sleeping).
    pub fn clock(&self) -> Arc<Clock> {
        self.clock.clone()
    }

    /// The cluster CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// A client configuration trusting the cluster CA and presenting its admin identity,
    /// seeded with `nodes`.
    pub fn client_config(&self, nodes: Vec<String>) -> ClientConfig {
        ClientConfig::admin_of(nodes, &self.root).expect("CA and admin identity")
    }

    /// The directory of the cluster CA (where `stockd certs --client` would write).
    pub fn ca_dir(&self) -> PathBuf {
        self.root.clone()
    }

    /// A client of the whole cluster.
    pub async fn client(&self) -> Client {
        Client::connect(self.client_config(self.addrs()))
            .await
            .expect("client connects")
    }

    /// A running node.
    pub fn node(&self, id: u64) -> &Node {
        self.nodes[id as usize - 1]
            .as_ref()
            .expect("node is running")
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64)
            .filter(|id| self.nodes[*id as usize - 1].is_some())
            .collect()
    }

    /// Waits until a running, non-isolated node leads with a majority of running nodes agreeing;
    /// returns its id. Panics after `timeout`.
    pub async fn wait_leader(&self, timeout: Duration) -> u64 {
        let start = Instant::now();
        loop {
            let connected: Vec<u64> = self
                .running()
                .into_iter()
                .filter(|id| !self.node(*id).faults().is_isolated())
                .collect();
            let statuses: Vec<_> = connected.iter().map(|id| self.node(*id).status()).collect();
            for s in &statuses {
                if s.role == Role::Leader && s.ready {
                    let agree = statuses
                        .iter()
                        .filter(|o| o.leader.as_ref().map(|l| l.id) == Some(s.node.id))
                        .count();
                    if agree * 2 > self.nodes.len() {
                        return s.node.id;
                    }
                }
            }
            assert!(
                start.elapsed() < timeout,
                "no leader within {timeout:?}: {statuses:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops node `id` (its directory stays, for a restart).
    pub async fn kill(&mut self, id: u64) {
        let node = self.nodes[id as usize - 1].take().expect("node is running");
        node.shutdown().await;
    }

    /// Restarts node `id` on its old address from its data directory.
    pub async fn restart(&mut self, id: u64) {
        assert!(
            self.nodes[id as usize - 1].is_none(),
            "node {id} is running"
        );
        let listen = self.addrs[id as usize - 1];
        let start = Instant::now();
        let node = loop {
            match Node::start(self.config(id, listen)).await {
                Ok(node) => break node,
                // The old socket may take a moment to be released.
                Err(e) if start.elapsed() < Duration::from_secs(5) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = e;
                }
                Err(e) => panic!("node {id} restarts: {e}"),
            }
        };
        self.nodes[id as usize - 1] = Some(node);
    }

    /// Cuts node `id` off from its peers (or heals it).
    pub fn isolate(&self, id: u64, isolated: bool) {
        self.node(id).faults().set_isolated(isolated);
    }

    /// Waits until every running node has applied the same index with the same ledger digest;
    /// returns the digest. Panics after `timeout`.
    pub async fn wait_converged(&self, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let digests: Vec<server::node::LedgerDigest> = self
                .running()
                .iter()
                .map(|id| self.node(*id).digest())
                .collect();
            if digests.windows(2).all(|w| w[0] == w[1]) {
                return digests[0].digest.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "replicas did not converge within {timeout:?}: {digests:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every node and removes the data.
    pub async fn shutdown(mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            node.shutdown().await;
        }
    }

    /// The root data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts one more node (the next id), uninitialised like `stockd --join`: it serves
    /// clients but belongs to no cluster until `add-node` adds it. Returns its id.
    pub async fn start_joining(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let node = Node::start(self.config(id, SocketAddr::from(([127, 0, 0, 1], 0))))
            .await
            .expect("node starts");
        self.addrs.push(node.local_addr());
        self.nodes.push(Some(node));
        id
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A bare QUIC connection speaking the client protocol without the client library's retries:
/// for tests that must see exactly what one node answers, or send malformed bytes.
pub struct RawConnection {
    /// The connection.
    pub connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawConnection {
    /// Connects to `addr` trusting the CA in `ca_path` and presenting the admin identity
    /// beside it.
    pub async fn connect(addr: &str, ca_path: &Path) -> RawConnection {
        let ca = pki::load_certs(ca_path).expect("CA certificate");
        let dir = ca_path.parent().expect("CA directory");
        let identity = pki::load_client_identity(&dir.join("admin.pem"), &dir.join("admin.key"))
            .expect("admin identity");
        let config =
            pki::client_config_with(&Trust::Ca(ca), Some(&identity)).expect("client config");
        let mut endpoint =
            quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("endpoint");
        endpoint.set_default_client_config(config);
        let addr: SocketAddr = addr.parse().expect("socket address");
        let connection = endpoint
            .connect(addr, pki::SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake");
        RawConnection {
            connection,
            _endpoint: endpoint,
        }
    }

    /// Sends one frame of `ops` on a new stream and returns the node's first message.
    pub async fn call(&self, ops: Vec<protocol::Op>, timeout: Duration) -> protocol::ServerMessage {
        let frame = protocol::encode(&protocol::ClientFrame { id: 1, ops }).expect("encode");
        self.send_bytes(&frame, timeout).await.expect("a reply")
    }

    /// Sends raw bytes on a new stream (then finishes it) and returns the node's first message,
    /// `None` if the stream ends without one.
    pub async fn send_bytes(
        &self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Option<protocol::ServerMessage> {
        let (mut send, mut recv) = self.connection.open_bi().await.expect("open stream");
        protocol::write_frame(&mut send, bytes)
            .await
            .expect("write");
        let _ = send.finish();
        let reply = tokio::time::timeout(timeout, protocol::read_frame(&mut recv))
            .await
            .expect("reply in time");
        reply
            .expect("readable reply")
            .map(|frame| protocol::parse(&frame).expect("decodable reply"))
    }
}

/// The definition of a plain warehouse `id` (every channel, no pickup, no coordinates).
pub fn warehouse(id: &str) -> engine::Command {
    engine::Command::DefineLocation(engine::LocationDef {
        location: engine::LocationId::from(id),
        kind: engine::LocationKind::Warehouse,
        pickup: false,
        coordinates: None,
        channels: None,
    })
}

/// A count: on_hand of `sku` at `location` := `qty`.
pub fn count(sku: &str, location: &str, qty: i64) -> engine::Command {
    engine::Command::SetOnHand {
        sku: engine::SkuId::from(sku),
        location: engine::LocationId::from(location),
        qty,
        reason: engine::Reason::from("count"),
        expected: None,
    }
}

/// This process's resident memory (`VmRSS` of `/proc/self/status`), bytes; `None` where that
/// file does not exist (not Linux). The nodes of a [`TestCluster`] live in this process.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
