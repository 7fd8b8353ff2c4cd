//! The D-Bus face of a job: the object `/org/spirit/Spirit1/job/N`, interface
//! `org.spirit.Spirit1.Job`. Its properties read the job's [`JobData`](super::JobData); `Cancel` marks
//! it (and wakes the slot waiters, or interrupts a job that has a canceller); and
//! [`emit_changed`] sends `PropertiesChanged` for what the runner just wrote.

use super::slots::Slots;
use super::state::{lock, JobState, Shared, Val};
use crate::auth;
use crate::error::BusError;
use std::collections::HashMap;
use std::sync::Arc;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedValue, Str};
use zbus::Connection;

pub struct JobObject {
    data: Shared,
    slots: Arc<Slots>,
}

impl JobObject {
    pub fn new(data: Shared, slots: Arc<Slots>) -> JobObject {
        JobObject { data, slots }
    }
}

fn to_value(v: &Val) -> OwnedValue {
    match v {
        Val::U32(v) => OwnedValue::from(*v),
        Val::U64(v) => OwnedValue::from(*v),
        Val::Bool(v) => OwnedValue::from(*v),
        Val::Str(s) => OwnedValue::from(Str::from(s.clone())),
    }
}

#[zbus::interface(name = "org.spirit.Spirit1.Job")]
impl JobObject {
    /// Cancel the job: a queued job never starts; a migration not yet confirmed by the
    /// peer stops and the source process resumes. Other running jobs cannot be
    /// stopped halfway without harm to the process and answer NotCancellable.
    async fn cancel(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let who = auth::caller(conn, &hdr).await?;
        let mut d = lock(&self.data);
        if !who.is_root() && who.uid != d.owner {
            return Err(BusError::PermissionDenied(format!(
                "job {} belongs to uid {}; user {} may not cancel it",
                d.id, d.owner, who.name
            )));
        }
        match d.state {
            s if s.finished() => Err(BusError::NotCancellable(format!(
                "job {} has already finished ({})",
                d.id,
                s.as_str()
            ))),
            JobState::Queued => {
                d.cancel_requested = true;
                drop(d);
                self.slots.wake();
                Ok(())
            }
            _ => match d.canceller.take() {
                Some(c) => {
                    d.cancel_requested = true;
                    drop(d);
                    c();
                    Ok(())
                }
                None => Err(BusError::NotCancellable(format!(
                    "job {} ({}) is running and cannot stop halfway without harming the process; wait for it to finish",
                    d.id, d.kind
                ))),
            },
        }
    }

    #[zbus(property)]
    fn id(&self) -> u32 {
        lock(&self.data).id
    }
    /// checkpoint, restore, migrate or incoming.
    #[zbus(property)]
    fn kind(&self) -> String {
        lock(&self.data).kind.to_string()
    }
    #[zbus(property)]
    fn description(&self) -> String {
        lock(&self.data).description.clone()
    }
    /// The uid of the caller that started the job.
    #[zbus(property)]
    fn owner(&self) -> u32 {
        lock(&self.data).owner
    }
    #[zbus(property)]
    fn state(&self) -> String {
        lock(&self.data).state.as_str().to_string()
    }
    #[zbus(property)]
    fn progress(&self) -> f64 {
        lock(&self.data).progress()
    }
    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        lock(&self.data).bytes_done
    }
    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        lock(&self.data).bytes_total
    }
    #[zbus(property)]
    fn error(&self) -> String {
        lock(&self.data).error.clone()
    }
    #[zbus(property)]
    fn result(&self) -> HashMap<String, OwnedValue> {
        lock(&self.data)
            .result
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect()
    }
}

/// Which properties the runner changed.
#[derive(Clone, Copy, Debug)]
pub enum Changed {
    /// `State`.
    State,
    /// `BytesDone`, `BytesTotal`, `Progress`.
    Bytes,
    /// The end: `Result`, `Error`, `BytesDone`, `Progress`, then `State` last (a
    /// client that sees the final state can read the rest).
    Finish,
}

/// Send `PropertiesChanged` for `what` of the job object at `path`.
pub async fn emit_changed(
    conn: &Connection,
    path: &ObjectPath<'_>,
    what: Changed,
) -> zbus::Result<()> {
    let iref = conn.object_server().interface::<_, JobObject>(path).await?;
    let em = iref.signal_emitter();
    let obj = iref.get().await;
    match what {
        Changed::State => obj.state_changed(em).await?,
        Changed::Bytes => {
            obj.bytes_done_changed(em).await?;
            obj.bytes_total_changed(em).await?;
            obj.progress_changed(em).await?;
        }
        Changed::Finish => {
            obj.result_changed(em).await?;
            obj.error_changed(em).await?;
            obj.bytes_done_changed(em).await?;
            obj.progress_changed(em).await?;
            obj.state_changed(em).await?;
        }
    }
    Ok(())
}
