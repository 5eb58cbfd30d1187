//! A [`Cluster`] on a runtime thread of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use client::ClientConfig;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{Cluster, ClusterConfig};
use crate::error::Error;
use crate::wait::{Digest, WaitTimeout};

/// A [`Cluster`] whose nodes run on a runtime owned by a thread of its own: for callers that
/// are not async (the load generator's CLI), or whose own runtime must be measured apart from
/// the cluster's. Stops, and removes its directory, when stopped or dropped.
pub struct BackgroundCluster {
    addrs: Vec<String>,
    http_urls: Vec<String>,
    ca_path: PathBuf,
    root: PathBuf,
    handle: tokio::runtime::Handle,
    /// Closing this channel tells the thread to stop the cluster.
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the cluster's thread is asked to do.
enum Request {
    Converge {
        within: Duration,
        reply: oneshot::Sender<Result<Digest, WaitTimeout>>,
    },
}

/// What the thread reports once the cluster has a leader.
struct Started {
    addrs: Vec<String>,
    http_urls: Vec<String>,
    ca_path: PathBuf,
    root: PathBuf,
}

impl BackgroundCluster {
    /// Starts a [`Cluster`] configured by `config` on `runtime`, driven by a new thread, and
    /// returns once it has a leader (or failed to get one).
    pub fn start(
        runtime: tokio::runtime::Runtime,
        config: ClusterConfig,
    ) -> Result<BackgroundCluster, Error> {
        let handle = runtime.handle().clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Started, Error>>();
        let (requests, requests_rx) = mpsc::channel::<Request>(4);
        let thread = std::thread::Builder::new()
            .name("stockd-cluster".to_owned())
            .spawn(move || runtime.block_on(serve(config, ready_tx, requests_rx)))
            .map_err(Error::Runtime)?;
        // A thread that ends without a word panicked while starting.
        let started = ready_rx.recv().unwrap_or(Err(Error::Stopped));
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok(BackgroundCluster {
            addrs: started.addrs,
            http_urls: started.http_urls,
            ca_path: started.ca_path,
            root: started.root,
            handle,
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// Node addresses, `host:port`.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Every node's HTTP base URL (`http://127.0.0.1:PORT`), by node id: every node of a
    /// [`Cluster`] serves HTTP.
    pub fn http_urls(&self) -> &[String] {
        &self.http_urls
    }

    /// The cluster CA certificate file.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cluster runtime's handle (to inspect or spawn on it).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// A client configuration trusting this cluster's CA, seeded with every node.
    pub fn client_config(&self) -> Result<ClientConfig, Error> {
        crate::fixtures::admin_config(self.addrs.clone(), &self.ca_path)
    }

    /// Waits until every node has applied the same index with the same digest
    /// ([`Cluster::wait_converged`], run on the cluster's thread).
    pub async fn wait_converged(&self, within: Duration) -> Result<Digest, Error> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(Error::Stopped)?;
        requests
            .send(Request::Converge { within, reply })
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(answer.await.map_err(|_| Error::Stopped)??)
    }

    /// Stops every node and removes the data directory.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundCluster {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The cluster thread's life: start, report, answer requests until the channel closes, stop.
async fn serve(
    config: ClusterConfig,
    ready: std::sync::mpsc::Sender<Result<Started, Error>>,
    mut requests: mpsc::Receiver<Request>,
) {
    let cluster = match Cluster::start(config).await {
        Ok(cluster) => cluster,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let started = Started {
        addrs: cluster.addrs(),
        http_urls: cluster
            .running()
            .into_iter()
            .map(|id| cluster.http_url(id))
            .collect(),
        ca_path: cluster.ca_path(),
        root: cluster.root().to_owned(),
    };
    if ready.send(Ok(started)).is_ok() {
        while let Some(request) = requests.recv().await {
            match request {
                Request::Converge { within, reply } => {
                    let _ = reply.send(cluster.wait_converged(within).await);
                }
            }
        }
    }
    cluster.shutdown().await;
}
