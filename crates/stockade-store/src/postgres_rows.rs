//! PostgreSQL: runs of row-step changes as one statement per table (see [`crate::rows`]).

use std::collections::HashSet;

use sqlx::{PgConnection, Row};

use crate::change::{Change, Mutation};
use crate::postgres::pg_err;
use crate::rows::{Column, RowStatement, first_uses, phase_order};
use crate::sql::SqlValue;
use crate::{Result, StoreError};

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// A change made of row steps only: its guard flag and steps.
pub(crate) fn row_steps(m: &Mutation) -> Option<(bool, &[Mutation])> {
    match m {
        Mutation::Row { .. } => Some((false, std::slice::from_ref(m))),
        Mutation::Many { steps, guard }
            if !steps.is_empty() && steps.iter().all(|s| matches!(s, Mutation::Row { .. })) =>
        {
            Some((*guard, steps.as_slice()))
        }
        _ => None,
    }
}

fn row(m: &Mutation) -> (&'static RowStatement, &[SqlValue]) {
    match m {
        Mutation::Row { statement, params } => (statement, params.as_slice()),
        // `row_steps` admits row steps only.
        _ => unreachable!("a run holds row steps only"),
    }
}

/// Apply a run of consecutive row-step changes; which of them applied (a guarded change
/// whose guard wrote nothing did not).
pub(crate) async fn apply_run(conn: &mut PgConnection, changes: &[Change]) -> Result<Vec<bool>> {
    let mut applied = Vec::with_capacity(changes.len());
    let mut start = 0;
    while start < changes.len() {
        let end = wave_end(changes, start)?;
        applied.extend(apply_wave(conn, &changes[start..end]).await?);
        start = end;
    }
    Ok(applied)
}

/// The end of the wave starting at `start`: changes with the same guard, no key twice.
fn wave_end(changes: &[Change], start: usize) -> Result<usize> {
    let (guard, steps) = row_steps(&changes[start].mutation).unwrap_or((false, &[]));
    let first = steps.first().map(row).map(|(s, _)| s);
    let mut keys = HashSet::new();
    let mut end = start;
    for c in &changes[start..] {
        let Some((g, steps)) = row_steps(&c.mutation) else {
            break;
        };
        if g != guard {
            break;
        }
        if guard {
            let (s, params) = row(&steps[0]);
            if first.is_some_and(|f| !f.same(s)) {
                break;
            }
            s.check(params)?;
            if s.one.is_none() {
                return Err(StoreError::Database(format!(
                    "{} only locks rows and cannot guard a change",
                    s.name
                )));
            }
            if s.key_columns > 0 && !keys.insert(s.key(params)) {
                break;
            }
        }
        end += 1;
    }
    Ok(end.max(start + 1))
}

async fn apply_wave(conn: &mut PgConnection, changes: &[Change]) -> Result<Vec<bool>> {
    let all: Vec<(bool, &[Mutation])> = changes
        .iter()
        .filter_map(|c| row_steps(&c.mutation))
        .collect();
    let guarded = all.first().is_some_and(|(g, _)| *g);
    let mut applied = vec![true; all.len()];
    if guarded {
        let rows: Vec<&[SqlValue]> = all.iter().map(|(_, s)| row(&s[0]).1).collect();
        let statement = row(&all[0].1[0]).0;
        let returned = bind_columns(sqlx::query(statement.many), statement, &rows)
            .fetch_all(&mut *conn)
            .await
            .map_err(pg_err)?;
        applied = vec![false; all.len()];
        for r in &returned {
            let n: i64 = r.try_get(0).map_err(pg_err)?;
            match usize::try_from(n)
                .ok()
                .and_then(|n| applied.get_mut(n.wrapping_sub(1)))
            {
                Some(a) => *a = true,
                None => {
                    return Err(StoreError::Database(format!(
                        "{} returned a row position that is not in its input",
                        statement.name
                    )));
                }
            }
        }
    }
    let skip = usize::from(guarded);
    let rest: Vec<&[Mutation]> = all
        .iter()
        .zip(&applied)
        .filter(|(_, a)| **a)
        .map(|((_, steps), _)| &steps[skip..])
        .collect();
    let sequences: Vec<Vec<&RowStatement>> = rest
        .iter()
        .map(|steps| first_uses(steps.iter().map(|m| row(m).0)))
        .collect();
    match phase_order(&sequences) {
        Some(order) => {
            for statement in order {
                let rows: Vec<&[SqlValue]> = rest
                    .iter()
                    .flat_map(|steps| steps.iter().map(row))
                    .filter(|(s, _)| s.same(statement))
                    .map(|(_, p)| p)
                    .collect();
                run_many(conn, statement, &rows).await?;
            }
        }
        // The changes disagree on the order of their statements: change by change.
        None => {
            for steps in &rest {
                for m in *steps {
                    let (statement, params) = row(m);
                    run_many(conn, statement, &[params]).await?;
                }
            }
        }
    }
    Ok(applied)
}

async fn run_many(
    conn: &mut PgConnection,
    statement: &RowStatement,
    rows: &[&[SqlValue]],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    for r in rows {
        statement.check(r)?;
    }
    bind_columns(sqlx::query(statement.many), statement, rows)
        .execute(&mut *conn)
        .await
        .map_err(pg_err)?;
    Ok(())
}

/// Bind one array per column (rows were checked against the columns first).
fn bind_columns<'q>(
    mut q: PgQuery<'q>,
    statement: &RowStatement,
    rows: &[&'q [SqlValue]],
) -> PgQuery<'q> {
    for (i, column) in statement.columns.iter().enumerate() {
        q = match column {
            Column::Int => q.bind(
                rows.iter()
                    .map(|r| match &r[i] {
                        SqlValue::Int(v) => *v,
                        _ => None,
                    })
                    .collect::<Vec<Option<i64>>>(),
            ),
            Column::Text => q.bind(
                rows.iter()
                    .map(|r| match &r[i] {
                        SqlValue::Text(v) => v.as_deref(),
                        _ => None,
                    })
                    .collect::<Vec<Option<&str>>>(),
            ),
            Column::Bytes => q.bind(
                rows.iter()
                    .map(|r| match &r[i] {
                        SqlValue::Bytes(v) => v.as_deref(),
                        _ => None,
                    })
                    .collect::<Vec<Option<&[u8]>>>(),
            ),
        };
    }
    q
}
