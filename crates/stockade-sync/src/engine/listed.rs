//! Which SKUs each connection lists, in memory, so an ingest batch wakes only the
//! pushers with a listing among the SKUs it changed (not every connection's pusher on
//! every batch). Reloaded on every registry refresh; until a reload after a catalog
//! change (`wake_pushers` marks it stale) every pusher is woken, as before. A pusher
//! that is not woken still looks for work on its own tick, so a stale entry delays a
//! push by at most that tick, never loses it.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use stockade_store::Store;

const LISTED: &str = "SELECT connection_id, sku FROM listings";

#[derive(Debug, Default)]
pub(super) struct Listed {
    by_connection: RwLock<HashMap<i64, HashSet<String>>>,
    /// Bumped by every catalog change; a reload is current when it saw the newest.
    generation: AtomicU64,
    /// The generation the map was loaded at (`u64::MAX`: never loaded).
    loaded: AtomicU64,
}

impl Listed {
    pub(super) fn new() -> Self {
        Listed {
            loaded: AtomicU64::new(u64::MAX),
            ..Listed::default()
        }
    }

    /// Listings may have changed: wake every pusher until the next reload.
    pub(super) fn mark_stale(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) async fn reload(&self, store: &Store) -> stockade_store::Result<()> {
        let at = self.generation.load(Ordering::SeqCst);
        let rows: Vec<(i64, String)> = store.query_as(LISTED, vec![]).await?;
        let mut map: HashMap<i64, HashSet<String>> = HashMap::new();
        for (c, sku) in rows {
            map.entry(c).or_default().insert(sku);
        }
        if let Ok(mut m) = self.by_connection.write() {
            *m = map;
            self.loaded.store(at, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Whether `connection`'s pusher has work from a batch that changed `skus` (true
    /// when not known for sure).
    pub(super) fn wants(&self, connection: i64, skus: &HashSet<String>) -> bool {
        if self.loaded.load(Ordering::SeqCst) != self.generation.load(Ordering::SeqCst) {
            return true;
        }
        let Ok(m) = self.by_connection.read() else {
            return true;
        };
        m.get(&connection)
            .is_some_and(|listed| skus.iter().any(|s| listed.contains(s)))
    }
}

impl super::SyncEngine {
    /// Batch notices sent to `connection`'s pusher since it started (None: not running).
    pub fn pusher_notices(&self, connection: &str) -> Option<u64> {
        self.get_live(connection)
            .map(|l| l.woken.load(Ordering::Relaxed))
    }
}
