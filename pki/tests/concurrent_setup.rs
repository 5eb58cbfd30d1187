//! Nodes started at once on one CA directory (three `stockd` processes with the same
//! `--ca-dir`, as the load tester and the process tests start them) each create the shared
//! files if missing: the CA, the administrator's certificate and its bearer token. None of them
//! may see another's file half written, nor fail because another got there first, and all
//! must end with the same files.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};

/// Starters racing on one directory per round.
const STARTERS: usize = 6;
/// Rounds, each on a fresh directory (the race is short).
const ROUNDS: usize = 15;

fn fresh_dir(name: &str, round: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stockd-pki-race-{name}-{}-{round}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `start` on `STARTERS` threads released together; returns their results.
fn race<T: Send + 'static>(
    start: impl Fn(usize) -> Result<T, pki::TlsError> + Send + Sync + 'static,
) -> Vec<Result<T, pki::TlsError>> {
    let barrier = Arc::new(Barrier::new(STARTERS));
    let start = Arc::new(start);
    let threads: Vec<_> = (0..STARTERS)
        .map(|i| {
            let (barrier, start) = (barrier.clone(), start.clone());
            std::thread::spawn(move || {
                barrier.wait();
                start(i)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("starter thread"))
        .collect()
}

#[test]
fn nodes_started_at_once_share_one_ca_and_each_gets_a_certificate() {
    for round in 0..ROUNDS {
        let dir = fresh_dir("ca", round);
        let ca = dir.join("ca");
        let nodes = dir.clone();
        let results = race(move |i| {
            pki::ensure_ca(&ca)?;
            pki::ensure_node(&ca, &nodes.join(format!("n{i}")), &[])
        });
        for result in results {
            result.expect("every starter succeeds");
        }
        let ca_pem = std::fs::read_to_string(dir.join("ca/ca.pem")).expect("ca.pem");
        for i in 0..STARTERS {
            let node = dir.join(format!("n{i}"));
            pki::load_identity(&node).expect("node identity loads");
            let chain = std::fs::read_to_string(node.join("node.pem")).expect("node.pem");
            assert!(chain.ends_with(&ca_pem), "node {i} is signed by the one CA");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn nodes_started_at_once_read_one_admin_identity_and_one_admin_token() {
    for round in 0..ROUNDS {
        let dir = fresh_dir("admin", round);
        pki::ensure_ca(&dir).expect("CA");
        let ca = dir.clone();
        let results = race(move |_| {
            pki::ensure_admin(&ca)?;
            pki::ensure_admin_token(&ca).map(|(_, token)| token)
        });
        let tokens: Vec<_> = results
            .into_iter()
            .map(|r| r.expect("every starter succeeds"))
            .collect();
        assert!(
            tokens.iter().all(|t| *t == tokens[0]),
            "every starter holds the token in the file"
        );
        let (_, on_disk) = pki::ensure_admin_token(&dir).expect("token file");
        assert_eq!(on_disk, tokens[0]);
        pki::load_client_identity(&dir.join("admin.pem"), &dir.join("admin.key"))
            .expect("admin identity loads");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn an_admin_key_left_without_its_certificate_is_replaced() {
    let dir = fresh_dir("half-admin", 0);
    pki::ensure_ca(&dir).expect("CA");
    std::fs::write(
        dir.join("admin.key"),
        "what a crash between two writes leaves",
    )
    .expect("key");
    pki::ensure_admin(&dir).expect("the admin identity is issued again");
    pki::load_client_identity(&dir.join("admin.pem"), &dir.join("admin.key"))
        .expect("admin identity loads");
    let _ = std::fs::remove_dir_all(&dir);
}
