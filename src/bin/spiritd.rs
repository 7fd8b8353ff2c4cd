//! `spiritd`: spirit's D-Bus service (see the spirit-busd crate and DESIGN.md, "busd").

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "spiritd",
    version,
    about = "spirit's D-Bus service: checkpoint, restore and migrate on behalf of bus callers"
)]
struct Args {
    /// The bus to serve on: system, session, or a D-Bus address (unix:path=...).
    #[arg(long, default_value = "system")]
    bus: String,
    /// Configuration file (TOML; see dist/spiritd.toml). Without it, defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (identity key); overrides the configuration's state_dir.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The spirit binary that runs each job; overrides the configuration's worker.
    #[arg(long)]
    worker: Option<PathBuf>,
    /// Print this daemon's identity public key (creating it on first use) and exit.
    #[arg(long)]
    show_key: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPIRIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    if let Err(e) = run(a) {
        eprintln!("spiritd: error: {e}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> Result<(), spirit_busd::StartError> {
    let mut cfg = match &a.config {
        Some(p) => spirit_busd::Config::load(p)?,
        None => spirit_busd::Config::default(),
    };
    if let Some(d) = a.state_dir {
        cfg.state_dir = d;
    }
    if a.show_key {
        let key = spirit_busd::keys::load_or_create(&cfg.state_dir)?;
        println!("{}", key.public_hex());
        return Ok(());
    }
    let worker = a
        .worker
        .or_else(|| cfg.worker.clone())
        .unwrap_or_else(default_worker);
    spirit_busd::run(&spirit_busd::Bus::parse(&a.bus), cfg, worker)
}

/// The `spirit` binary next to this executable.
fn default_worker() -> PathBuf {
    std::env::current_exe()
        .map(|p| p.with_file_name("spirit"))
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/spirit"))
}
