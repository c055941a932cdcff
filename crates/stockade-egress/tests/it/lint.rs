//! The gateway is the only outbound HTTP client: no other crate may depend on an HTTP
//! client library (except as a dev-dependency, to call our own server in tests) or use
//! one from its sources.

use std::path::{Path, PathBuf};

const CLIENTS: &[&str] = &[
    "reqwest",
    "hyper",
    "hyper-util",
    "ureq",
    "isahc",
    "surf",
    "curl",
];
const SOURCE_PATTERNS: &[&str] = &["reqwest::", "hyper::client"];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The dependency tables that end up in the built library or binary.
fn runtime_dependency_tables(manifest: &toml::Table) -> Vec<(String, &toml::Table)> {
    let mut tables = Vec::new();
    for key in ["dependencies", "build-dependencies"] {
        if let Some(t) = manifest.get(key).and_then(|v| v.as_table()) {
            tables.push((key.to_owned(), t));
        }
    }
    if let Some(targets) = manifest.get("target").and_then(|v| v.as_table()) {
        for (cfg, t) in targets {
            for key in ["dependencies", "build-dependencies"] {
                if let Some(d) = t.get(key).and_then(|v| v.as_table()) {
                    tables.push((format!("target.{cfg}.{key}"), d));
                }
            }
        }
    }
    tables
}

/// A dependency's real package name (`foo = { package = "reqwest" }` counts as reqwest).
fn package_name<'a>(key: &'a str, spec: &'a toml::Value) -> &'a str {
    spec.get("package").and_then(|p| p.as_str()).unwrap_or(key)
}

#[test]
fn only_the_gateway_depends_on_an_http_client() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(crates_dir()).unwrap().flatten() {
        let manifest_path = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest_path) else {
            continue;
        };
        let manifest: toml::Table = text.parse().unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_owned();
        checked += 1;
        if name == "stockade-egress" {
            continue;
        }
        for (section, deps) in runtime_dependency_tables(&manifest) {
            for (key, spec) in deps {
                let pkg = package_name(key, spec);
                if CLIENTS.contains(&pkg) {
                    problems.push(format!("{name}: [{section}] has {pkg}"));
                }
            }
        }
        let mut files = Vec::new();
        rs_files(&entry.path().join("src"), &mut files);
        for f in files {
            let src = std::fs::read_to_string(&f).unwrap();
            for pat in SOURCE_PATTERNS {
                if src.contains(pat) {
                    problems.push(format!("{name}: {} uses {pat}", f.display()));
                }
            }
        }
    }
    assert!(checked >= 5, "found only {checked} crates");
    assert!(
        problems.is_empty(),
        "outbound HTTP must go through stockade-egress:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_lint_recognises_a_client_dependency() {
    let manifest: toml::Table = r#"
        [package]
        name = "x"
        [dependencies]
        http-client = { package = "reqwest", version = "0.13" }
        [target.'cfg(unix)'.dependencies]
        ureq = "2"
        [dev-dependencies]
        hyper = "1"
    "#
    .parse()
    .unwrap();
    let found: Vec<&str> = runtime_dependency_tables(&manifest)
        .into_iter()
        .flat_map(|(_, t)| t.iter().map(|(k, v)| package_name(k, v)))
        .filter(|p| CLIENTS.contains(p))
        .collect();
    assert_eq!(found, vec!["reqwest", "ureq"]);
}
