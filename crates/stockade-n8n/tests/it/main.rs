//! Import tests: real public n8n exports and seller exports written for Stockade
//! (tests/fixtures/n8n, sources in SOURCES.md) convert, report what they should, lint as
//! they should, and the converted workflows run on the executor with n8n's results.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod convert;
mod run;

use stockade_n8n::{Import, Options};

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/n8n/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn import(name: &str) -> Import {
    stockade_n8n::import(&fixture(name), &Options::default()).unwrap()
}

/// Lint problems of every workflow of an import, linted together: (file, rule, message).
pub fn lint(import: &Import) -> Vec<(String, String, String)> {
    let files: Vec<(String, String)> = import
        .workflows
        .iter()
        .map(|w| (w.file.clone(), w.yaml.clone()))
        .collect();
    stockade_workflows::lint_set(&files, &stockade_workflows::LintOptions::default())
        .into_iter()
        .flat_map(|(f, ps)| {
            ps.into_iter()
                .map(move |p| (f.clone(), p.rule.as_str().to_owned(), p.message))
        })
        .collect()
}
