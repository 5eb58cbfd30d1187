//! Cluster membership answers the truth promptly (issue 7, item 5). Found by the break-it
//! passes: `add-node` of an unreachable address made it a voter at once (losing one of the
//! three original nodes then stopped every write); later it hung 30 s, failed, and left the
//! node in the membership; two `add-node` attempts racing (a client retrying a slow one)
//! printed an error although the node became a voter; a removed node kept answering `local`
//! reads from its frozen ledger; a client with a dead node first in its list waited the whole
//! connect timeout on it.

use std::time::{Duration, Instant};

use client::Client;
use engine::Query;
use protocol::{
    Consistency, MemberState, NodeAddr, NodeStatus, Op, OpResult, Role, ServerError, ServerMessage,
};
use testkit::Cluster;

/// What `add-node` may take on the node (`protocol::ADMIN_REPLY_MS_MAX`) plus room for a
/// loaded machine; before the fix it took 30 s.
const ADD_NODE_ANSWER_MS_MAX: u64 = 8_000;

fn voters(cluster: &Cluster, id: u64) -> Vec<u64> {
    let status = cluster.node(id).status();
    let mut voters: Vec<u64> = status
        .membership
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node.id)
        .collect();
    voters.sort_unstable();
    voters
}

fn members(status: &NodeStatus) -> Vec<(u64, bool)> {
    status
        .membership
        .iter()
        .map(|m| (m.node.id, m.voter))
        .collect()
}

/// `add-node` through `client`, checking that it answers in time.
async fn add_node(client: &Client, cluster: &Cluster, id: u64, addr: &str) -> MemberState {
    let started = Instant::now();
    let node = NodeAddr {
        id,
        addr: addr.to_owned(),
    };
    let state = client.add_node(node).await.expect("add-node answers");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(ADD_NODE_ANSWER_MS_MAX),
        "add-node took {took:?}: {state:?}"
    );
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    println!("add-node {id}: {state:?} after {took:?}; members {:?}", {
        members(&cluster.node(leader).status())
    });
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_node_where_nothing_answers_adds_nothing_and_says_so_at_once() {
    let mut cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    // A port with a socket that never answers (a stopped machine).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let state = add_node(&client, &cluster, 9, &addr).await;
    let MemberState::NotAdded { reason } = state else {
        panic!("not added: {state:?}");
    };
    assert!(reason.contains("nothing answered"), "{reason}");
    for id in 1..=3 {
        let status = cluster.node(id).status();
        assert_eq!(members(&status).len(), 3, "node {id}: {status:?}");
        assert_eq!(voters(&cluster, id), vec![1, 2, 3]);
    }
    // Losing one of the three voters still leaves a majority.
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let other = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.kill(other).await.expect("node stops");
    let written = client
        .write(testkit::warehouse("wh"))
        .await
        .expect("a write");
    written.outcome.expect("ok");
    client.close();
    cluster.shutdown().await;
}

/// A learner's three states, each as the membership shows it: catching up (it answers its
/// status but no replication: isolated), unreachable (stopped), then a voter once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_node_reports_the_learner_state_and_promotes_it_once_caught_up() {
    let mut cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    client
        .write(testkit::warehouse("wh"))
        .await
        .expect("write")
        .outcome
        .expect("ok");
    let id = cluster.start_joining().await.expect("node starts");
    let addr = cluster.addr(id);
    cluster.isolate(id, true);
    let state = add_node(&client, &cluster, id, &addr).await;
    assert!(
        matches!(
            state,
            MemberState::CatchingUp {
                matched_index: None,
                ..
            }
        ),
        "{state:?}"
    );
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let status = cluster.node(leader).status();
    assert!(
        members(&status).contains(&(id, false)),
        "a learner: {status:?}"
    );
    assert_eq!(voters(&cluster, leader), vec![1, 2, 3]);

    cluster.kill(id).await.expect("node stops");
    let state = add_node(&client, &cluster, id, &addr).await;
    assert_eq!(state, MemberState::Unreachable);
    let status = cluster.node(leader).status();
    assert!(
        members(&status).contains(&(id, false)),
        "a learner: {status:?}"
    );

    cluster.restart(id).await.expect("node restarts");
    let started = Instant::now();
    loop {
        let state = add_node(&client, &cluster, id, &addr).await;
        if state == MemberState::Voter {
            break;
        }
        assert!(matches!(state, MemberState::CatchingUp { .. }), "{state:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "not promoted");
    }
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    assert_eq!(voters(&cluster, leader), vec![1, 2, 3, id]);
    // Adding a voter again changes nothing and says so.
    assert_eq!(
        add_node(&client, &cluster, id, &addr).await,
        MemberState::Voter
    );
    cluster
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("replicas converge");
    client.close();
    cluster.shutdown().await;
}

