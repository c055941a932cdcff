//! Schema migrations, one tree per backend, applied in order.
//!
//! Each migration runs in its own transaction together with its `schema_migrations` row
//! and its audit row, so a migration is either fully applied and audited or not at all.
//! A checksum of each applied migration is kept; an edited migration is refused, and a
//! database that knows a newer version than this binary is refused before anything is
//! written.

use aws_lc_rs::digest;

/// One schema version, with the SQL for each backend.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// All migrations, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sqlite: include_str!("../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "access",
        sqlite: include_str!("../migrations/sqlite/0002_access.sql"),
        postgres: include_str!("../migrations/postgres/0002_access.sql"),
    },
    Migration {
        version: 3,
        name: "egress",
        sqlite: include_str!("../migrations/sqlite/0003_egress.sql"),
        postgres: include_str!("../migrations/postgres/0003_egress.sql"),
    },
    Migration {
        version: 4,
        name: "sync",
        sqlite: include_str!("../migrations/sqlite/0004_sync.sql"),
        postgres: include_str!("../migrations/postgres/0004_sync.sql"),
    },
    Migration {
        version: 5,
        name: "alerts",
        sqlite: include_str!("../migrations/sqlite/0005_alerts.sql"),
        postgres: include_str!("../migrations/postgres/0005_alerts.sql"),
    },
    Migration {
        version: 6,
        name: "unmatched_lines",
        sqlite: include_str!("../migrations/sqlite/0006_unmatched_lines.sql"),
        postgres: include_str!("../migrations/postgres/0006_unmatched_lines.sql"),
    },
    Migration {
        version: 7,
        name: "return_reports",
        sqlite: include_str!("../migrations/sqlite/0007_return_reports.sql"),
        postgres: include_str!("../migrations/postgres/0007_return_reports.sql"),
    },
    Migration {
        version: 8,
        name: "push_health",
        sqlite: include_str!("../migrations/sqlite/0008_push_health.sql"),
        postgres: include_str!("../migrations/postgres/0008_push_health.sql"),
    },
    Migration {
        version: 9,
        name: "event_cursors",
        sqlite: include_str!("../migrations/sqlite/0009_event_cursors.sql"),
        postgres: include_str!("../migrations/postgres/0009_event_cursors.sql"),
    },
    Migration {
        version: 10,
        name: "jobs",
        sqlite: include_str!("../migrations/sqlite/0010_jobs.sql"),
        postgres: include_str!("../migrations/postgres/0010_jobs.sql"),
    },
    Migration {
        version: 11,
        name: "workflow_versions",
        sqlite: include_str!("../migrations/sqlite/0011_workflow_versions.sql"),
        postgres: include_str!("../migrations/postgres/0011_workflow_versions.sql"),
    },
    Migration {
        version: 12,
        name: "job_operations",
        sqlite: include_str!("../migrations/sqlite/0012_job_operations.sql"),
        postgres: include_str!("../migrations/postgres/0012_job_operations.sql"),
    },
    Migration {
        version: 13,
        name: "low_stock",
        sqlite: include_str!("../migrations/sqlite/0013_low_stock.sql"),
        postgres: include_str!("../migrations/postgres/0013_low_stock.sql"),
    },
    Migration {
        version: 14,
        name: "sku_low_stock_threshold",
        sqlite: include_str!("../migrations/sqlite/0014_sku_low_stock_threshold.sql"),
        postgres: include_str!("../migrations/postgres/0014_sku_low_stock_threshold.sql"),
    },
    Migration {
        version: 15,
        name: "user_language",
        sqlite: include_str!("../migrations/sqlite/0015_user_language.sql"),
        postgres: include_str!("../migrations/postgres/0015_user_language.sql"),
    },
    Migration {
        version: 16,
        name: "console_indexes",
        sqlite: include_str!("../migrations/sqlite/0016_console_indexes.sql"),
        postgres: include_str!("../migrations/postgres/0016_console_indexes.sql"),
    },
    // Audit mirror: each sink's cursor, errors and lease.
    Migration {
        version: 17,
        name: "audit_mirror",
        sqlite: include_str!("../migrations/sqlite/0017_audit_mirror.sql"),
        postgres: include_str!("../migrations/postgres/0017_audit_mirror.sql"),
    },
    // backup: the backups/drills table.
    Migration {
        version: 18,
        name: "backups",
        sqlite: include_str!("../migrations/sqlite/0018_backups.sql"),
        postgres: include_str!("../migrations/postgres/0018_backups.sql"),
    },
    // Retention: run records, the run lease, deletion indexes.
    Migration {
        version: 19,
        name: "retention",
        sqlite: include_str!("../migrations/sqlite/0019_retention.sql"),
        postgres: include_str!("../migrations/postgres/0019_retention.sql"),
    },
    // Incident response: incidents, timeline, notices, controls (isolation, lockdown).
    Migration {
        version: 20,
        name: "incidents",
        sqlite: include_str!("../migrations/sqlite/0020_incidents.sql"),
        postgres: include_str!("../migrations/postgres/0020_incidents.sql"),
    },
    // Scale-out: named leases with fencing tokens, the live processes and their roles.
    Migration {
        version: 21,
        name: "leases",
        sqlite: include_str!("../migrations/sqlite/0021_leases.sql"),
        postgres: include_str!("../migrations/postgres/0021_leases.sql"),
    },
    // PostgreSQL: ledger rows move stock once per statement, not once per row.
    Migration {
        version: 22,
        name: "ledger_per_statement",
        sqlite: include_str!("../migrations/sqlite/0022_ledger_per_statement.sql"),
        postgres: include_str!("../migrations/postgres/0022_ledger_per_statement.sql"),
    },
    // Scale-out: what a connection's owner spends, shared with its next owner: eBay revisions
    // per listing per UTC day; webhook fetches handed to the owner.
    Migration {
        version: 23,
        name: "owner_budgets",
        sqlite: include_str!("../migrations/sqlite/0023_owner_budgets.sql"),
        postgres: include_str!("../migrations/postgres/0023_owner_budgets.sql"),
    },
    // Alert channels: the lease columns the lease table replaced.
    Migration {
        version: 24,
        name: "alert_channel_lease_columns",
        sqlite: include_str!("../migrations/sqlite/0024_alert_channel_lease_columns.sql"),
        postgres: include_str!("../migrations/postgres/0024_alert_channel_lease_columns.sql"),
    },
    // PostgreSQL: a stock move retargets listings and raises `stock low` once per
    // statement, not once per SKU row.
    Migration {
        version: 25,
        name: "sku_moves_per_statement",
        sqlite: include_str!("../migrations/sqlite/0025_sku_moves_per_statement.sql"),
        postgres: include_str!("../migrations/postgres/0025_sku_moves_per_statement.sql"),
    },
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// SHA-256 of a migration's SQL, hex.
pub fn checksum(sql: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, sql.as_bytes()).as_ref())
}

