//! Job objects: `/org/spirit/Spirit1/job/N` with interface `org.spirit.Spirit1.Job`.
//!
//! A job's state lives in a [`JobData`] shared between the D-Bus object (which reads
//! it for property gets and `Cancel`) and the thread that runs the job (which writes it
//! through a [`JobHandle`]; every write emits `PropertiesChanged`). A finished job
//! stays on the bus for `job_linger_secs`, then is removed and the manager sends
//! `JobRemoved`.

use crate::auth;
use crate::error::BusError;
use crate::Ctx;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Str};
use zbus::Connection;

pub const MANAGER_PATH: &str = "/org/spirit/Spirit1";

/// A job's life: `queued` → `running` → `done` | `failed` | `cancelled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    pub fn finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// One value of a job's `Result` dictionary.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    U32(u32),
    U64(u64),
    Bool(bool),
    Str(String),
}

impl Val {
    fn to_owned_value(&self) -> OwnedValue {
        match self {
            Val::U32(v) => OwnedValue::from(*v),
            Val::U64(v) => OwnedValue::from(*v),
            Val::Bool(v) => OwnedValue::from(*v),
            Val::Str(s) => OwnedValue::from(Str::from(s.clone())),
        }
    }
}

/// A job's `Result`: filled when it is `done`.
pub type ResultMap = Vec<(String, Val)>;

/// How a running job is interrupted by `Cancel()` (only jobs that can stop without
/// harm have one: a migration before the peer confirmed).
pub type Canceller = Box<dyn Fn() + Send>;

/// Everything a job shows.
pub struct JobData {
    pub id: u32,
    pub kind: &'static str,
    pub description: String,
    pub owner: u32,
    pub state: JobState,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub error: String,
    pub result: ResultMap,
    pub cancel_requested: bool,
    pub canceller: Option<Canceller>,
}

impl JobData {
    fn progress(&self) -> f64 {
        if self.state == JobState::Done {
            1.0
        } else if self.bytes_total > 0 {
            (self.bytes_done as f64 / self.bytes_total as f64).min(1.0)
        } else {
            0.0
        }
    }
}

type Shared = Arc<Mutex<JobData>>;

fn lock(d: &Shared) -> std::sync::MutexGuard<'_, JobData> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// The D-Bus face of a job.
pub struct JobObject {
    data: Shared,
    wake: Arc<Slots>,
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
                self.wake.cv.notify_all();
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
            .map(|(k, v)| (k.clone(), v.to_owned_value()))
            .collect()
    }
}

/// Slots for running jobs: at most `max_jobs` run, the rest wait `queued`.
pub struct Slots {
    used: Mutex<usize>,
    cv: Condvar,
    max: usize,
}

/// All jobs of this daemon.
pub struct Jobs {
    next: AtomicU32,
    map: Mutex<BTreeMap<u32, Shared>>,
    slots: Arc<Slots>,
}

/// One row of `ListJobs`: id, kind, state, progress, description, object path.
pub type JobRow = (u32, String, String, f64, String, OwnedObjectPath);

pub fn job_path(id: u32) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{MANAGER_PATH}/job/{id}")).expect("valid object path")
}

impl Jobs {
    pub fn new(max_jobs: usize) -> Jobs {
        Jobs {
            next: AtomicU32::new(1),
            map: Mutex::new(BTreeMap::new()),
            slots: Arc::new(Slots {
                used: Mutex::new(0),
                cv: Condvar::new(),
                max: max_jobs.max(1),
            }),
        }
    }

    pub fn list(&self) -> Vec<JobRow> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
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
    pub async fn create(
        ctx: &Arc<Ctx>,
        kind: &'static str,
        description: String,
        owner: u32,
    ) -> Result<JobHandle, BusError> {
        let id = ctx.jobs.next.fetch_add(1, Ordering::Relaxed);
        let data = Arc::new(Mutex::new(JobData {
            id,
            kind,
            description,
            owner,
            state: JobState::Queued,
            bytes_done: 0,
            bytes_total: 0,
            error: String::new(),
            result: Vec::new(),
            cancel_requested: false,
            canceller: None,
        }));
        let path = job_path(id);
        ctx.conn
            .object_server()
            .at(
                &path,
                JobObject {
                    data: data.clone(),
                    wake: ctx.jobs.slots.clone(),
                },
            )
            .await?;
        ctx.jobs
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, data.clone());
        Ok(JobHandle {
            ctx: ctx.clone(),
            id,
            path,
            data,
        })
    }
}

/// What a job's thread uses to move it along. All methods block briefly to emit
/// `PropertiesChanged`; call them from job threads, never from async code.
pub struct JobHandle {
    ctx: Arc<Ctx>,
    pub id: u32,
    pub path: OwnedObjectPath,
    data: Shared,
}

