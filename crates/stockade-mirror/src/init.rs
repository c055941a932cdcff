//! `stockade audit mirror init`: create the NocoDB table with one column per audit field
//! through the meta API, or check an existing one and name exactly which columns are
//! missing or of the wrong type. Nothing is ever dropped or altered.

use crate::columns::{self, ColumnProblem};
use crate::noco::{Noco, NocoError};

/// What init did or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// The table was created (its id).
    Created(String),
    /// The table exists with every column (its id).
    Ready(String),
    /// The table exists but its columns need fixing by hand (its id, the problems).
    Problems(String, Vec<ColumnProblem>),
}

/// Create or check the configured table.
pub async fn init(noco: &Noco) -> Result<InitOutcome, NocoError> {
    let base = noco.base_id().await?;
    match noco.find_table(&base).await? {
        None => Ok(InitOutcome::Created(noco.create_table(&base).await?)),
        Some(table) => {
            let problems = columns::check(&noco.columns(&table).await?);
            Ok(if problems.is_empty() {
                InitOutcome::Ready(table)
            } else {
                InitOutcome::Problems(table, problems)
            })
        }
    }
}
