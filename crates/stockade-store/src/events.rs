//! The `events` table and its subscribers' cursors, owned here.
//!
//! - **Append.** Every producer appends a typed [`Event`] with [`append`]: a step it puts
//!   in the audited commit of the change the event reports (an ingest, a ban, a delivery
//!   outcome), or alone with [`Store::append_events`] and an audit entry of its own (a
//!   sync error after retries, egress anomalies). Every event is therefore written in an
//!   audited commit. The one exception to "appended here" are the SQL triggers of
//!   `stock_ledger` (`oversell`), `order_lines` (`unmatched_sku`) and `skus` (`stock
//!   low`, migration 0013: the stock before and after the statement, so it fires only on
//!   the crossing and for every writer of stock): they must see the stock the same
//!   statement computed, so they stay in SQL, write the same columns
//!   [`Event::columns`] would, and fire inside the audited ingest or import commit.
//! - **Order.** An event's id is its stream position and ids become visible in
//!   ascending order: SQLite has one writer and never reuses an id (`AUTOINCREMENT`);
//!   on PostgreSQL an insert trigger draws the id under a transaction-scoped advisory
//!   lock, so a lower id never commits after a higher one (migration 0009).
//! - **Subscribe.** A subscriber (the alert router; workflow triggers next) reads
//!   [`EventStream::next_batch`] after its persisted cursor (`event_cursors`) and
//!   acknowledges a batch with [`Batch::ack`] as a step of the commit that records its
//!   effects: the cursor moves only if it is still where the batch began, so a batch is
//!   handled exactly once even with two processes, and nothing is lost across a restart.
//! - **Decode** in one place (`EventRecord`'s `FromRow`).
//! - **Purge.** A connection's purge counts and deletes the sync events about it
//!   ([`Store::connection_events`], [`delete_connection_events`]).

use stockade_core::event::{Event, EventColumns, EventRecord};
use stockade_core::{Actor, time::now_ms};

use crate::change::{AuditEntry, Change, Mutation};
use crate::sql::{Columns, Expect, FromRow};
use crate::{Result, Store, sql_params};

const INSERT: &str = "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// The step that appends `event` (at `at_ms`) inside a commit.
pub fn append(at_ms: i64, event: &Event) -> Mutation {
    let c = event.columns();
    Mutation::Sql {
        statement: INSERT,
        params: sql_params![
            at_ms,
            c.source,
            c.kind,
            c.caller,
            c.host,
            c.path_template,
            c.operation,
            c.status,
            c.detail
        ],
        expect: Expect::One("event"),
    }
}

/// A row selected as `id, at_ms, source, kind, caller, host, path_template, operation,
/// status, detail`.
impl FromRow for EventRecord {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        let (id, at_ms) = FromRow::from_row(c)?;
        let columns = EventColumns {
            source: c.get()?,
            kind: c.get()?,
            caller: c.get()?,
            host: c.get()?,
            path_template: c.get()?,
            operation: c.get()?,
            status: c.get()?,
            detail: c.get()?,
        };
        let event = Event::decode(columns);
        Ok(EventRecord { id, at_ms, event })
    }
}

/// The `caller` column of the sync events about a connection, as `Event::columns` writes it.
fn connection_caller(connection: &str) -> String {
    format!("connection:{connection}")
}

/// The step that deletes the sync events about `connection`, for the audited commit of
/// its purge.
pub fn delete_connection_events(connection: &str) -> Mutation {
    Mutation::Sql {
        statement: "DELETE FROM events WHERE source = 'sync' AND caller = $1",
        params: sql_params![connection_caller(connection)],
        expect: Expect::Any,
    }
}

impl Store {
    /// Append events that are a change of their own, in one audited commit.
    pub async fn append_events(
        &self,
        actor: &Actor,
        events: &[(i64, Event)],
        audit: AuditEntry,
    ) -> Result<()> {
        let steps = events.iter().map(|(at, e)| append(*at, e)).collect();
        self.commit(
            actor,
            vec![Change::new(
                Mutation::Many {
                    steps,
                    guard: false,
                },
                audit,
            )],
        )
        .await?;
        Ok(())
    }

