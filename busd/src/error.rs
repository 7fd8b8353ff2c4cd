//! Errors: the D-Bus errors callers see (`org.spirit.Spirit1.Error.*`) and the errors
//! that stop the daemon from starting. The errors of one component (a worker, a peer
//! link, a migration...) live beside it; a job's failure becomes its `Error` property.

use std::path::PathBuf;

/// Errors returned to D-Bus callers. Each message says what was refused, why, and what
/// to do.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.spirit.Spirit1.Error")]
pub enum BusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller may not act on that process, image or job.
    PermissionDenied(String),
    /// No process with that pid.
    NoSuchProcess(String),
    /// A malformed argument or option.
    InvalidArgument(String),
    /// No peer of that name in the configuration.
    UnknownPeer(String),
    /// The job cannot be cancelled in its current state.
    NotCancellable(String),
}

/// Errors that keep the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot connect to the D-Bus bus {bus}: {source}")]
    Bus {
        bus: String,
        source: Box<zbus::Error>,
    },
    #[error("cannot own the bus name org.spirit.Spirit1 on {bus}: {source} (is another spiritd running, or does the bus policy forbid it?)")]
    Name {
        bus: String,
        source: Box<zbus::Error>,
    },
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error("cannot listen for peers on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("no worker binary at {path}: set `worker` in the configuration or --worker")]
    NoWorker { path: PathBuf },
}
