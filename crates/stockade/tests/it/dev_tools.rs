//! The test tools are not production code: a production build
//! (`cargo build --release --no-default-features`) links no marketplace simulator.
//! `cargo tree` resolves the dependency graph from Cargo.lock without compiling, so this
//! runs in the ordinary `cargo test` at no build cost.

use std::process::Command;

/// The names of the crates `stockade` links (normal dependencies only) with `features`.
fn linked_crates(features: &[&str]) -> Vec<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--manifest-path",
            manifest,
            "-p",
            "stockade",
        ])
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
        .args(features)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_production_build_links_no_simulator() {
    let prod = linked_crates(&["--no-default-features"]);
    // The tree was read (the production code is all there)…
    for needed in ["stockade-server", "stockade-sync", "stockade-access"] {
        assert!(
            prod.iter().any(|c| c == needed),
            "{needed} missing: {prod:?}"
        );
    }
    // …and holds no simulator, directly or through another crate.
    assert!(
        !prod.iter().any(|c| c == "stockade-sandbox"),
        "the production build links stockade-sandbox"
    );
    // The default (dev) build does: the check above can see it when it is there.
    let dev = linked_crates(&[]);
    assert!(dev.iter().any(|c| c == "stockade-sandbox"), "{dev:?}");
}
