//! What the daemon's jobs share ([`Ctx`]): the bus connection, the configuration, the
//! worker binary, the job registry, the identity key and the count of incoming
//! migrations. Built once by `run`; the manager and the peer listener hand it to the
//! job bodies they start.

use crate::config::Config;
use crate::job::Jobs;
use crate::keys::Keypair;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use zbus::Connection;

pub struct Ctx {
    pub conn: Connection,
    pub cfg: Config,
    /// The `spirit` binary run for each job.
    pub worker: PathBuf,
    pub jobs: Arc<Jobs>,
    pub key: Keypair,
    /// Incoming migrations now running.
    pub incoming: AtomicUsize,
}
