//! The client library's dependency rule (ARCHITECTURE.md): it does not depend on clap or
//! serde_json, which belong to `stockctl` (client/stockctl). Every library user would compile
//! them otherwise.

/// Dependencies the library must not have.
const FORBIDDEN: &[&str] = &["clap", "serde_json"];

/// The names in a manifest's dependency table (a crate renamed with `package = ...` counts
/// under its real name too).
fn names(table: Option<&toml::Value>) -> Vec<String> {
    let Some(table) = table.and_then(toml::Value::as_table) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for (name, spec) in table {
        names.push(name.clone());
        if let Some(package) = spec.get("package").and_then(toml::Value::as_str) {
            names.push(package.to_owned());
        }
    }
    names
}

/// The forbidden names among a manifest's normal dependencies (also target-specific ones).
fn forbidden_in(manifest: &str) -> Vec<String> {
    let manifest: toml::Table = manifest.parse().expect("Cargo.toml parses");
    let mut found = names(manifest.get("dependencies"));
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for target in targets.values() {
            found.extend(names(target.get("dependencies")));
        }
    }
    found.retain(|name| FORBIDDEN.contains(&name.as_str()));
    found
}

#[test]
fn the_client_library_depends_on_neither_clap_nor_serde_json() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let manifest = std::fs::read_to_string(path).expect("client/Cargo.toml");
    assert_eq!(forbidden_in(&manifest), Vec::<String>::new(), "{path}");
}

#[test]
fn the_check_sees_forbidden_dependencies_in_every_form() {
    let direct = "[dependencies]\nclap.workspace = true\nengine.workspace = true\n";
    assert_eq!(forbidden_in(direct), ["clap"]);
    let renamed = "[dependencies]\njson = { package = \"serde_json\", version = \"1\" }\n";
    assert_eq!(forbidden_in(renamed), ["serde_json"]);
    let target = "[target.'cfg(unix)'.dependencies]\nserde_json = \"1\"\n";
    assert_eq!(forbidden_in(target), ["serde_json"]);
    let dev_only = "[dev-dependencies]\nserde_json = \"1\"\n";
    assert!(
        forbidden_in(dev_only).is_empty(),
        "dev-dependencies are not the library's"
    );
}