    /// Append one event now, in one audited commit.
    pub async fn append_event(
        &self,
        actor: &Actor,
        event: &Event,
        audit: AuditEntry,
    ) -> Result<()> {
        self.append_events(actor, &[(now_ms(), event.clone())], audit)
            .await
    }

    /// Delete routed events older than `cutoff_ms`, and unrouted ones older than
    /// `unrouted_cutoff_ms` (a server that runs without its alert router still prunes,
    /// later). The retention prune of the egress log writer.
    pub async fn prune_events(&self, cutoff_ms: i64, unrouted_cutoff_ms: i64) -> Result<u64> {
        self.write_unaudited(
            "DELETE FROM events WHERE at_ms < $1 AND (delivered_at_ms IS NOT NULL OR at_ms < $2)",
            sql_params![cutoff_ms, unrouted_cutoff_ms],
        )
        .await
    }

    /// How many sync events are about `connection` (its purge receipt counts them).
    pub async fn connection_events(&self, connection: &str) -> Result<i64> {
        self.count(
            "SELECT COUNT(*) FROM events WHERE source = 'sync' AND caller = $1",
            sql_params![connection_caller(connection)],
        )
        .await
    }

    /// How many events of `source` and `kind` happened at or after `since_ms` (e.g. the
    /// egress gateway's blocked requests, for the compliance report).
    pub async fn count_events_since(&self, source: &str, kind: &str, since_ms: i64) -> Result<i64> {
        self.count(
            "SELECT COUNT(*) FROM events WHERE source = $1 AND kind = $2 AND at_ms >= $3",
            sql_params![source, kind, since_ms],
        )
        .await
    }

    /// The id of the newest sync event about `connection`, if any.
    pub async fn last_connection_event(&self, connection: &str) -> Result<Option<i64>> {
        let id = self.query_one_as(
            "SELECT MAX(id) FROM events WHERE source = 'sync' AND caller = $1",
            sql_params![connection_caller(connection)],
        );
        Ok(id.await?.flatten())
    }

    /// Up to `limit` events with an id below `before`, newest first, each with whether
    /// the alert pipeline has routed it (the alert history).
    pub async fn events_before(&self, before: i64, limit: i64) -> Result<Vec<(EventRecord, bool)>> {
        let rows: Vec<(EventRecord, Option<i64>)> = self.query_as(
            "SELECT id, at_ms, source, kind, caller, host, path_template, operation, status, detail, delivered_at_ms
               FROM events WHERE id < $1 ORDER BY id DESC LIMIT $2",
            sql_params![before, limit],
        )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(e, delivered)| (e, delivered.is_some()))
            .collect())
    }
}

/// A subscriber's view of the event stream.
#[derive(Debug, Clone)]
pub struct EventStream {
    store: Store,
    subscriber: &'static str,
}

/// Events after a subscriber's cursor, as read.
#[derive(Debug, Clone)]
pub struct Batch {
    subscriber: &'static str,
    /// The cursor the batch was read after.
    pub after: i64,
    pub events: Vec<EventRecord>,
}

impl EventStream {
    /// The stream as `subscriber` sees it; a new subscriber starts before the oldest
    /// event still stored, so it misses nothing that is kept.
    pub async fn subscribe(store: &Store, subscriber: &'static str) -> Result<EventStream> {
        store
            .write_unaudited(
                "INSERT INTO event_cursors (subscriber, last_id, updated_at_ms) VALUES ($1, 0, $2)
                 ON CONFLICT (subscriber) DO NOTHING",
                sql_params![subscriber, now_ms()],
            )
            .await?;
        Ok(EventStream {
            store: store.clone(),
            subscriber,
        })
    }

