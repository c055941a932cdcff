//! Webhook fetches handed to a connection's owner (owned here: `fetch_requests`).
//!
//! A process that receives a verified order notification for a connection another
//! process owns does not fetch the order with its own rate budget: it records the order
//! id ([`Store::request_fetch`]; the deliveries received together in one statement,
//! [`Store::request_fetches`]) and wakes the owner ([`crate::Topic::Fetches`]). The
//! owner reads the requests ([`Store::fetch_requests`]), fetches with its own connector
//! (the one rate budget of the connection) and removes each request once its order is
//! stored or found unknown ([`Store::fetch_request_done`]). The receiving process
//! answers the marketplace when the request is gone: one statement a look for every
//! delivery the process is waiting on ([`Store::fetch_requests_pending`]).
//!
//! `seq` grows with every notification of the same order: a request notified again
//! while its fetch was in flight stays (only the `seq` that was fetched is removed), so
//! the newer change is fetched too.
//!
//! Bookkeeping, not data (see [`Store::write_unaudited`]): the stored orders are audited
//! commits.

use std::collections::HashSet;

use crate::{Result, Store, StoreError, sql_params};

const REQUEST: &str =
    "INSERT INTO fetch_requests (connection_id, external_id, seq, requested_at_ms)
     VALUES ($1, $2, 1, $3)
     ON CONFLICT (connection_id, external_id) DO UPDATE
        SET seq = fetch_requests.seq + 1, requested_at_ms = excluded.requested_at_ms
     RETURNING seq";

/// $1 a JSON array of distinct `[connection_id, external_id]` pairs, each requested as
/// [`REQUEST`] does; `WHERE true` lets SQLite read the upsert after a `SELECT`.
const REQUEST_MANY_PG: &str =
    "INSERT INTO fetch_requests (connection_id, external_id, seq, requested_at_ms)
     SELECT (j->>0)::bigint, j->>1, 1, $2 FROM jsonb_array_elements($1::jsonb) j
     ON CONFLICT (connection_id, external_id) DO UPDATE
        SET seq = fetch_requests.seq + 1, requested_at_ms = excluded.requested_at_ms";

const REQUEST_MANY_SQLITE: &str =
    "INSERT INTO fetch_requests (connection_id, external_id, seq, requested_at_ms)
     SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), 1, $2
       FROM json_each($1) j WHERE true
     ON CONFLICT (connection_id, external_id) DO UPDATE
        SET seq = fetch_requests.seq + 1, requested_at_ms = excluded.requested_at_ms";

const LIST: &str = "SELECT connection_id, external_id, seq FROM fetch_requests
     ORDER BY requested_at_ms, connection_id, external_id LIMIT $1";

const PENDING: &str =
    "SELECT COUNT(*) FROM fetch_requests WHERE connection_id = $1 AND external_id = $2";

/// $1 a JSON array of `[connection_id, external_id]` pairs: those still requested (each
/// pair found through the primary key).
const PENDING_MANY_SQLITE: &str = "SELECT f.connection_id, f.external_id FROM json_each($1) j
     JOIN fetch_requests f ON f.connection_id = json_extract(j.value, '$[0]')
                          AND f.external_id = json_extract(j.value, '$[1]')";

const PENDING_MANY_PG: &str = "SELECT f.connection_id, f.external_id
     FROM jsonb_array_elements($1::jsonb) j
     JOIN fetch_requests f ON f.connection_id = (j->>0)::bigint AND f.external_id = j->>1";

const DONE: &str =
    "DELETE FROM fetch_requests WHERE connection_id = $1 AND external_id = $2 AND seq = $3";

/// $1 a JSON array of `[connection_id, external_id, seq]`: each removed at that `seq`.
const DONE_MANY_PG: &str = "DELETE FROM fetch_requests f USING jsonb_array_elements($1::jsonb) j
     WHERE f.connection_id = (j->>0)::bigint AND f.external_id = j->>1 AND f.seq = (j->>2)::bigint";

const DONE_MANY_SQLITE: &str = "DELETE FROM fetch_requests WHERE EXISTS (
     SELECT 1 FROM json_each($1) j
      WHERE json_extract(j.value, '$[0]') = fetch_requests.connection_id
        AND json_extract(j.value, '$[1]') = fetch_requests.external_id
        AND json_extract(j.value, '$[2]') = fetch_requests.seq)";

