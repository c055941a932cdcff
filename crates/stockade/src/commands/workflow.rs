//! `stockade workflow lint` and `stockade workflow schema`: checking workflow files
//! before they are applied. Reads files only; opens no database. The other workflow
//! commands are dispatched to `workflow_registry` (versions in the database) and
//! `workflow_runs` (executions).
//!
//! Output is one `FILE:LINE:COL RULE MESSAGE` line per problem on standard output, so
//! editors and CI can jump to it. Exit 3 when any problem is found, 2 when a file cannot
//! be read (the readable ones are still linted and reported).

use std::path::PathBuf;

use stockade_workflows::{LintOptions, lint_set};

use crate::cli::WorkflowCommand;
use crate::exit::Failure;
use crate::settings::Settings;

use super::workflow_registry as reg;
use super::workflow_runs as runs;

pub async fn run(settings: &Settings, cmd: WorkflowCommand) -> Result<(), Failure> {
    match cmd {
        WorkflowCommand::Lint { files } => lint(settings, &files),
        WorkflowCommand::ImportN8n {
            export,
            out,
            force,
            nocodb_url,
        } => {
            super::workflow_import::import_n8n(settings, &export, out.as_deref(), force, nocodb_url)
        }
        WorkflowCommand::Schema => {
            println!("{}", stockade_workflows::schema::json_schema().trim_end());
            Ok(())
        }
        WorkflowCommand::Apply { files, as_user } => {
            reg::apply(settings, &files, as_user.as_deref()).await
        }
        WorkflowCommand::Approve {
            name,
            version,
            as_user,
        } => reg::approve(settings, &name, version, &as_user).await,
        WorkflowCommand::List => reg::list(settings).await,
        WorkflowCommand::Versions { name } => reg::versions(settings, &name).await,
        WorkflowCommand::Diff { name, from, to } => reg::diff(settings, &name, from, to).await,
        WorkflowCommand::Enable { name, as_user } => {
            reg::set_enabled(settings, &name, true, as_user.as_deref()).await
        }
        WorkflowCommand::Disable { name, as_user } => {
            reg::set_enabled(settings, &name, false, as_user.as_deref()).await
        }
        WorkflowCommand::Export { name, version } => reg::export(settings, &name, version).await,
        WorkflowCommand::Run {
            name,
            input,
            wait,
            as_user,
        } => runs::run(settings, &name, input.as_ref(), wait, as_user.as_deref()).await,
        WorkflowCommand::Runs {
            name,
            status,
            limit,
        } => runs::list(settings, name.as_deref(), status.as_deref(), limit).await,
        WorkflowCommand::ShowRun { id } => runs::show(settings, &id).await,
        WorkflowCommand::Cancel { id, as_user } => {
            runs::cancel(settings, &id, as_user.as_deref()).await
        }
        WorkflowCommand::Rerun {
            id,
            from_step,
            as_user,
        } => runs::rerun(settings, &id, from_step.as_deref(), as_user.as_deref()).await,
        WorkflowCommand::New {
            from_example,
            out,
            list,
        } => super::workflow_new::run(from_example.as_deref(), out.as_deref(), list),
    }
}

/// Whether the command works on files alone (no database).
pub fn offline(cmd: &WorkflowCommand) -> bool {
    matches!(
        cmd,
        WorkflowCommand::Lint { .. }
            | WorkflowCommand::Schema
            | WorkflowCommand::ImportN8n { .. }
            | WorkflowCommand::New { .. }
    )
}

/// Whether the command may append to the audit chain.
pub fn writes(cmd: &WorkflowCommand) -> bool {
    matches!(
        cmd,
        WorkflowCommand::Apply { .. }
            | WorkflowCommand::Approve { .. }
            | WorkflowCommand::Enable { .. }
            | WorkflowCommand::Disable { .. }
            | WorkflowCommand::Run { .. }
            | WorkflowCommand::Cancel { .. }
            | WorkflowCommand::Rerun { .. }
    )
}

fn lint(settings: &Settings, paths: &[PathBuf]) -> Result<(), Failure> {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        match read(path) {
            Ok(text) => files.push((name, text)),
            Err(why) => {
                eprintln!("{name}: cannot read: {why}");
                unreadable.push(name);
            }
        }
    }
    let options = LintOptions {
        env: settings.env,
        script: settings.workflows.script,
        ..LintOptions::default()
    };
    let mut problems = 0usize;
    let mut with_problems = 0usize;
    for (file, found) in lint_set(&files, &options) {
        if !found.is_empty() {
            with_problems += 1;
        }
        for p in found {
            problems += 1;
            println!("{file}:{p}");
        }
    }
    if !unreadable.is_empty() {
        return Err(Failure::usage(format!(
            "{} file(s) could not be read: {}",
            unreadable.len(),
            unreadable.join(", ")
        )));
    }
    if problems > 0 {
        return Err(Failure::verification(format!(
            "{problems} problem(s) in {with_problems} of {} file(s)",
            files.len()
        )));
    }
    eprintln!("{} workflow file(s): no problems", files.len());
    Ok(())
}

/// The file's text, refusing files over the parser's limit before reading them whole.
pub(super) fn read(path: &PathBuf) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.kind().to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.len() > stockade_workflows::yaml::MAX_FILE_BYTES as u64 {
        return Err(format!(
            "larger than {} bytes",
            stockade_workflows::yaml::MAX_FILE_BYTES
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.kind().to_string())?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}
