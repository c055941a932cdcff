//! The scheduled backups this process runs (`[backup]`), started with the server and
//! stopped with it. The work is stockade-backup's `schedule`; this file only wires the
//! settings, the store and a stop signal.

use std::time::Duration;

use stockade_backup::crypt::Encryption;
use stockade_backup::schedule::Schedule;
use stockade_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::Settings;

/// The running schedule.
#[derive(Debug)]
pub struct BackupTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Start the schedule when `[backup] every` is set. The settings were checked when they
/// were read; what can still fail here (the directory) is logged, and each run then
/// fails visibly (a failed `backups` row and an alert) rather than stopping the server.
pub fn start(settings: &Settings, store: &Store) -> Option<BackupTask> {
    let Some(b) = settings.backup.as_ref() else {
        // The compliance evidence reads the schedule from the database: say it is off.
        let store = store.clone();
        tokio::spawn(
            async move { stockade_backup::schedule::record_schedule(&store, None, 0).await },
        );
        return None;
    };
    let encryption = match Encryption::from_args(&b.recipients, None) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("[backup] recipients: {e}; scheduled backups are off");
            return None;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&b.dir) {
        tracing::error!("[backup] dir {} cannot be created: {e}", b.dir.display());
    }
    let schedule = Schedule {
        every: b.every,
        keep: b.keep,
        dir: b.dir.clone(),
        encryption,
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(stockade_backup::schedule::run(
        store.clone(),
        settings.database.clone(),
        settings.data_dir.clone(),
        schedule,
        rx,
    ));
    Some(BackupTask { stop, task })
}

impl BackupTask {
    /// Stop between runs; a run in progress gets `within`, then is abandoned (its scratch
    /// and temp files are removed as it unwinds; nothing half-written is left in place).
    pub async fn stop(self, within: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
        }
    }
}
