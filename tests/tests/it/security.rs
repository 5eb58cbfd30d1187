//! Who may do what, on a live cluster (SPEC section 7): each role allowed exactly what it may,
//! revocation on an open connection, expiry, swapped node and client certificates, another
//! CA's certificate and no identity at all refused, and the author of every write in the feed.

use std::time::Duration;

use client::{Client, ClientConfig, ClientError};
use engine::query::Query;
use engine::{Command, ReservationId};
use pki::{ClientCertRequest, ClientRole, Trust};
use protocol::{Consistency, Op, OpResult, ServerError, ServerMessage};
use testkit::{Cluster as TestCluster, RawConnection, RawError};

/// A client of `cluster` presenting a new identity of `role` with this scope.
async fn client_as(
    cluster: &TestCluster,
    name: &str,
    role: ClientRole,
    scope: (&[&str], &[&str]),
) -> (Client, pki::Principal) {
    let (identity, principal) = issue(cluster, name, role, scope);
    let config =
        quick(cluster.client_config(cluster.addrs()).expect("config")).with_identity(identity);
    let client = Client::connect(config).await.expect("connects");
    (client, principal)
}

/// A new client identity of `role` with this scope, issued by `cluster`'s CA (valid 2 days).
fn issue(
    cluster: &TestCluster,
    name: &str,
    role: ClientRole,
    scope: (&[&str], &[&str]),
) -> (pki::Identity, pki::Principal) {
    let request = ClientCertRequest {
        name: name.to_owned(),
        role,
        channels: scope.0.iter().map(|s| (*s).to_owned()).collect(),
        locations: scope.1.iter().map(|s| (*s).to_owned()).collect(),
        days: 2,
    };
    let dir = cluster.root().join("clients");
    let issued = pki::issue_client(&cluster.ca_dir(), &dir, &request).expect("issued");
    let identity = pki::load_client_identity(&issued.cert, &issued.key).expect("identity");
    (identity, issued.principal)
}

/// Refusals are final, but a failed dial is retried: keep the calls short.
fn quick(mut config: ClientConfig) -> ClientConfig {
    config.deadline_ms = 5_000;
    config
}

fn reserve(id: &str, channel: &str, at: &str) -> Command {
    testkit::hold(id, channel, "A", at, 1, 60_000)
}

fn store(id: &str) -> Command {
    let mut define = testkit::warehouse(id);
    if let Command::DefineLocation(def) = &mut define {
        def.kind = engine::LocationKind::Store;
    }
    define
}

/// Whether a write went through (any outcome of the ledger) or was `forbidden`.
async fn allowed(client: &Client, command: Command) -> bool {
    match client.write(command).await {
        Ok(_) => true,
        Err(ClientError::Server(ServerError::Forbidden { .. })) => false,
        Err(other) => panic!("neither an outcome nor forbidden: {other}"),
    }
}

/// Connects with `config` and reads the status: how a refused identity shows to a client
/// (the refusal may come at the handshake or on the first request).
async fn status_as(config: ClientConfig) -> Result<(), ClientError> {
    let client = Client::connect(config).await?;
    client
        .read(Query::Status, Consistency::Local)
        .await
        .map(|_| ())
}

