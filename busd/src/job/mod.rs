//! Jobs: the objects `/org/spirit/Spirit1/job/N` (interface `org.spirit.Spirit1.Job`)
//! whose properties follow a checkpoint, restore or migration as it runs.
//!
//! One way down, each module using only those before it:
//! - `state`: the state model ([`JobData`], [`JobState`], [`Val`]), plain data;
//! - `slots`: how many jobs may run at once;
//! - `object`: the D-Bus face ([`JobObject`]) that reads the state and takes `Cancel`;
//! - `registry`: all jobs ([`Jobs`]): numbering, paths, listing, on and off the bus;
//! - `runner`: a job's thread ([`spawn`]), moving it along through a [`JobHandle`].
//!
//! A finished job stays on the bus for `job_linger_secs`, then is removed and the
//! manager's `JobRemoved` is sent.

mod object;
mod registry;
mod runner;
mod slots;
mod state;

pub use object::JobObject;
pub use registry::{job_path, JobRow, Jobs};
pub use runner::{spawn, JobError, JobHandle};
pub use state::{Canceller, JobData, JobState, ResultMap, Val};
