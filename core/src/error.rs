//! spirit's errors: one variant per thing a user can get wrong, each with a message
//! that says what, where and what to do, and a distinct process exit code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no process with pid {pid}: check the pid (`ps -p {pid}`)")]
    NoSuchProcess { pid: i32 },

    #[error("not permitted to checkpoint pid {pid}: {reason}")]
    PermissionDenied { pid: i32, reason: String },

    #[error("not permitted to restore: {reason}")]
    RestoreNotPermitted { reason: String },

    #[error("pid {pid}: fd {fd} is {kind} ({target}), which spirit cannot checkpoint yet; close it in the program or leave it out with --skip-fd {fd}")]
    UnsupportedFd {
        pid: i32,
        fd: i32,
        kind: String,
        target: String,
    },

    /// A state other than a descriptor (a memory area, a thread's state...) that spirit
    /// cannot restore as it is: refused rather than restored as something else.
    #[error("pid {pid}: {what}; spirit cannot checkpoint this yet")]
    Unsupported { pid: i32, what: String },

    #[error("{path}: not a spirit image (bad magic bytes)")]
    NotAnImage { path: String },

    #[error("{path}: image is truncated at byte {offset} ({what}); the checkpoint was cut short or the copy is incomplete")]
    Truncated {
        path: String,
        offset: u64,
        what: String,
    },

    #[error("{path}: image is corrupt at byte {offset}: {what}")]
    Corrupt {
        path: String,
        offset: u64,
        what: String,
    },

    #[error("{path}: image format version {found} is not supported by this spirit (reads {supported}); use a spirit at least as new as the one that wrote it")]
    Version {
        path: String,
        found: String,
        supported: String,
    },

    #[error("this CPU cannot run the checkpointed process: it lacks {missing} (image taken on \"{image_cpu}\")")]
    CpuMismatch { missing: String, image_cpu: String },

    #[error("pid {pid} is in use on this host; the restore needs it free to keep the original pids: pass --pid-ns to restore into a new pid namespace keeping them, or --new-pid for fresh pids")]
    PidInUse { pid: i32 },

    #[error("{path}: {what}")]
    FileMismatch { path: String, what: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("restore failed: {0}")]
    Restore(String),

    #[error("checkpoint of pid {pid} failed: {msg}")]
    Dump { pid: i32, msg: String },

    /// A restore child's own failure, reported back to the restorer.
    #[error("{msg}")]
    InChild { code: i32, msg: String },

    #[error(transparent)]
    Kernel(#[from] spirit_kmod::Error),
}

impl Error {
    /// The exit code `spirit` ends with for this error (documented in the README).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoSuchProcess { .. } => 3,
            Error::PermissionDenied { .. } | Error::RestoreNotPermitted { .. } => 4,
            Error::UnsupportedFd { .. } | Error::Unsupported { .. } => 5,
            Error::NotAnImage { .. } | Error::Corrupt { .. } => 6,
            Error::Truncated { .. } => 7,
            Error::Version { .. } => 8,
            Error::CpuMismatch { .. } => 9,
            Error::PidInUse { .. } => 10,
            Error::FileMismatch { .. } => 11,
            Error::Io { .. } => 12,
            Error::InChild { code, .. } => *code,
            Error::Restore(_) | Error::Dump { .. } | Error::Kernel(_) => 1,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