    /// Up to `limit` events after the persisted cursor, oldest first.
    pub async fn next_batch(&self, limit: i64) -> Result<Batch> {
        let after = self
            .store
            .query_one_as(
                "SELECT last_id FROM event_cursors WHERE subscriber = $1",
                sql_params![self.subscriber],
            )
            .await?
            .unwrap_or(0);
        let events = self
            .store
            .query_as(
                "SELECT id, at_ms, source, kind, caller, host, path_template, operation, status, detail
                   FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                sql_params![after, limit],
            )
            .await?;
        Ok(Batch {
            subscriber: self.subscriber,
            after,
            events,
        })
    }

    /// Acknowledge a batch on its own (a subscriber with nothing else to commit).
    pub async fn ack(&self, batch: &Batch) -> Result<()> {
        let Mutation::Sql {
            statement, params, ..
        } = batch.ack()
        else {
            return Ok(());
        };
        match self.store.write_unaudited(statement, params).await? {
            1 => Ok(()),
            _ => Err(crate::StoreError::Conflict(format!(
                "the {} event cursor moved: another process handled this batch",
                self.subscriber
            ))),
        }
    }
}

impl Batch {
    /// The id of the last event in the batch (the cursor after it), if any.
    pub fn last_id(&self) -> Option<i64> {
        self.events.last().map(|e| e.id)
    }

    /// The step that moves the cursor past this batch, for the commit that records the
    /// batch's effects: it must find the cursor where the batch began, or the commit fails.
    pub fn ack(&self) -> Mutation {
        let Some(last) = self.last_id() else {
            return Mutation::None;
        };
        Mutation::Sql {
            statement: "UPDATE event_cursors SET last_id = $3, updated_at_ms = $4 WHERE subscriber = $1 AND last_id = $2",
            params: sql_params![self.subscriber, self.after, last, now_ms()],
            expect: Expect::One("event cursor at the batch's start"),
        }
    }

    /// The step that marks the batch routed by the alert pipeline (`delivered_at_ms`,
    /// read by the alert history and the retention prune).
    pub fn mark_routed(&self, now: i64) -> Mutation {
        let Some(last) = self.last_id() else {
            return Mutation::None;
        };
        Mutation::Sql {
            statement: "UPDATE events SET delivered_at_ms = $1 WHERE id > $2 AND id <= $3 AND delivered_at_ms IS NULL",
            params: sql_params![now, self.after, last],
            expect: Expect::Any,
        }
    }
}

/// What the events say about one connection's outbound side, for the console's
/// connections page (added with it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionSignals {
    /// Requests the marketplace answered 429 (after retries) since the window began.
    pub throttled: i64,
    /// The newest of those.
    pub last_throttled_ms: Option<i64>,
    /// The newest "authorization expiring" notice from the marketplace, if any is kept.
    pub auth_expiring_ms: Option<i64>,
}

impl Store {
    /// Rate-limit answers since `since_ms` and the newest authorization-expiring notice
    /// about `connection` (bounded by the events' retention; `at_ms` is indexed).
    pub async fn connection_signals(
        &self,
        connection: &str,
        since_ms: i64,
    ) -> Result<ConnectionSignals> {
        let caller = connection_caller(connection);
        let (throttled, last_throttled_ms): (i64, Option<i64>) = self
            .query_one_as(
                "SELECT COUNT(*), MAX(at_ms) FROM events
                  WHERE at_ms >= $2 AND caller = $1 AND status = 429",
                sql_params![caller.clone(), since_ms],
            )
            .await?
            .unwrap_or((0, None));
        let auth_expiring_ms: Option<i64> = self
            .query_one_as(
                "SELECT MAX(at_ms) FROM events WHERE caller = $1 AND kind = 'authorization_expiring'",
                sql_params![caller],
            )
            .await?
            .flatten();
        Ok(ConnectionSignals {
            throttled,
            last_throttled_ms,
            auth_expiring_ms,
        })
    }
}