fn forbidden<T: std::fmt::Debug>(result: &Result<T, ClientError>) -> bool {
    matches!(
        result,
        Err(ClientError::Server(ServerError::Forbidden { .. }))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_does_what_it_may_and_nothing_else() {
    let cluster = TestCluster::replicated(3).await.expect("cluster starts");
    let admin = cluster.client().await.expect("client connects");
    for command in [
        store("store-1"),
        store("store-2"),
        testkit::count("A", "store-1", 50),
    ] {
        admin
            .write(command)
            .await
            .expect("admin setup")
            .outcome
            .expect("ok");
    }
    admin
        .write(testkit::count("A", "store-2", 50))
        .await
        .expect("count")
        .outcome
        .expect("ok");

    let (web, _) = client_as(&cluster, "web", ClientRole::Checkout, (&["web"], &[])).await;
    assert!(allowed(&web, reserve("w1", "web", "store-1")).await);
    assert!(
        !allowed(&web, reserve("w2", "pos", "store-1")).await,
        "checkout for web on pos"
    );
    assert!(
        !allowed(&web, testkit::count("A", "store-1", 1)).await,
        "checkout counting stock"
    );
    let release = Command::Release {
        reservation: ReservationId::from("w1"),
    };
    assert!(allowed(&web, release).await, "its own channel's hold");

    let (tablet, _) = client_as(&cluster, "tablet-1", ClientRole::Store, (&[], &["store-1"])).await;
    assert!(allowed(&tablet, testkit::count("A", "store-1", 40)).await);
    assert!(
        !allowed(&tablet, testkit::count("A", "store-2", 40)).await,
        "store-1 at store-2"
    );
    assert!(allowed(&tablet, reserve("p1", "pos", "store-1")).await);
    assert!(
        !allowed(&tablet, reserve("p2", "web", "store-1")).await,
        "store on web"
    );
    admin
        .write(reserve("p3", "pos", "store-2"))
        .await
        .expect("admin hold")
        .outcome
        .expect("ok");
    let release = Command::Release {
        reservation: ReservationId::from("p3"),
    };
    assert!(!allowed(&tablet, release).await, "another store's hold");

    let (reader, _) = client_as(&cluster, "dash", ClientRole::Reader, (&[], &[])).await;
    assert!(!allowed(&reader, testkit::count("A", "store-1", 1)).await);
    let read = reader.read(Query::Status, Consistency::Linearizable).await;
    assert!(read.is_ok(), "a reader reads: {read:?}");
    assert!(
        forbidden(&reader.remove_node(3).await),
        "a reader removing a node"
    );

    let (ops, _) = client_as(&cluster, "ops-1", ClientRole::Ops, (&[], &[])).await;
    assert!(allowed(&ops, testkit::count("A", "store-2", 45)).await);
    assert!(
        forbidden(&ops.remove_node(3).await),
        "membership is the admin's"
    );

    // The audit trail names who made each change.
    let page = admin
        .read(
            Query::Changes {
                since: 0,
                max: 1_000,
            },
            Consistency::Linearizable,
        )
        .await
        .expect("changes");
    let Ok(engine::Answer::Changes(page)) = page.answer else {
        panic!("a changes page");
    };
    let authors: std::collections::BTreeSet<String> = page
        .events
        .iter()
        .filter_map(|e| e.author.as_ref().map(|a| format!("{}/{}", a.name, a.role)))
        .collect();
    for who in ["admin/admin", "web/checkout", "tablet-1/store", "ops-1/ops"] {
        assert!(authors.contains(who), "{who} missing from {authors:?}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_credentials_are_refused_on_open_connections() {
    let cluster = TestCluster::replicated(3).await.expect("cluster starts");
    let admin = cluster.client().await.expect("client connects");
    admin
        .write(testkit::warehouse("wh"))
        .await
        .expect("define")
        .outcome
        .expect("ok");
    let (ops, principal) = client_as(&cluster, "ops-2", ClientRole::Ops, (&[], &[])).await;
    assert!(allowed(&ops, testkit::count("A", "wh", 5)).await);

    let revoke = Command::RevokeCredential {
        credential: principal.credential_id.clone(),
        until_ms: principal.expires_at_ms,
    };
    assert!(
        !allowed(&ops, revoke.clone()).await,
        "credentials are the admin's"
    );
    admin
        .write(revoke)
        .await
        .expect("revoke")
        .outcome
        .expect("ok");
    // Every node applied it once the write is acknowledged and applied there: within a
    // second, the open connection is refused whichever node it reaches.
    let started = std::time::Instant::now();
    while allowed(&ops, testkit::count("A", "wh", 6)).await {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "revocation took over a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read = ops.read(Query::Status, Consistency::Local).await;
    assert!(
        forbidden(&read),
        "a revoked credential reads nothing either"
    );

    let (late, _) = client_as(&cluster, "late", ClientRole::Reader, (&[], &[])).await;
    assert!(late.read(Query::Status, Consistency::Local).await.is_ok());
    cluster.clock().advance(3 * 86_400_000);
    let read = late.read(Query::Status, Consistency::Local).await;
    assert!(
        forbidden(&read),
        "an expired credential on an open connection"
    );
    cluster.shutdown().await;
}

/// How long a test waits for a node to close a connection before it fails: a bound on a
/// broken test, not a measure (a node closes it as soon as it has applied the revocation).
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The close code and reason of `conn`, once its node closed it.
async fn closed_by_node(conn: &quinn::Connection) -> (u32, String) {
    match tokio::time::timeout(CLOSE_WAIT, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => (
            u32::try_from(u64::from(close.error_code)).expect("a u32 code"),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("not closed by the node: {other:?}"),
    }
}

/// A raw connection to node `id` presenting `identity`, and that it is served.
async fn served_raw(cluster: &TestCluster, id: u64, identity: &pki::Identity) -> RawConnection {
    let addr = cluster.addr(id);
    let raw = RawConnection::connect_as(&addr, &cluster.ca_path(), identity)
        .await
        .expect("connects");
    match raw.call(vec![Op::Status], CLOSE_WAIT).await {
        Ok(ServerMessage::Reply { results, .. }) => {
            assert!(matches!(results[..], [OpResult::Status(_)]), "{results:?}");
        }
        other => panic!("status on node {id}: {other:?}"),
    }
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_of_a_revoked_or_expired_credential_are_closed() {
    let cluster = TestCluster::replicated(3).await.expect("cluster starts");
    let admin = cluster.client().await.expect("client connects");
    let (identity, principal) = issue(&cluster, "tablet-9", ClientRole::Reader, (&[], &[]));
    let mut open = Vec::new();
    for id in 1..=3 {
        open.push(served_raw(&cluster, id, &identity).await);
    }
    let revoke = Command::RevokeCredential {
        credential: principal.credential_id.clone(),
        until_ms: principal.expires_at_ms,
    };
    admin
        .write(revoke)
        .await
        .expect("revoke")
        .outcome
        .expect("ok");
    // Every node closes its own connection once it applied the revocation.
    let revoked = format!("credential revoked: tablet-9 ({})", principal.credential_id);
    for raw in &open {
        let (code, reason) = closed_by_node(&raw.connection).await;
        assert_eq!(code, protocol::CLOSE_IDENTITY_REFUSED);
        assert_eq!(reason, revoked);
    }
    // A new connection with the same identity is closed as soon as it is served.
    match RawConnection::connect_as(&cluster.addr(2), &cluster.ca_path(), &identity).await {
        Ok(raw) => assert_eq!(
            closed_by_node(&raw.connection).await,
            (protocol::CLOSE_IDENTITY_REFUSED, revoked.clone())
        ),
        Err(RawError::Connection(quinn::ConnectionError::ApplicationClosed(close))) => {
            assert_eq!(close.reason.as_ref(), revoked.as_bytes())
        }
        Err(other) => panic!("a new connection of a revoked credential: {other}"),
    }
    // The client library, which redials transparently, reports it as final: `forbidden`.
    let config = quick(cluster.client_config(cluster.addrs()).expect("config"))
        .with_identity(identity.clone());
    let refused = status_as(config).await;
    match refused {
        Err(ClientError::Server(ServerError::Forbidden { message })) => {
            assert!(message.contains("revoked"), "{message}");
        }
        other => panic!("a revoked credential through the client library: {other:?}"),
    }

    // Expiry: the node's clock passes the end of validity of an open connection's certificate.
    let (identity, _) = issue(&cluster, "tablet-10", ClientRole::Reader, (&[], &[]));
    let raw = served_raw(&cluster, 1, &identity).await;
    cluster.clock().advance(3 * 86_400_000);
    assert_eq!(
        closed_by_node(&raw.connection).await,
        (
            protocol::CLOSE_IDENTITY_REFUSED,
            "credential expired: tablet-10".to_owned()
        )
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_identities_are_refused_with_a_reason() {
    let cluster = TestCluster::replicated(1).await.expect("cluster starts");
    let ca = pki::load_certs(&cluster.ca_path()).expect("CA");

    // No certificate.
    let anonymous = ClientConfig::new(cluster.addrs(), Trust::Ca(ca.clone()));
    let refused = status_as(quick(anonymous)).await;
    assert!(forbidden(&refused), "no identity: {refused:?}");

    // A node's certificate on the client protocol.
    let node = pki::load_identity(&cluster.root().join("n1")).expect("node identity");
    let as_node =
        quick(ClientConfig::new(cluster.addrs(), Trust::Ca(ca.clone()))).with_identity(node);
    let refused = status_as(as_node).await;
    assert!(forbidden(&refused), "a node certificate as a client");

    // A client certificate from another CA.
    let other = std::env::temp_dir().join(format!("stockd-other-ca-{}", std::process::id()));
    pki::ensure_ca(&other).expect("other CA");
    pki::ensure_admin(&other).expect("other admin");
    let stranger = pki::load_client_identity(&other.join("admin.pem"), &other.join("admin.key"))
        .expect("stranger");
    let config = quick(ClientConfig::new(cluster.addrs(), Trust::Ca(ca))).with_identity(stranger);
    let refused = status_as(config).await;
    match refused {
        Err(ClientError::Server(ServerError::Forbidden { message })) => {
            assert!(message.contains("not from the cluster's CA"), "{message}");
        }
        other => panic!("another CA's certificate: {other:?}"),
    }
    std::fs::remove_dir_all(&other).ok();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_never_a_node() {
    let cluster = TestCluster::replicated(1).await.expect("cluster starts");
    let ca = pki::load_certs(&cluster.ca_path()).expect("CA");
    let admin = pki::load_client_identity(
        &cluster.ca_dir().join("admin.pem"),
        &cluster.ca_dir().join("admin.key"),
    )
    .expect("admin");
    let peer = pki::peer_client_config(&admin, &ca).expect("peer config");
    let mut endpoint =
        quinn::Endpoint::client(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).expect("endpoint");
    endpoint.set_default_client_config(peer);
    let addr: std::net::SocketAddr = cluster.addr(1).parse().expect("addr");
    let outcome = async {
        let conn = endpoint.connect(addr, pki::SERVER_NAME).ok()?.await.ok()?;
        Some(conn.closed().await)
    };
    let closed = tokio::time::timeout(Duration::from_secs(5), outcome).await;
    match closed {
        Ok(Some(quinn::ConnectionError::ApplicationClosed(close))) => {
            assert_eq!(close.error_code, protocol::CLOSE_IDENTITY_REFUSED.into());
        }
        // The server may also refuse it in the handshake.
        Ok(None) => {}
        other => panic!("a client certificate on the peer protocol: {other:?}"),
    }
    cluster.shutdown().await;
}
