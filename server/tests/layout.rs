//! The server's layout rule (ARCHITECTURE.md): openraft is used only under `src/raft/`, so the
//! rest of the node speaks stockd's words and an openraft upgrade stays in one folder.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("server/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of `source` that name an openraft item (`openraft::...` or `use openraft`) outside a
/// string literal; a log filter such as `"openraft=warn"` or a log target such as
/// `"openraft::core"` names a log source, not an openraft item.
fn openraft_uses(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|line| {
            let code = without_string_literals(line);
            code.contains("openraft::") || code.trim_start().starts_with("use openraft")
        })
        .map(str::to_owned)
        .collect()
}

/// `line` with the text between each pair of double quotes removed (escaped quotes and raw
/// strings' `#`s are rare enough in this crate not to matter for a layout check).
fn without_string_literals(line: &str) -> String {
    line.split('"').step_by(2).collect::<Vec<_>>().join("\"\"")
}

#[test]
fn openraft_only_in_raft() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let raft = src.join("raft");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 5,
        "found too few sources in {}",
        src.display()
    );
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&raft)) {
        let source = std::fs::read_to_string(file).expect("source is readable");
        for line in openraft_uses(&source) {
            offenders.push(format!("{}: {}", file.display(), line.trim()));
        }
    }
    assert!(
        offenders.is_empty(),
        "openraft outside src/raft:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_check_sees_uses() {
    assert_eq!(
        openraft_uses("let x = openraft::Config::default();").len(),
        1
    );
    assert_eq!(openraft_uses("use openraft::ServerState;").len(), 1);
    assert!(openraft_uses(r#"filter("info,openraft=warn")"#).is_empty());
    assert!(openraft_uses(r#"enabled!(target: "openraft::core", Level::DEBUG)"#).is_empty());
    assert_eq!(
        openraft_uses(r#"let x: openraft::Config = parse("a");"#).len(),
        1
    );
}
