//! `stockade workflow new --from-example NAME [--out FILE]` and `--list`: start a workflow
//! from the library in `examples/workflows/`. The examples are compiled into the binary
//! (`include_str!`), so the command works from any directory and on a machine without
//! the source tree. Reads and writes files only; opens no database.
//!
//! Invariants: an existing file is never overwritten — the file is created with
//! `create_new`, so a refusal (the file exists, an unknown example) writes nothing. What
//! to fill in is derived from the example itself (its connections, hosts, credentials
//! and alert channels), so the list cannot drift from the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use stockade_workflows::Workflow;

use crate::exit::Failure;

/// The library: name and text, in the order `--list` shows them.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "hourly-order-pull",
        include_str!("../../../../examples/workflows/hourly-order-pull.yaml"),
    ),
    (
        "low-stock-feishu",
        include_str!("../../../../examples/workflows/low-stock-feishu.yaml"),
    ),
    (
        "daily-sales-summary",
        include_str!("../../../../examples/workflows/daily-sales-summary.yaml"),
    ),
    (
        "nightly-reconciliation",
        include_str!("../../../../examples/workflows/nightly-reconciliation.yaml"),
    ),
    (
        "error-escalation",
        include_str!("../../../../examples/workflows/error-escalation.yaml"),
    ),
    (
        "token-expiry-reminder",
        include_str!("../../../../examples/workflows/token-expiry-reminder.yaml"),
    ),
    (
        "nocodb-order-mirror",
        include_str!("../../../../examples/workflows/nocodb-order-mirror.yaml"),
    ),
    (
        "low-stock-alert",
        include_str!("../../../../examples/workflows/low-stock-alert.yaml"),
    ),
    (
        "order-created-note",
        include_str!("../../../../examples/workflows/order-created-note.yaml"),
    ),
    (
        "supplier-reorder",
        include_str!("../../../../examples/workflows/supplier-reorder.yaml"),
    ),
    (
        "supplier-stock-webhook",
        include_str!("../../../../examples/workflows/supplier-stock-webhook.yaml"),
    ),
];

/// The example named `name`.
pub fn find(name: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn description(text: &str) -> String {
    Workflow::parse(text)
        .ok()
        .and_then(|w| w.description)
        .unwrap_or_default()
}

/// `--list`, or the answer to an unknown name (on standard error).
fn list(out: &mut dyn Write) -> std::io::Result<()> {
    let width = EXAMPLES.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, text) in EXAMPLES {
        writeln!(out, "{name:width$}  {}", description(text))?;
    }
    Ok(())
}

/// What to fill in before applying `text` (written to `file`), one line each.
pub fn fill_in(text: &str) -> Vec<String> {
    let Ok(w) = Workflow::parse(text) else {
        return Vec::new();
    };
    let names = |v: &[stockade_workflows::yaml::Located<String>]| {
        v.iter()
            .map(|l| l.value.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p = &w.permissions;
    let mut out = Vec::new();
    if !p.connections.is_empty() {
        out.push(format!(
            "connections: {} — your connection names (`stockade connection list`), everywhere they appear",
            names(&p.connections)
        ));
    }
    for c in &p.credentials {
        out.push(format!(
            "credential {0}: store it with `stockade credential set {0} --workflow {1} --host HOST --secret-stdin`",
            c.value, w.name.value
        ));
    }
    if !p.hosts.is_empty() {
        out.push(format!(
            "hosts: {} — your service's host, in the URLs and in permissions.hosts",
            names(&p.hosts)
        ));
    }
    let mut channels: Vec<String> = stockade_workflows::exec::named_channels(&w)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    channels.sort();
    channels.dedup();
    for c in channels {
        out.push(format!(
            "alert channel {c}: an [[alerts.channel]] named {c} in stockade.toml (or rename it here)"
        ));
    }
    out
}

/// Run `workflow new`.
pub fn run(from_example: Option<&str>, out: Option<&Path>, list_only: bool) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write to standard output: {e}"));
    if list_only {
        return list(&mut std::io::stdout().lock()).map_err(io);
    }
    let Some(name) = from_example else {
        return Err(Failure::usage(
            "name an example with --from-example NAME, or --list",
        ));
    };
    let Some(text) = find(name) else {
        eprintln!("the examples are:");
        let _ = list(&mut std::io::stderr().lock());
        return Err(Failure::usage(format!(
            "no example named {name:?}; nothing was written"
        )));
    };
    let file: PathBuf =
        out.map_or_else(|| PathBuf::from(format!("{name}.yaml")), Path::to_path_buf);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file);
    let mut f = match created {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::usage(format!(
                "{} exists; nothing was written (choose another --out)",
                file.display()
            )));
        }
        Err(e) => {
            return Err(Failure::runtime(format!(
                "cannot create {}: {e}; nothing was written",
                file.display()
            )));
        }
    };
    let body = text.replacen(
        "$schema=../../docs/workflow.schema.json",
        "$schema=workflow.schema.json",
        1,
    );
    if let Err(e) = f.write_all(body.as_bytes()).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(&file);
        return Err(Failure::runtime(format!(
            "cannot write {}: {e}; nothing was kept",
            file.display()
        )));
    }
    let shown = file.display();
    println!("wrote {shown} from example {name}");
    let todo = fill_in(text);
    if !todo.is_empty() {
        println!("\nfill in before applying:");
        for t in todo {
            println!("  - {t}");
        }
    }
    println!("\nthen:");
    println!("  stockade workflow lint {shown}");
    println!(
        "  stockade workflow apply {shown}        (in prod: --as EMAIL, then another user approves)"
    );
    println!("  (editor completion: stockade workflow schema > workflow.schema.json)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_example_is_embedded_and_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workflows");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.strip_suffix(".yaml").map(str::to_owned)
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EXAMPLES.iter().map(|(n, _)| (*n).to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "embed every file of examples/workflows");
        for (name, text) in EXAMPLES {
            let w = Workflow::parse(text).unwrap();
            assert_eq!(w.name.value, *name, "the file name is the workflow's name");
            assert!(!description(text).is_empty(), "{name} has a description");
        }
    }
}