/// The bootstrap table, identical on both backends.
pub const SCHEMA_MIGRATIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version        BIGINT PRIMARY KEY,
    name           TEXT   NOT NULL,
    checksum       TEXT   NOT NULL,
    applied_at_ms  BIGINT NOT NULL
)";

/// Compare what a database has applied with what this binary knows.
/// Returns the migrations still to apply.
pub fn pending(
    applied: &[(i64, String)],
    backend_sql: fn(&Migration) -> &'static str,
) -> crate::Result<Vec<Migration>> {
    let latest = latest_version();
    if let Some((v, _)) = applied.iter().find(|(v, _)| *v > latest) {
        return Err(crate::StoreError::SchemaTooNew {
            database: *v,
            supported: latest,
        });
    }
    for (v, sum) in applied {
        if let Some(m) = MIGRATIONS.iter().find(|m| m.version == *v)
            && checksum(backend_sql(m)) != *sum
        {
            return Err(crate::StoreError::MigrationChanged(*v));
        }
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .copied()
        .collect())
}

/// The audit rows a migration writes; the first one also records the instance's
/// environment and identity.
pub fn migration_changes(m: &Migration, env: stockade_core::Environment) -> Vec<crate::Change> {
    use crate::{AuditDetails, AuditEntry, Change, Mutation};
    let mut changes = Vec::new();
    if m.version == 1 {
        let mut id = [0u8; 16];
        // The instance id only needs to be unique; fall back to the clock if the RNG fails.
        if aws_lc_rs::rand::fill(&mut id).is_err() {
            id[..8].copy_from_slice(&stockade_core::time::now_ms().to_be_bytes());
        }
        let instance = hex::encode(id);
        let now = stockade_core::time::now_ms().to_string();
        for (key, value) in [
            ("environment", env.as_str().to_owned()),
            ("instance_id", instance.clone()),
            ("created_at_ms", now),
        ] {
            changes.push(Change::new(
                Mutation::SetMeta {
                    key: key.into(),
                    value: value.clone(),
                },
                AuditEntry::new(
                    "meta.set",
                    format!("meta:{key}"),
                    AuditDetails::new().str("value", &value),
                ),
            ));
        }
        changes.push(Change::event(AuditEntry::new(
            "instance.init",
            format!("instance:{instance}"),
            AuditDetails::new().str("environment", env.as_str()),
        )));
    }
    changes.push(Change::event(AuditEntry::new(
        "schema.migrate",
        format!("schema:{}", m.version),
        AuditDetails::new()
            .int("version", m.version)
            .str("name", m.name),
    )));
    changes
}
