//! Revisions per listing per UTC day (owned here: `listing_revisions`), for marketplaces
//! that cap them (eBay: 250 a listing a day).
//!
//! A connection's owner counts a revision *before* the call goes out
//! ([`Store::spend_revisions`]), so a call that reached the marketplace is counted even
//! if the process dies before it records the confirmed quantity: one too many is safe,
//! one too few could leave no revision for a decrease to zero. The count is fenced by
//! the connection's lease ([`Grant`]): a process that lost the lease counts nothing and
//! must not send. On PostgreSQL the fence takes the lease row's lock in the same
//! statement, so a takeover and a count are ordered: the new owner, which reads the
//! counts ([`Store::revisions_used`]) after it took the lease, sees every revision its
//! predecessor counted, and the predecessor cannot count (nor send) after that.
//!
//! Counters, not decisions about data: written through the unaudited path (see
//! [`Store::write_unaudited`]); the pushes themselves are audited commits.

use std::collections::BTreeMap;

use crate::lease::Grant;
use crate::{Result, Store, StoreError, sql_params};

/// $1 connection, $2 day, $3 a JSON object `{sku: revisions}`, $4 time; the fence: $5
/// lease name, $6 holder, $7 token.
const SPEND_SQLITE: &str = "INSERT INTO listing_revisions (connection_id, sku, day, used, updated_at_ms)
     SELECT $1, j.key, $2, j.value, $4 FROM json_each($3) j
      WHERE $5 IS NULL OR EXISTS (SELECT 1 FROM leases WHERE name = $5 AND holder = $6 AND token = $7)
     ON CONFLICT (connection_id, day, sku) DO UPDATE
        SET used = listing_revisions.used + excluded.used, updated_at_ms = excluded.updated_at_ms
     RETURNING sku";

/// The fence's `UPDATE` takes the lease row's lock (a concurrent takeover waits, or this
/// statement sees the newer token and counts nothing), as [`Grant::fence`] does.
const SPEND_PG_FENCED: &str = "WITH f AS (
        UPDATE leases SET token = token WHERE name = $5 AND holder = $6 AND token = $7 RETURNING 1)
     INSERT INTO listing_revisions (connection_id, sku, day, used, updated_at_ms)
     SELECT $1, j.key, $2, j.value::bigint, $4 FROM f, jsonb_each_text($3::jsonb) j
     ON CONFLICT (connection_id, day, sku) DO UPDATE
        SET used = listing_revisions.used + excluded.used, updated_at_ms = excluded.updated_at_ms
     RETURNING sku";

const SPEND_PG: &str =
    "INSERT INTO listing_revisions (connection_id, sku, day, used, updated_at_ms)
     SELECT $1, j.key, $2, j.value::bigint, $4 FROM jsonb_each_text($3::jsonb) j
      WHERE $5::text IS NULL OR $6::text IS NULL OR $7::bigint IS NULL
     ON CONFLICT (connection_id, day, sku) DO UPDATE
        SET used = listing_revisions.used + excluded.used, updated_at_ms = excluded.updated_at_ms
     RETURNING sku";

/// $1 connection, $2 day, $3 a JSON array of SKUs, $4 the floor, $5 time.
const EXHAUST_SQLITE: &str = "INSERT INTO listing_revisions (connection_id, sku, day, used, updated_at_ms)
     SELECT $1, j.value, $2, $4, $5 FROM json_each($3) j WHERE true
     ON CONFLICT (connection_id, day, sku) DO UPDATE
        SET used = MAX(listing_revisions.used, excluded.used), updated_at_ms = excluded.updated_at_ms";

const EXHAUST_PG: &str = "INSERT INTO listing_revisions (connection_id, sku, day, used, updated_at_ms)
     SELECT $1, j, $2, $4, $5 FROM jsonb_array_elements_text($3::jsonb) j
     ON CONFLICT (connection_id, day, sku) DO UPDATE
        SET used = GREATEST(listing_revisions.used, excluded.used), updated_at_ms = excluded.updated_at_ms";

const USED: &str =
    "SELECT sku, used FROM listing_revisions WHERE connection_id = $1 AND day = $2 ORDER BY sku";

const PRUNE: &str = "DELETE FROM listing_revisions WHERE connection_id = $1 AND day < $2";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Store {
    /// Count one revision of each of `skus` (a SKU listed twice counts twice) of
    /// connection `connection` on UTC `day`, before the calls go out. With `fence` (the
    /// connection's lease; scale-out) nothing is counted and [`StoreError::Fenced`] is
    /// returned unless the grant is still current: the caller must not send then.
    pub async fn spend_revisions(
        &self,
        connection: i64,
        day: i64,
        skus: &[&str],
        fence: Option<&Grant>,
    ) -> Result<()> {
        if skus.is_empty() {
            return Ok(());
        }
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for s in skus {
            *counts.entry(s).or_insert(0) += 1;
        }
        let json = serde_json::to_string(&counts)
            .map_err(|e| StoreError::Invalid(format!("revision counts: {e}")))?;
        let statement = match (self.is_postgres(), fence.is_some()) {
            (false, _) => SPEND_SQLITE,
            (true, true) => SPEND_PG_FENCED,
            (true, false) => SPEND_PG,
        };
        let (name, holder, token) = match fence {
            Some(g) => (Some(g.name.clone()), Some(g.holder.clone()), Some(g.token)),
            None => (None, None, None),
        };
        let rows = self
            .write_unaudited_rows(
                statement,
                sql_params![connection, day, json, now_ms(), name, holder, token],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::Fenced(
                "the connection's lease (a newer holder took it)".into(),
            ));
        }
        Ok(())
    }

    /// The marketplace refused `skus` for today: count them at `limit` at least (so a
    /// later owner does not try again today). Not fenced: raising a count is always safe.
    pub async fn exhaust_revisions(
        &self,
        connection: i64,
        day: i64,
        skus: &[&str],
        limit: u32,
    ) -> Result<()> {
        if skus.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(skus)
            .map_err(|e| StoreError::Invalid(format!("revision counts: {e}")))?;
        self.write_unaudited(
            if self.is_postgres() {
                EXHAUST_PG
            } else {
                EXHAUST_SQLITE
            },
            sql_params![connection, day, json, i64::from(limit), now_ms()],
        )
        .await?;
        Ok(())
    }

    /// The revisions each listing (by SKU) of `connection` used on UTC `day`.
    pub async fn revisions_used(&self, connection: i64, day: i64) -> Result<Vec<(String, u32)>> {
        let rows: Vec<(String, i64)> = self.query_as(USED, sql_params![connection, day]).await?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s, u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
            .collect())
    }

    /// Remove `connection`'s counts of days before `day` (they no longer cap anything).
    pub async fn prune_revisions(&self, connection: i64, day: i64) -> Result<u64> {
        self.write_unaudited(PRUNE, sql_params![connection, day])
            .await
    }
}
