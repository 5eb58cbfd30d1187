//! Every scenario case (../shared/cases and tests/cases) against a live 3-node cluster through
//! the client. `advance` moves the cluster's shared clock instead of sleeping, so `advance 1h`
//! takes no time; the leader's deadline ticks and as-of reads see the new time at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stockctl::case::run_case;
use stockctl::cluster_target::{options_for, ClusterTarget};
use testkit::Cluster;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn case_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in stockctl::case::case_dirs(&workspace()) {
        let found =
            stockctl::case::case_files(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(!found.is_empty(), "no cases in {}", dir.display());
        files.extend(found);
    }
    files
}

#[test]
fn every_case_passes_against_a_three_node_cluster() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = runtime
        .block_on(Cluster::replicated(3))
        .expect("cluster starts");
    let mut target = ClusterTarget::connect(
        cluster
            .client_config(cluster.addrs())
            .expect("CA certificate"),
    )
    .expect("client connects");
    let clock = cluster.clock();
    target.on_advance(Box::new(move |ms| {
        clock.advance(ms);
        Ok(())
    }));
    let files = case_files();
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).expect("readable case");
        let report = run_case(&name, &text, &mut target, &options_for(&name));
        if report.failure.is_some() {
            failures.push(report.to_string());
        }
    }
    drop(target);
    let digest = runtime
        .block_on(cluster.wait_converged(Duration::from_secs(10)))
        .expect("replicas converge");
    assert_eq!(digest.digest.len(), 64);
    runtime.block_on(cluster.shutdown());
    assert!(
        files.len() >= 28,
        "expected at least 28 case files, found {}",
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
