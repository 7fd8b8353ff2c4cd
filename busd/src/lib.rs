//! spirit's D-Bus service, `spiritd`.
//!
//! It owns the bus name `org.spirit.Spirit1`: the manager object (`manager`) takes
//! `Checkpoint`, `Restore` and `Migrate` calls, checks the caller's rights from the
//! bus credentials (`auth`), and answers at once with a job object (`job`) whose
//! properties follow the work. Each job runs on its own thread, which runs a `spirit`
//! worker process with the caller's identity (`worker`, `local`): the daemon itself
//! never ptraces, and a crashing worker only fails its job.
//!
//! Migrations go to other hosts' daemons over authenticated, encrypted peer links
//! (`peer`): the image streams from the dump worker on the frozen source, through the
//! link, into the restore worker on the target, and the source ends the original only
//! when the target confirmed. The configuration (`config`, TOML) lists peers and
//! limits. The interface is documented in `busd/org.spirit.Spirit1.xml`.
//!
//! Dependencies point one way, each module using only those listed before it:
//! `names`, `keys`, `config`, `error`, `auth`, `job` (itself layered: state, slots,
//! object, registry, runner), `ctx`, `worker`, `local`, `peer`, `manager`, and this
//! file, which builds the [`Ctx`] and serves. (`client` is the callers' side and uses
//! none of them.) Each component has its own error enum; a job's error becomes the
//! job's `Error` property, a call's a D-Bus error ([`BusError`]).

pub mod auth;
pub mod client;
pub mod config;
mod ctx;
pub mod error;
pub mod job;
pub mod keys;
mod local;
pub mod manager;
pub mod names;
pub mod peer;
mod worker;

pub use config::Config;
pub use ctx::Ctx;
pub use error::{BusError, StartError};
pub use names::BUS_NAME;

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// Which bus to serve on.
#[derive(Debug, Clone)]
pub enum Bus {
    System,
    Session,
    /// A D-Bus address, e.g. `unix:path=/run/x/bus`.
    Address(String),
}

impl Bus {
    /// `system`, `session`, or an address.
    pub fn parse(s: &str) -> Bus {
        match s {
            "system" => Bus::System,
            "session" => Bus::Session,
            a => Bus::Address(a.to_string()),
        }
    }

    fn builder(&self) -> zbus::Result<zbus::connection::Builder<'static>> {
        match self {
            Bus::System => zbus::connection::Builder::system(),
            Bus::Session => zbus::connection::Builder::session(),
            Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
        }
    }

    fn name(&self) -> String {
        match self {
            Bus::System => "system bus".into(),
            Bus::Session => "session bus".into(),
            Bus::Address(a) => a.clone(),
        }
    }
}

/// Serve on `bus` until killed.
pub fn run(bus: &Bus, cfg: Config, worker: PathBuf) -> Result<(), StartError> {
    if !worker.is_file() {
        return Err(StartError::NoWorker { path: worker });
    }
    let key = keys::load_or_create(&cfg.state_dir)?;
    smol::block_on(async {
        let bus_err = |source| StartError::Bus {
            bus: bus.name(),
            source: Box::new(source),
        };
        let conn = bus
            .builder()
            .map_err(bus_err)?
            .build()
            .await
            .map_err(bus_err)?;
        let linger = Duration::from_secs(cfg.job_linger_secs);
        let ctx = Arc::new(Ctx {
            conn: conn.clone(),
            jobs: Arc::new(job::Jobs::new(conn.clone(), cfg.limits.max_jobs, linger)),
            incoming: AtomicUsize::new(0),
            cfg,
            worker,
            key,
        });
        conn.object_server()
            .at(names::MANAGER_PATH, manager::Manager { ctx: ctx.clone() })
            .await
            .map_err(bus_err)?;
        if let Some(addr) = ctx.cfg.listen {
            peer::listen(ctx.clone(), addr)?;
        }
        conn.request_name(BUS_NAME)
            .await
            .map_err(|source| StartError::Name {
                bus: bus.name(),
                source: Box::new(source),
            })?;
        tracing::info!(
            "spiritd {} serving {BUS_NAME} on {}, identity key {}",
            env!("CARGO_PKG_VERSION"),
            bus.name(),
            ctx.key.public_hex()
        );
        std::future::pending::<()>().await;
        Ok(())
    })
}
