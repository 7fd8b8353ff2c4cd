//! The manager object `/org/spirit/Spirit1`, interface `org.spirit.Spirit1.Manager`:
//! checks the call (arguments, options, the caller's rights), creates the job object
//! and hands the work to a job thread. Documented in `busd/org.spirit.Spirit1.xml`.

use crate::auth::{self, Identity};
use crate::ctx::Ctx;
use crate::error::BusError;
use crate::job::{self, JobHandle, JobRow};
use crate::{local, peer};
use std::collections::HashMap;
use std::sync::Arc;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

pub const FEATURES: &[&str] = &[
    "checkpoint",
    "restore",
    "migrate",
    "peer-noise-xx-25519-chachapoly-blake2s",
];

pub struct Manager {
    pub ctx: Arc<Ctx>,
}

type Opts = HashMap<String, OwnedValue>;

/// Read the options `known` (all booleans) from `opts`; any other key is an error, so
/// a misspelt option is not silently ignored.
fn bool_opts<const N: usize>(opts: &Opts, known: [&str; N]) -> Result<[bool; N], BusError> {
    let mut out = [false; N];
    for (k, v) in opts {
        let Some(i) = known.iter().position(|n| n == k) else {
            return Err(BusError::InvalidArgument(format!(
                "unknown option {k:?}; this call takes {known:?} (booleans)"
            )));
        };
        match &**v {
            Value::Bool(b) => out[i] = *b,
            other => {
                return Err(BusError::InvalidArgument(format!(
                    "option {k:?} must be a boolean (b), not {}",
                    other.value_signature()
                )))
            }
        }
    }
    Ok(out)
}

fn absolute(image: &str) -> Result<(), BusError> {
    if image.starts_with('/') {
        Ok(())
    } else {
        Err(BusError::InvalidArgument(format!(
            "image path {image:?} must be absolute (the daemon has no working directory of yours)"
        )))
    }
}

impl Manager {
    async fn caller(&self, hdr: &Header<'_>) -> Result<Identity, BusError> {
        auth::caller(&self.ctx.conn, hdr).await
    }
}

#[zbus::interface(name = "org.spirit.Spirit1.Manager")]
impl Manager {
    /// Checkpoint process `pid` into the file `image` (absolute path, written with
    /// the caller's identity). Options: `leave_running` (b): let the process run on
    /// instead of ending it. Returns the job.
    async fn checkpoint(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        pid: u32,
        image: String,
        opts: Opts,
    ) -> Result<OwnedObjectPath, BusError> {
        let who = self.caller(&hdr).await?;
        let [leave_running] = bool_opts(&opts, ["leave_running"])?;
        absolute(&image)?;
        auth::may_touch(&who, pid)?;
        let desc = format!("checkpoint pid {pid} into {image}");
        let job = JobHandle::create(&self.ctx.jobs, "checkpoint", desc, who.uid).await?;
        let path = job.path.clone();
        let ctx = self.ctx.clone();
        job::spawn(job, move |j| {
            local::checkpoint(j, &ctx, &who, pid, &image, leave_running)
        });
        Ok(path)
    }

    /// Restore the process in the file `image` (absolute path, read with the caller's
    /// identity). Options: `new_pid` (b): fresh pid and tids instead of the original
    /// ones (always the case for callers other than root). Returns the job.
    async fn restore(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        image: String,
        opts: Opts,
    ) -> Result<OwnedObjectPath, BusError> {
        let who = self.caller(&hdr).await?;
        let [new_pid] = bool_opts(&opts, ["new_pid"])?;
        absolute(&image)?;
        let new_pid = new_pid || !who.is_root();
        let desc = format!("restore {image}");
        let job = JobHandle::create(&self.ctx.jobs, "restore", desc, who.uid).await?;
        let path = job.path.clone();
        let ctx = self.ctx.clone();
        job::spawn(job, move |j| local::restore(j, &ctx, &who, &image, new_pid));
        Ok(path)
    }

    /// Migrate process `pid` to the configured peer `peer`: it stays frozen while its
    /// image streams to the peer, and ends only once the peer confirms the restored
    /// process runs; on any failure before that it resumes. Options: `keep_source`
    /// (b): leave the source running (a copy); `pid_ns` (b): restore on the peer in a
    /// new pid namespace, keeping the pids (root only there). Returns the job.
    async fn migrate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        pid: u32,
        peer: String,
        opts: Opts,
    ) -> Result<OwnedObjectPath, BusError> {
        let who = self.caller(&hdr).await?;
        let [keep_source, pid_ns] = bool_opts(&opts, ["keep_source", "pid_ns"])?;
        let Some(p) = self.ctx.cfg.peer(&peer).cloned() else {
            let names: Vec<&str> = self.ctx.cfg.peers.iter().map(|p| p.name.as_str()).collect();
            return Err(BusError::UnknownPeer(format!(
                "no peer called {peer:?} in the configuration (known: {names:?})"
            )));
        };
        auth::may_touch(&who, pid)?;
        let desc = format!("migrate pid {pid} to {peer}");
        let job = JobHandle::create(&self.ctx.jobs, "migrate", desc, who.uid).await?;
        let path = job.path.clone();
        let ctx = self.ctx.clone();
        job::spawn(job, move |j| {
            peer::migrate(j, &ctx, &who, pid, &p, keep_source, pid_ns)
        });
        Ok(path)
    }

    /// All jobs: (id, kind, state, progress, description, object path).
    fn list_jobs(&self) -> Vec<JobRow> {
        self.ctx.jobs.list()
    }

    /// The configured peers: (name, address, public key).
    fn list_peers(&self) -> Vec<(String, String, String)> {
        self.ctx
            .cfg
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.address.to_string(), p.public_key.clone()))
            .collect()
    }

    /// A job left the bus (some time after it finished): its id, path and final state.
    /// Sent by the job registry (`job::Jobs::remove`), which owns the jobs' life on the
    /// bus; declared here so introspection shows it on the manager's interface.
    #[zbus(signal)]
    pub async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        state: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    #[zbus(property)]
    fn features(&self) -> Vec<String> {
        FEATURES.iter().map(|s| s.to_string()).collect()
    }

    /// This daemon's identity public key (hex), for peers' configurations.
    #[zbus(property)]
    fn public_key(&self) -> String {
        self.ctx.key.public_hex()
    }
}
