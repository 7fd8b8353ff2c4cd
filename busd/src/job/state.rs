//! The job state model: what a job is and shows ([`JobData`]: kind, owner, state,
//! bytes, error, result), its life ([`JobState`]) and its `Result` values ([`Val`]).
//! Plain data, no D-Bus: the object (`object`) reads it, the runner (`runner`) writes
//! it, both through the same [`Shared`] lock.

use std::sync::{Arc, Mutex, MutexGuard};

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
    /// A new `queued` job.
    pub fn new(id: u32, kind: &'static str, description: String, owner: u32) -> JobData {
        JobData {
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
        }
    }

    /// 0.0 to 1.0: bytes done of bytes total, 1.0 once done.
    pub fn progress(&self) -> f64 {
        if self.state == JobState::Done {
            1.0
        } else if self.bytes_total > 0 {
            (self.bytes_done as f64 / self.bytes_total as f64).min(1.0)
        } else {
            0.0
        }
    }
}

/// A job's data as the object and the runner share it.
pub type Shared = Arc<Mutex<JobData>>;

/// Lock a job's data (a thread that panicked holding it left consistent data: every
/// write is a plain field store).
pub fn lock(d: &Shared) -> MutexGuard<'_, JobData> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_follows_bytes_and_is_whole_when_done() {
        let mut d = JobData::new(1, "checkpoint", String::new(), 0);
        assert_eq!(d.progress(), 0.0);
        d.bytes_total = 4;
        d.bytes_done = 1;
        assert_eq!(d.progress(), 0.25);
        d.bytes_done = 9;
        assert_eq!(d.progress(), 1.0);
        d.bytes_total = 0;
        d.state = JobState::Done;
        assert_eq!(d.progress(), 1.0);
        assert!(d.state.finished() && !JobState::Running.finished());
    }
}