/// Two `add-node` calls at once (an operator's retry, or a client retrying a slow attempt):
/// both answer the truth, neither fails a change that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_add_node_calls_never_fail_a_successful_add() {
    let mut cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let id = cluster.start_joining().await.expect("node starts");
    let node = NodeAddr {
        id,
        addr: cluster.addr(id),
    };
    cluster.isolate(id, true);
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (client, node) = (client.clone(), node.clone());
            tokio::spawn(async move { client.add_node(node).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    cluster.isolate(id, false);
    for call in calls {
        let state = call.await.expect("task").expect("add-node answers");
        assert!(
            matches!(state, MemberState::Voter | MemberState::CatchingUp { .. }),
            "{state:?}"
        );
    }
    let state = add_node(&client, &cluster, id, &node.addr).await;
    assert_eq!(state, MemberState::Voter);
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    assert_eq!(voters(&cluster, leader), vec![1, 2, 3, id]);
    client.close();
    cluster.shutdown().await;
}

fn local_read() -> Op {
    Op::Read {
        query: Query::Status,
        consistency: Consistency::Local,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_refuses_client_requests_and_says_so() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let leader = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    let victim = (1..=3).find(|i| *i != leader).expect("a follower");
    client.remove_node(victim).await.expect("removed");
    let raw = testkit::RawConnection::connect(&cluster.addr(victim), &cluster.ca_path())
        .await
        .expect("raw connection");
    let started = Instant::now();
    let members = loop {
        let reply = raw
            .call(vec![local_read()], Duration::from_secs(5))
            .await
            .expect("a reply");
        let ServerMessage::Reply { mut results, .. } = reply else {
            panic!("{reply:?}");
        };
        match results.pop() {
            Some(OpResult::Failed(ServerError::Removed { members })) => break members,
            Some(OpResult::Read { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still serving reads {:?} after the removal",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("refused reads {:?} after the removal", started.elapsed());
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    assert!(!ids.contains(&victim) && ids.len() == 2, "{ids:?}");
    let status = cluster.node(victim).status();
    assert_eq!((status.role, status.ready), (Role::Removed, false));
    // Its campaigns (Raft never told it) do not disturb the others.
    let term = cluster.node(leader).status().term;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cluster.node(leader).status();
    assert_eq!((after.role, after.term), (Role::Leader, term), "{after:?}");
    // A client that knows only the removed node goes to the members it names, and drops it.
    let client = Client::connect(
        cluster
            .client_config(vec![cluster.addr(victim)])
            .expect("CA certificate"),
    )
    .await
    .expect("connects");
    let read = client
        .read(Query::Status, Consistency::Local)
        .await
        .expect("a read elsewhere");
    assert!(read.answer.is_ok());
    let mut others: Vec<String> = (1..=3)
        .filter(|i| *i != victim)
        .map(|i| cluster.addr(i))
        .collect();
    others.sort();
    let mut known = client.nodes();
    known.sort();
    assert_eq!(known, others);
    client.close();
    cluster.shutdown().await;
}

/// A dead node first in a client's list: the client does not wait on it and does not dial
/// it again for every call (counted). Before: `connect` waited its whole connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_first_in_the_list_is_dialed_once_and_never_waited_for() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = silent.local_addr().expect("addr").to_string();
    let mut nodes = vec![dead.clone()];
    nodes.extend(cluster.addrs());
    let mut config = cluster.client_config(nodes).expect("CA certificate");
    config.timeout_ms = 20_000;
    config.connect_timeout_ms = 20_000;
    let started = Instant::now();
    let client = Client::connect(config).await.expect("connects");
    for i in 0..20 {
        let command = testkit::count("A", "wh", i);
        if i == 0 {
            client
                .write(testkit::warehouse("wh"))
                .await
                .expect("write")
                .outcome
                .expect("ok");
        }
        client
            .write(command)
            .await
            .expect("write")
            .outcome
            .expect("ok");
        client
            .read(Query::Status, Consistency::Local)
            .await
            .expect("read");
    }
    let took = started.elapsed();
    println!(
        "20 writes and reads: {took:?}, dials to the dead node: {}",
        { client.dial_attempts(&dead) }
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(client.dial_attempts(&dead), 1);
    client.close();
    cluster.shutdown().await;
}

/// The leader removing itself: the others elect a leader and go on; the old leader learns of
/// its removal from its own log and refuses clients; no node's campaigning disturbs the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_leader_steps_aside_and_the_cluster_goes_on() {
    let cluster = Cluster::replicated(3).await.expect("cluster starts");
    let client = cluster.client().await.expect("client connects");
    let old = cluster
        .wait_leader(Duration::from_secs(5))
        .await
        .expect("a leader");
    client.remove_node(old).await.expect("removed");
    let started = Instant::now();
    let (new, term) = loop {
        let leaders: Vec<NodeStatus> = (1..=3)
            .filter(|id| *id != old)
            .map(|id| cluster.node(id).status())
            .filter(|s| s.role == Role::Leader)
            .collect();
        if let Some(s) = leaders.first() {
            break (s.node.id, s.term);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let written = client
        .write(testkit::warehouse("wh"))
        .await
        .expect("a write");
    written.outcome.expect("ok");
    while cluster.node(old).status().role != Role::Removed {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            cluster.node(old).status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let raw = testkit::RawConnection::connect(&cluster.addr(old), &cluster.ca_path())
        .await
        .expect("raw connection");
    let reply = raw
        .call(vec![local_read()], Duration::from_secs(5))
        .await
        .expect("a reply");
    assert!(
        matches!(&reply, ServerMessage::Reply { results, .. }
            if matches!(results[0], OpResult::Failed(ServerError::Removed { .. }))),
        "{reply:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cluster.node(new).status();
    println!(
        "leader {new} term {term} -> {} ({:?})",
        after.term, after.role
    );
    assert_eq!((after.role, after.term), (Role::Leader, term), "{after:?}");
    client.close();
    cluster.shutdown().await;
}
