//! Runs every scenario case — the shared ones in `../shared/cases` and the project's own in
//! `tests/cases` — against an in-process engine, and checks `stockctl case` itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use stockctl::case::{run_case, EngineTarget, RunOptions};

/// The workspace root: this crate is client/stockctl.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The shared cases' directory.
fn shared_cases() -> PathBuf {
    stockctl::case::case_dirs(&workspace())[0].clone()
}

fn case_files(dir: &Path) -> Vec<PathBuf> {
    stockctl::case::case_files(dir)
        .unwrap_or_else(|e| panic!("cannot read case directory {}: {e}", dir.display()))
}

fn run_dir(dir: &Path) -> (usize, Vec<String>) {
    let files = case_files(dir);
    let failures = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("readable case");
            let name = f
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            run_case(
                &name,
                &text,
                &mut EngineTarget::default(),
                &RunOptions::default(),
            )
        })
        .filter(|r| r.failure.is_some())
        .map(|r| r.to_string())
        .collect();
    (files.len(), failures)
}

#[test]
fn shared_cases_pass_against_the_engine() {
    let (count, failures) = run_dir(&shared_cases());
    assert!(count >= 18, "expected the 18 shared cases, found {count}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn project_cases_pass_against_the_engine() {
    let (count, failures) = run_dir(&workspace().join("tests/cases"));
    assert!(count >= 10, "expected the project's cases, found {count}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn stockctl_case_prints_one_line_per_case_and_fails_on_failure() {
    let dir = std::env::temp_dir().join(format!("stockctl-case-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.case");
    let bad = dir.join("bad.case");
    std::fs::write(
        &good,
        "location wh1 warehouse\nset_on_hand A@wh1 3\nexpect A@wh1 available=3\n",
    )
    .expect("write");
    std::fs::write(
        &bad,
        "location wh1 warehouse\nset_on_hand A@wh1 3\nexpect A@wh1 available=2\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_stockctl"))
        .arg("case")
        .arg(&good)
        .arg(&bad)
        .output()
        .expect("run stockctl");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "PASS good\nFAIL bad: line 3: expected available=2, got available=3\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn stockctl_exits_quietly_when_its_reader_goes_away() {
    // `stockctl ... | head -1`: printing to a closed pipe must end quietly, as SIGPIPE would.
    let files: Vec<PathBuf> = case_files(&shared_cases())
        .into_iter()
        .cycle()
        .take(200)
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockctl"))
        .arg("case")
        .args(&files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run stockctl");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
