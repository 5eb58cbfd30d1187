//! The baselines' drivers stay behind the `baselines` feature (issue 9): Redis and PostgreSQL
//! clients are optional dependencies that only that feature enables, so
//! `cargo build -p loadtests --no-default-features` compiles neither. Checked on the manifest;
//! that the code builds without the feature is `cargo build -p loadtests --no-default-features`.

/// The baselines' own dependencies.
const BASELINE_DEPS: &[&str] = &["redis", "tokio-postgres", "futures-util"];

fn manifest() -> toml::Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let text = std::fs::read_to_string(path).expect("reads Cargo.toml");
    text.parse().expect("Cargo.toml is TOML")
}

/// The features that name `dep:<name>`.
fn enabling(m: &toml::Table, name: &str) -> Vec<String> {
    let want = format!("dep:{name}");
    let features = m.get("features").and_then(toml::Value::as_table);
    features
        .into_iter()
        .flatten()
        .filter(|(_, list)| {
            list.as_array()
                .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(want.as_str())))
        })
        .map(|(feature, _)| feature.clone())
        .collect()
}

#[test]
fn baseline_drivers_are_optional_and_only_the_baselines_feature_enables_them() {
    let m = manifest();
    let deps = m
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .expect("[dependencies]");
    for name in BASELINE_DEPS {
        let optional = deps
            .get(*name)
            .and_then(|d| d.get("optional"))
            .and_then(toml::Value::as_bool);
        assert_eq!(optional, Some(true), "{name} must be optional");
        assert_eq!(enabling(&m, name), ["baselines"], "{name}");
    }
}

#[test]
fn the_baselines_are_on_by_default() {
    // `cargo test --workspace` and the README's commands run the baselines as before.
    let m = manifest();
    let default = m
        .get("features")
        .and_then(|f| f.get("default"))
        .and_then(toml::Value::as_array)
        .expect("a default feature list");
    assert!(default.iter().any(|v| v.as_str() == Some("baselines")));
}
