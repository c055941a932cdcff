//! The linter's verdict on the workflow versions in use, for the review clause: how many
//! active versions passed lint (the database refuses an active version that did not), and
//! how many applied versions lint rejected.

use stockade_store::Store;

const COUNTS: &str =
    "SELECT COALESCE(SUM(CASE WHEN state = 'active' AND lint_passed = 1 THEN 1 ELSE 0 END), 0),
            COALESCE(SUM(CASE WHEN state = 'rejected' THEN 1 ELSE 0 END), 0)
     FROM workflow_versions";

/// `(active versions that passed lint, versions lint rejected)`.
pub(super) async fn counts(store: &Store) -> Result<(i64, i64), String> {
    let row: Option<(i64, i64)> = store
        .query_one_as(COUNTS, vec![])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.unwrap_or((0, 0)))
}
