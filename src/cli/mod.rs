//! The `spirit` subcommands: argument handling, files and signals around the core
//! pipelines, and exit codes (each error kind has its own, see `Error::exit_code`).

mod check;

pub use check::check;

use crate::default_pipeline;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use spirit_core::dump::{DumpOptions, DumpStats};
use spirit_core::restore::RestoreOptions;
use spirit_core::{Error, Result};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

const IO_BUF: usize = 1 << 20;

fn fail(e: &Error) -> i32 {
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

fn report_dump(s: &DumpStats, to: &str, leave_running: bool) {
    eprintln!(
        "spirit: checkpointed pid {} ({} thread{}, {} memory areas, {} of pages) into {} in {} ms, frozen {} ms; process {}",
        s.pid,
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        s.vmas,
        mib(s.page_bytes),
        to,
        s.total.as_millis(),
        s.frozen.as_millis(),
        if leave_running { "left running" } else { "ended" }
    );
}

pub fn dump(
    pid: i32,
    output: &Path,
    leave_running: bool,
    skip_fds: Vec<i32>,
    workers: usize,
) -> i32 {
    shield_from_signals();
    let opts = DumpOptions {
        leave_running,
        skip_fds,
        workers,
    };
    let pipeline = default_pipeline();
    let res = if output == Path::new("-") {
        let out = BufWriter::with_capacity(IO_BUF, std::io::stdout().lock());
        spirit_core::dump::dump(pid, out, &opts, &pipeline, &mut |_, _| {}, |mut w| {
            w.flush().map_err(|e| Error::io("standard output", e))
        })
    } else {
        dump_to_file(pid, output, &opts, &pipeline)
    };
    match res {
        Ok(stats) => {
            report_dump(&stats, &output.display().to_string(), leave_running);
            0
        }
        Err(e) => fail(&e),
    }
}

/// Write into a temporary file beside `output`, synced and renamed into place only when
/// complete: a failed checkpoint leaves no partial image behind.
fn dump_to_file(
    pid: i32,
    output: &Path,
    opts: &DumpOptions,
    pipeline: &spirit_core::plugin::Pipeline,
) -> Result<DumpStats> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".spirit-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io(tmp.path(), e))?;
    let out = BufWriter::with_capacity(IO_BUF, file);
    spirit_core::dump::dump(pid, out, opts, pipeline, &mut |_, _| {}, |w| {
        let f = w
            .into_inner()
            .map_err(|e| Error::io(output, e.into_error()))?;
        f.sync_data().map_err(|e| Error::io(output, e))?;
        tmp.persist(output)
            .map_err(|e| Error::io(output, e.error))?;
        Ok(())
    })
}

pub fn restore(
    image: &Path,
    detach: bool,
    pidfile: Option<&Path>,
    new_pid: bool,
    workers: usize,
) -> i32 {
    let _ = spirit_kmod::ignore_signal(libc::SIGPIPE);
    let name = image.display().to_string();
    let src: Box<dyn Read> = if image == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        match File::open(image) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(&Error::io(image, e)),
        }
    };
    let opts = RestoreOptions { new_pid, workers };
    let pipeline = default_pipeline();
    let restored = match spirit_core::restore::restore(
        BufReader::with_capacity(IO_BUF, src),
        &name,
        &opts,
        &pipeline,
    ) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if let Some(p) = pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", restored.pid)) {
            eprintln!(
                "spirit: warning: cannot write pid file {}: {e}",
                p.display()
            );
        }
    }
    if detach {
        println!("{}", restored.pid);
        let _ = std::io::stdout().flush();
        return 0;
    }
    eprintln!(
        "spirit: restored pid {} ({} threads, {}) in {} ms",
        restored.pid,
        restored.threads,
        mib(restored.page_bytes),
        restored.total.as_millis()
    );
    wait_forwarding(restored.pid)
}

/// Wait for the restored process like a shell waits for a program: terminating signals
/// sent to us go to it, and its exit status becomes ours (128+N if killed by signal N).
fn wait_forwarding(pid: i32) -> i32 {
    let set = terminating_signals();
    let _ = signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    std::thread::spawn(move || loop {
        if let Ok(sig) = set.wait() {
            let _ = signal::kill(Pid::from_raw(pid), sig);
        }
    });
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("spirit: error: waiting for pid {pid}: {e}");
                return 1;
            }
        }
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
