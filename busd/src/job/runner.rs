//! The runner: each job's own thread. [`spawn`] waits for a running slot, runs the
//! job's body, finishes the job with its outcome, lets it linger, and takes it off the
//! bus. The body moves its job along through a [`JobHandle`] (progress, canceller),
//! every write emitting `PropertiesChanged`. A body that fails, or panics, fails its
//! job, never the daemon.

use super::object::{emit_changed, Changed};
use super::registry::Jobs;
use super::state::{lock, Canceller, JobState, ResultMap, Shared};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use zbus::zvariant::OwnedObjectPath;

/// Why a job failed: its body's error, or a panic.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error: the job's thread panicked (see the daemon log)")]
    Panicked,
}

/// What a job's thread uses to move it along. All methods block briefly to emit
/// `PropertiesChanged`; call them from job threads, never from async code.
pub struct JobHandle {
    jobs: Arc<Jobs>,
    pub id: u32,
    pub path: OwnedObjectPath,
    data: Shared,
}

impl JobHandle {
    /// Put a new queued job on the bus.
    pub async fn create(
        jobs: &Arc<Jobs>,
        kind: &'static str,
        description: String,
        owner: u32,
    ) -> zbus::Result<JobHandle> {
        let e = jobs.add(kind, description, owner).await?;
        Ok(JobHandle {
            jobs: jobs.clone(),
            id: e.id,
            path: e.path,
            data: e.data,
        })
    }

    fn emit(&self, what: Changed) {
        let res = smol::block_on(emit_changed(self.jobs.conn(), &self.path, what));
        if let Err(e) = res {
            tracing::warn!("job {}: cannot emit PropertiesChanged: {e}", self.id);
        }
    }

    /// Wait for a free slot (the job stays `queued`), then go `running`. False if the
    /// job was cancelled while it waited (it is then finished as `cancelled`).
    fn start(&self) -> bool {
        if !self.jobs.slots().acquire(|| self.cancel_requested()) {
            self.finish_cancelled("cancelled before it started".into());
            return false;
        }
        lock(&self.data).state = JobState::Running;
        self.emit(Changed::State);
        true
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
    fn finish(&self, outcome: Result<ResultMap, JobError>) {
        self.jobs.slots().release();
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
                self.end(JobState::Failed, e.to_string(), Vec::new())
            }
        }
    }

    /// After the linger time, take the job off the bus (`JobRemoved` is sent).
    fn linger_and_remove(self) {
        std::thread::sleep(self.jobs.linger());
        if let Err(e) = smol::block_on(self.jobs.remove(self.id, &self.path)) {
            tracing::warn!("job {}: cannot remove it from the bus: {e}", self.id);
        }
    }
}

/// Run `body` as job `job` on its own thread: wait for a slot, run, finish, linger,
/// remove. A panic in `body` fails the job, not the daemon.
pub fn spawn<E>(
    job: JobHandle,
    body: impl FnOnce(&JobHandle) -> Result<ResultMap, E> + Send + 'static,
) where
    E: std::error::Error + Send + Sync + 'static,
{
    std::thread::Builder::new()
        .name(format!("job-{}", job.id))
        .spawn(move || {
            if job.start() {
                let out = match std::panic::catch_unwind(AssertUnwindSafe(|| body(&job))) {
                    Ok(r) => r.map_err(|e| JobError::Failed(Box::new(e))),
                    Err(_) => Err(JobError::Panicked),
                };
                job.finish(out);
            }
            job.linger_and_remove();
        })
        .expect("spawn a job thread");
}
