//! `spiritd`: spirit's D-Bus service (see the spirit-busd crate and DESIGN.md, "busd").

use clap::Parser;
use spirit::cli::SpiritdArgs as Args;
use std::path::PathBuf;

fn main() {
    spirit::cli::log::init_spiritd();
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