/// Which properties changed.
#[derive(Clone, Copy)]
enum Changed {
    State,
    Bytes,
    Finish,
}

impl JobHandle {
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    fn emit(&self, what: Changed) {
        let server = self.ctx.conn.object_server();
        let res: zbus::Result<()> = smol::block_on(async {
            let iref = server.interface::<_, JobObject>(&self.path).await?;
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
        });
        if let Err(e) = res {
            tracing::warn!("job {}: cannot emit PropertiesChanged: {e}", self.id);
        }
    }

    /// Wait for a free slot (the job stays `queued`), then go `running`. False if the
    /// job was cancelled while it waited (it is then finished as `cancelled`).
    pub fn start(&self) -> bool {
        let slots = &self.ctx.jobs.slots;
        let mut used = slots.used.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if lock(&self.data).cancel_requested {
                drop(used);
                self.finish_cancelled("cancelled before it started".into());
                return false;
            }
            if *used < slots.max {
                *used += 1;
                break;
            }
            used = slots
                .cv
                .wait_timeout(used, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(used);
        lock(&self.data).state = JobState::Running;
        self.emit(Changed::State);
        true
    }

    fn release_slot(&self) {
        let slots = &self.ctx.jobs.slots;
        let mut used = slots.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(1);
        slots.cv.notify_all();
    }

    pub fn progress(&self, done: u64, total: u64) {
        {
            let mut d = lock(&self.data);
            if d.bytes_done == done && d.bytes_total == total {
                return;
            }
            d.bytes_done = done;
            d.bytes_total = total;
        }
        self.emit(Changed::Bytes);
    }

    /// Let `Cancel()` interrupt the running job with `c` (None: not any more).
    pub fn set_canceller(&self, c: Option<Canceller>) {
        lock(&self.data).canceller = c;
    }

    pub fn cancel_requested(&self) -> bool {
        lock(&self.data).cancel_requested
    }

    fn end(&self, state: JobState, error: String, result: ResultMap) {
        {
            let mut d = lock(&self.data);
            d.state = state;
            d.error = error;
            d.result = result;
            d.canceller = None;
            if state == JobState::Done {
                d.bytes_done = d.bytes_total;
            }
        }
        self.emit(Changed::Finish);
    }

    fn finish_cancelled(&self, why: String) {
        tracing::info!("job {} cancelled: {why}", self.id);
        self.end(JobState::Cancelled, why, Vec::new());
    }

    /// Finish a job that ran (it held a slot): done with `result`, or failed (or
    /// cancelled, when a cancel was asked) with the error message.
    pub fn finish(&self, outcome: Result<ResultMap, String>) {
        self.release_slot();
        match outcome {
            Ok(r) => {
                tracing::info!("job {} done", self.id);
                self.end(JobState::Done, String::new(), r)
            }
            Err(e) if self.cancel_requested() => {
                self.finish_cancelled(format!("cancelled on request: {e}"))
            }
            Err(e) => {
                tracing::warn!("job {} failed: {e}", self.id);
                self.end(JobState::Failed, e, Vec::new())
            }
        }
    }

    /// After the linger time, take the job off the bus and send `JobRemoved`.
    pub fn linger_and_remove(self) {
        std::thread::sleep(Duration::from_secs(self.ctx.cfg.job_linger_secs));
        self.ctx
            .jobs
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        let state = lock(&self.data).state.as_str();
        let conn = &self.ctx.conn;
        let res: zbus::Result<()> = smol::block_on(async {
            conn.object_server()
                .remove::<JobObject, _>(&self.path)
                .await?;
            let em = SignalEmitter::new(conn, MANAGER_PATH)?;
            crate::manager::Manager::job_removed(&em, self.id, self.path.as_ref(), state).await
        });
        if let Err(e) = res {
            tracing::warn!("job {}: cannot remove it from the bus: {e}", self.id);
        }
    }
}

/// Run `body` as job `job` on its own thread: wait for a slot, run, finish, linger,
/// remove. A panic in `body` fails the job, not the daemon.
pub fn spawn(
    job: JobHandle,
    body: impl FnOnce(&JobHandle) -> Result<ResultMap, String> + Send + 'static,
) {
    std::thread::Builder::new()
        .name(format!("job-{}", job.id))
        .spawn(move || {
            if job.start() {
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&job)))
                    .unwrap_or_else(|_| {
                        Err("internal error: the job's thread panicked (see the daemon log)".into())
                    });
                job.finish(out);
            }
            job.linger_and_remove();
        })
        .expect("spawn a job thread");
}
