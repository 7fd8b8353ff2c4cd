//! The `spirit` subcommands: argument handling, files and signals around the core
//! pipelines, and exit codes (each error kind has its own, see `Error::exit_code`).

pub mod args;
mod check;
mod client;
mod dump;
pub mod gen;
pub mod log;
mod migrate;
mod plugins;
mod restore;

pub use args::{Cli, Cmd, LogArgs, SpiritdArgs};
pub use check::check;
pub use client::{client, ClientCmd};
pub use dump::{dump, DumpArgs};
pub use plugins::plugins;
pub use restore::{restore, RestoreArgs};

use crate::default_pipeline;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use spirit_core::dump::Ending;
use spirit_core::{Error, Result};
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;

const IO_BUF: usize = 1 << 20;

fn fail(e: &Error) -> i32 {
    tracing::debug!(code = e.exit_code(), "failed: {e:?}");
    eprintln!("spirit: error: {e}");
    e.exit_code()
}

fn terminating_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        s.add(sig);
    }
    s
}

/// A tracer that dies mid-injection leaves its tracee with injected registers
/// (KERNEL-NOTES P2): while a process is frozen, terminating signals wait, and a closed
/// output pipe is an error, not a death.
fn shield_from_signals() {
    let _ = spirit_kmod::ignore_signal(libc::SIGPIPE);
    let _ = signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&terminating_signals()), None);
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// With `--verdict-fd N` (streaming dumps, used by migration): after the image is
/// sent, wait for one byte on fd N: `k` ends the process, anything else, or the fd
/// closing, resumes it. Nothing is lost if the other side never answers.
fn await_verdict(fd: Option<i32>) -> Result<Ending> {
    let Some(fd) = fd else {
        return Ok(Ending::AsAsked);
    };
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(fd, &mut b) {
            Ok(1) if b[0] == b'k' => return Ok(Ending::Kill),
            Ok(_) => return Ok(Ending::Resume),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Ok(Ending::Resume),
        }
    }
}

/// The image is out: close standard output (by putting /dev/null in its place) so
/// the reader sees end-of-file while the process waits for the verdict.
fn end_stdout() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// With `--progress-fd N`: `progress DONE TOTAL` lines while pages are copied, then one
/// `result {json}` line (for the spiritd worker protocol and scripts).
struct ProgressOut(Option<File>);

impl ProgressOut {
    fn new(fd: Option<i32>) -> ProgressOut {
        // No from_raw_fd outside kmod: take the fd through a /proc path instead.
        // Standard error is duplicated directly: reopening a pipe through /proc fails
        // for a worker that spiritd started under the caller's uid (the pipe is root's).
        if fd == Some(2) {
            use std::os::fd::AsFd;
            let dup = std::io::stderr().as_fd().try_clone_to_owned();
            return ProgressOut(dup.ok().map(File::from));
        }
        ProgressOut(fd.and_then(|fd| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/self/fd/{fd}"))
                .ok()
        }))
    }
    fn line(&mut self, s: &str) {
        if let Some(f) = self.0.as_mut() {
            let _ = writeln!(f, "{s}");
        }
    }
}

/// Run one parsed `spirit` command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    log::init_spirit(&cli.log);
    match cli.cmd {
        Cmd::Dump(a) => dump(a),
        Cmd::Restore(a) => restore(a),
        Cmd::Manifest { paths } => {
            let (text, problems) = spirit_core::fileid::manifest(&paths);
            print!("{text}");
            for p in &problems {
                eprintln!("spirit: error: {p}");
            }
            i32::from(!problems.is_empty())
        }
        Cmd::Show { image, json } => show(&image, json),
        Cmd::Check { json } => check(json),
        Cmd::Plugins { json } => plugins(json),
        Cmd::Client(c) => client(c),
    }
}

pub fn show(image: &Path, json: bool) -> i32 {
    let f = match File::open(image) {
        Ok(f) => f,
        Err(e) => return fail(&Error::io(image, e)),
    };
    let name = image.display().to_string();
    match spirit_core::show::show(
        BufReader::with_capacity(IO_BUF, f),
        &name,
        &default_pipeline(),
    ) {
        Ok(v) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", spirit_core::show::render_text(&v));
            }
            0
        }
        Err(e) => fail(&e),
    }
}
