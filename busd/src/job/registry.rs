//! The registry of this daemon's jobs: numbers them, puts each on the bus at
//! [`job_path`] (as a [`JobObject`]), lists them for `ListJobs`, and takes a finished
//! one off the bus again, announcing it with the manager's `JobRemoved` signal. It
//! also holds what every job shares: the bus connection, the running slots and how
//! long a finished job lingers.

use super::object::JobObject;
use super::slots::Slots;
use super::state::{lock, JobData, Shared};
use crate::names::{MANAGER_INTERFACE, MANAGER_PATH};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zbus::names::BusName;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};
use zbus::Connection;

/// All jobs of this daemon.
pub struct Jobs {
    conn: Connection,
    next: AtomicU32,
    map: Mutex<BTreeMap<u32, Shared>>,
    slots: Arc<Slots>,
    linger: Duration,
}

/// One row of `ListJobs`: id, kind, state, progress, description, object path.
pub type JobRow = (u32, String, String, f64, String, OwnedObjectPath);

/// A job just put on the bus.
pub struct Entry {
    pub id: u32,
    pub path: OwnedObjectPath,
    pub data: Shared,
}

/// The object path of job `id`.
pub fn job_path(id: u32) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{MANAGER_PATH}/job/{id}")).expect("valid object path")
}

impl Jobs {
    /// Jobs served on `conn`: at most `max_jobs` run at once, and a finished one stays
    /// on the bus for `linger`.
    pub fn new(conn: Connection, max_jobs: usize, linger: Duration) -> Jobs {
        Jobs {
            conn,
            next: AtomicU32::new(1),
            map: Mutex::new(BTreeMap::new()),
            slots: Arc::new(Slots::new(max_jobs)),
            linger,
        }
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    pub fn linger(&self) -> Duration {
        self.linger
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Shared>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list(&self) -> Vec<JobRow> {
        self.map()
            .values()
            .map(|d| {
                let d = lock(d);
                (
                    d.id,
                    d.kind.to_string(),
                    d.state.as_str().to_string(),
                    d.progress(),
                    d.description.clone(),
                    job_path(d.id),
                )
            })
            .collect()
    }

    /// Put a new queued job on the bus.
    pub async fn add(
        &self,
        kind: &'static str,
        description: String,
        owner: u32,
    ) -> zbus::Result<Entry> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let data = Arc::new(Mutex::new(JobData::new(id, kind, description, owner)));
        let path = job_path(id);
        self.conn
            .object_server()
            .at(&path, JobObject::new(data.clone(), self.slots.clone()))
            .await?;
        self.map().insert(id, data.clone());
        Ok(Entry { id, path, data })
    }

    /// Take job `id` off the bus and send `JobRemoved(id, path, final state)` (declared
    /// on the manager's interface, `manager::Manager::job_removed`, for introspection).
    pub async fn remove(&self, id: u32, path: &ObjectPath<'_>) -> zbus::Result<()> {
        let Some(data) = self.map().remove(&id) else {
            return Ok(());
        };
        let state = lock(&data).state.as_str();
        self.conn
            .object_server()
            .remove::<JobObject, _>(path)
            .await?;
        self.conn
            .emit_signal(
                None::<BusName<'_>>,
                MANAGER_PATH,
                MANAGER_INTERFACE,
                "JobRemoved",
                &(id, path, state),
            )
            .await
    }
}
