//! The crate's dependency rule (issue 9): retail depends on the engine and plain data helpers
//! only, so the planner never pulls in the server, the client, a runtime or a database
//! driver. Checked on the manifest, as `cargo tree -p retail -e normal` would show it.

use std::collections::BTreeSet;

/// What `[dependencies]` may name.
const ALLOWED: &[&str] = &["engine", "serde", "csv", "flate2"];
/// What `[dev-dependencies]` may name (tests serialise summaries and read this manifest).
const ALLOWED_DEV: &[&str] = &["serde_json", "toml"];

fn manifest() -> toml::Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let text = std::fs::read_to_string(path).expect("reads Cargo.toml");
    text.parse().expect("Cargo.toml is TOML")
}

/// The names a dependency table lists (empty when absent).
fn names(table: Option<&toml::Value>) -> BTreeSet<String> {
    table
        .and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// Names in `found` that `allowed` does not list.
fn extra(found: &BTreeSet<String>, allowed: &[&str]) -> Vec<String> {
    found
        .iter()
        .filter(|n| !allowed.contains(&n.as_str()))
        .cloned()
        .collect()
}

#[test]
fn retail_depends_only_on_the_engine_and_data_helpers() {
    let m = manifest();
    let deps = names(m.get("dependencies"));
    assert!(deps.contains("engine"), "{deps:?}");
    assert_eq!(extra(&deps, ALLOWED), Vec::<String>::new());
    assert_eq!(
        extra(&names(m.get("dev-dependencies")), ALLOWED_DEV),
        Vec::<String>::new()
    );
    // Other tables that would add dependencies behind the lists above.
    assert!(
        m.get("build-dependencies").is_none(),
        "no build script deps"
    );
    assert!(m.get("target").is_none(), "no per-target dependencies");
}

#[test]
fn the_check_rejects_a_forbidden_dependency() {
    // The check above must be able to fail: a manifest naming the client is caught.
    let m: toml::Table = "[dependencies]\nengine = \"1\"\nclient = \"1\"\n"
        .parse()
        .expect("TOML");
    assert_eq!(
        extra(&names(m.get("dependencies")), ALLOWED),
        vec!["client"]
    );
}
