//! `stockade workflow import-n8n`: read an n8n export, convert it (stockade-n8n, pure),
//! write one YAML per workflow (or print them), print the report, and lint the result.
//!
//! Invariants: a refused export writes nothing; existing files are never overwritten
//! without `--force`, and a refusal for one file writes none (all or nothing: every
//! target is checked before the first write); the report never holds a parameter value
//! (secrets in an export stay out of the terminal and the files). Opens no database.

use std::path::{Path, PathBuf};

use stockade_workflows::{LintOptions, lint_set};

use crate::exit::Failure;
use crate::settings::Settings;

pub fn import_n8n(
    settings: &Settings,
    export: &Path,
    out: Option<&Path>,
    force: bool,
    nocodb_url: Option<String>,
) -> Result<(), Failure> {
    let name = export.display().to_string();
    let meta = std::fs::metadata(export)
        .map_err(|e| Failure::usage(format!("{name}: cannot read: {}", e.kind())))?;
    if meta.len() > stockade_n8n::MAX_INPUT as u64 {
        return Err(Failure::usage(format!(
            "{name}: {} bytes; at most {} are read: nothing written",
            meta.len(),
            stockade_n8n::MAX_INPUT
        )));
    }
    let bytes = std::fs::read(export)
        .map_err(|e| Failure::usage(format!("{name}: cannot read: {}", e.kind())))?;
    let options = stockade_n8n::Options { nocodb_url };
    let import = stockade_n8n::import(&bytes, &options)
        .map_err(|e| Failure::usage(format!("{name}: {e}: nothing written")))?;
    let targets: Vec<(PathBuf, &str)> = import
        .workflows
        .iter()
        .map(|w| {
            (
                out.map_or_else(|| PathBuf::from(&w.file), |d| d.join(&w.file)),
                w.yaml.as_str(),
            )
        })
        .collect();
    match out {
        Some(dir) => write_all(dir, &targets, force)?,
        None => {
            for (_, yaml) in &targets {
                println!("---\n{}", yaml.trim_end());
            }
        }
    }
    eprint!("{}", import.report());
    let files: Vec<(String, String)> = targets
        .iter()
        .map(|(p, y)| (p.display().to_string(), (*y).to_owned()))
        .collect();
    let lint_options = LintOptions {
        env: settings.env,
        ..LintOptions::default()
    };
    let mut problems = 0usize;
    for (file, found) in lint_set(&files, &lint_options) {
        for p in found {
            problems += 1;
            eprintln!("{file}:{p}");
        }
    }
    let written = if out.is_some() { "written" } else { "printed" };
    if problems > 0 {
        return Err(Failure::verification(format!(
            "{} workflow(s) {written}; lint found {problems} problem(s): fix them (and delete each NEEDS REVIEW line once checked) before `stockade workflow apply`",
            files.len()
        )));
    }
    eprintln!("{} workflow(s) {written}; lint: no problems", files.len());
    Ok(())
}

/// Write every file, or none: every target is checked before the first write.
fn write_all(dir: &Path, targets: &[(PathBuf, &str)], force: bool) -> Result<(), Failure> {
    let existing: Vec<String> = targets
        .iter()
        .filter(|(p, _)| p.exists())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        return Err(Failure::usage(format!(
            "{} exist(s); nothing written (use --force to overwrite)",
            existing.join(", ")
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::runtime(format!("{}: cannot create: {}", dir.display(), e.kind())))?;
    for (path, yaml) in targets {
        std::fs::write(path, yaml).map_err(|e| {
            Failure::runtime(format!("{}: cannot write: {}", path.display(), e.kind()))
        })?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
