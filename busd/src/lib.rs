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

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod job;
mod local;
pub mod manager;
pub mod peer;
mod worker;

pub use config::Config;
pub use error::{BusError, StartError};

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use zbus::Connection;

pub const BUS_NAME: &str = "org.spirit.Spirit1";

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

/// What the daemon's jobs share.
pub struct Ctx {
    pub conn: Connection,
    pub cfg: Config,
    /// The `spirit` binary run for each job.
    pub worker: PathBuf,
    pub jobs: job::Jobs,
    pub key: peer::Keypair,
    /// Incoming migrations now running.
    pub incoming: AtomicUsize,
}

/// Serve on `bus` until killed.
pub fn run(bus: &Bus, cfg: Config, worker: PathBuf) -> Result<(), StartError> {
    if !worker.is_file() {
        return Err(StartError::NoWorker { path: worker });
    }
    let key = peer::load_or_create(&cfg.state_dir)?;
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
        let ctx = std::sync::Arc::new(Ctx {
            conn: conn.clone(),
            jobs: job::Jobs::new(cfg.limits.max_jobs),
            incoming: AtomicUsize::new(0),
            cfg,
            worker,
            key,
        });
        conn.object_server()
            .at(job::MANAGER_PATH, manager::Manager { ctx: ctx.clone() })
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