const PRUNE: &str = "DELETE FROM fetch_requests WHERE requested_at_ms < $1";

/// One order a receiving process asked the connection's owner to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub connection_id: i64,
    pub external_id: String,
    pub seq: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Store {
    /// Ask the owner of `connection` to fetch order `external_id`; its `seq`.
    pub async fn request_fetch(&self, connection: i64, external_id: &str) -> Result<i64> {
        let rows = self
            .write_unaudited_rows(REQUEST, sql_params![connection, external_id, now_ms()])
            .await?;
        match rows.first() {
            Some(r) => r.decode::<i64>(),
            None => Ok(1),
        }
    }

    /// [`Store::request_fetch`] for many orders in one statement (one commit); a pair
    /// given twice counts once. How many rows were written.
    pub async fn request_fetches(&self, requests: &[(i64, &str)]) -> Result<u64> {
        let mut seen = HashSet::with_capacity(requests.len());
        let distinct: Vec<(i64, &str)> = requests
            .iter()
            .copied()
            .filter(|pair| seen.insert(*pair))
            .collect();
        if distinct.is_empty() {
            return Ok(0);
        }
        let json = serde_json::to_string(&distinct)
            .map_err(|e| StoreError::Invalid(format!("fetch requests: {e}")))?;
        let statement = if self.is_postgres() {
            REQUEST_MANY_PG
        } else {
            REQUEST_MANY_SQLITE
        };
        self.write_unaudited(statement, sql_params![json, now_ms()])
            .await
    }

    /// The oldest `limit` requests (of every connection).
    pub async fn fetch_requests(&self, limit: i64) -> Result<Vec<FetchRequest>> {
        let rows: Vec<(i64, String, i64)> = self.query_as(LIST, sql_params![limit]).await?;
        Ok(rows
            .into_iter()
            .map(|(connection_id, external_id, seq)| FetchRequest {
                connection_id,
                external_id,
                seq,
            })
            .collect())
    }

    /// Whether order `external_id` of `connection` still waits for its owner's fetch.
    pub async fn fetch_request_pending(&self, connection: i64, external_id: &str) -> Result<bool> {
        Ok(self
            .count(PENDING, sql_params![connection, external_id])
            .await?
            > 0)
    }

    /// Which of `requests` (connection, order id) still wait for their owner's fetch,
    /// read with one statement however many there are.
    pub async fn fetch_requests_pending(
        &self,
        requests: &[(i64, &str)],
    ) -> Result<HashSet<(i64, String)>> {
        if requests.is_empty() {
            return Ok(HashSet::new());
        }
        let json = serde_json::to_string(requests)
            .map_err(|e| StoreError::Invalid(format!("fetch requests: {e}")))?;
        let statement = if self.is_postgres() {
            PENDING_MANY_PG
        } else {
            PENDING_MANY_SQLITE
        };
        let rows: Vec<(i64, String)> = self.query_as(statement, sql_params![json]).await?;
        Ok(rows.into_iter().collect())
    }

    /// The fetch of `request` is done (stored, or unknown at the marketplace). A request
    /// notified again meanwhile (a larger `seq`) stays.
    pub async fn fetch_request_done(&self, request: &FetchRequest) -> Result<bool> {
        let n = self
            .write_unaudited(
                DONE,
                sql_params![
                    request.connection_id,
                    request.external_id.as_str(),
                    request.seq
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// [`Store::fetch_request_done`] for many requests in one statement (one commit);
    /// how many were removed.
    pub async fn fetch_requests_done(&self, requests: &[FetchRequest]) -> Result<u64> {
        if requests.is_empty() {
            return Ok(0);
        }
        let triples: Vec<(i64, &str, i64)> = requests
            .iter()
            .map(|r| (r.connection_id, r.external_id.as_str(), r.seq))
            .collect();
        let json = serde_json::to_string(&triples)
            .map_err(|e| StoreError::Invalid(format!("fetch requests: {e}")))?;
        let statement = if self.is_postgres() {
            DONE_MANY_PG
        } else {
            DONE_MANY_SQLITE
        };
        self.write_unaudited(statement, sql_params![json]).await
    }

    /// Remove requests older than `before_ms` (an owner that never came: the poller
    /// lists those orders anyway).
    pub async fn prune_fetch_requests(&self, before_ms: i64) -> Result<u64> {
        self.write_unaudited(PRUNE, sql_params![before_ms]).await
    }
}
