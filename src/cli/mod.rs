//! The `spirit` subcommands: argument handling, files and signals around the core
//! pipelines, and exit codes (each error kind has its own, see `Error::exit_code`).

mod check;
mod client;
mod plugins;

pub use check::check;
pub use client::{client, ClientCmd};
pub use plugins::plugins;

use crate::default_pipeline;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use spirit_core::dump::{DumpOptions, DumpStats, Ending};
use spirit_core::fileid::embed::EmbedFiles;
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

fn report_dump(s: &DumpStats, to: &str) {
    eprintln!(
        "spirit: checkpointed pid {} ({} process{}, {} thread{}, {} memory areas, {} of pages) into {} in {} ms, frozen {} ms; {}",
        s.pid,
        s.processes,
        if s.processes == 1 { "" } else { "es" },
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        s.vmas,
        mib(s.page_bytes),
        to,
        s.total.as_millis(),
        s.frozen.as_millis(),
        if s.resumed { "left running" } else { "process ended" }
    );
}

/// Arguments of `spirit dump`.
pub struct DumpArgs {
    pub pid: i32,
    pub output: std::path::PathBuf,
    pub leave_running: bool,
    pub skip_fds: Vec<i32>,
    pub workers: usize,
    pub progress_fd: Option<i32>,
    pub verdict_fd: Option<i32>,
    pub ext_unix_reconnect: Vec<String>,
    pub ext_unix_inherit: Vec<String>,
    pub shell_job: bool,
    /// `--embed-files[=all|missing-from:MANIFEST]`.
    pub embed_files: Option<String>,
}

/// What `--embed-files` asks for.
fn embed_files(v: Option<&str>) -> Result<EmbedFiles, String> {
    match v {
        None => Ok(EmbedFiles::None),
        Some("all") => Ok(EmbedFiles::All),
        Some(x) => match x.strip_prefix("missing-from:") {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| EmbedFiles::from_manifest(&t))
                .map_err(|e| format!("--embed-files: manifest {path}: {e}")),
            None => Err(format!(
                "--embed-files={x}: expected all or missing-from:MANIFEST"
            )),
        },
    }
}

pub fn dump(a: DumpArgs) -> i32 {
    shield_from_signals();
    let embed = match embed_files(a.embed_files.as_deref()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("spirit: error: {e}");
            return 2;
        }
    };
    let opts = DumpOptions {
        embed_files: embed,
        leave_running: a.leave_running,
        skip_fds: a.skip_fds,
        workers: a.workers,
        ext_unix_reconnect: a.ext_unix_reconnect,
        ext_unix_inherit: a.ext_unix_inherit,
        shell_job: a.shell_job,
    };
    let pipeline = default_pipeline();
    let mut progress = ProgressOut::new(a.progress_fd);
    let mut last = 0u64;
    let mut on_progress = |done: u64, total: u64| {
        if done == 0 || done == total || done - last >= 16 << 20 {
            last = done;
            progress.line(&format!("progress {done} {total}"));
        }
    };
    let res = if a.output == Path::new("-") {
        let out = BufWriter::with_capacity(IO_BUF, std::io::stdout().lock());
        let verdict_fd = a.verdict_fd;
        spirit_core::dump::dump(a.pid, out, &opts, &pipeline, &mut on_progress, |mut w| {
            w.flush().map_err(|e| Error::io("standard output", e))?;
            drop(w);
            end_stdout();
            await_verdict(verdict_fd)
        })
    } else {
        dump_to_file(a.pid, &a.output, &opts, &pipeline, &mut on_progress)
    };
    match res {
        Ok(stats) => {
            progress.line(&format!(
                "result {}",
                serde_json::to_string(&stats).unwrap_or_default()
            ));
            report_dump(&stats, &a.output.display().to_string());
            0
        }
        Err(e) => {
            progress.line(&format!("error {} {}", e.exit_code(), e));
            fail(&e)
        }
    }
}

/// Write into a temporary file beside `output`, synced and renamed into place only when
/// complete: a failed checkpoint leaves no partial image behind.
fn dump_to_file(
    pid: i32,
    output: &Path,
    opts: &DumpOptions,
    pipeline: &spirit_core::plugin::Pipeline,
    progress: spirit_core::dump::Progress<'_>,
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
    // A second handle on the same open file (shared offset) for parallel page writes.
    let positional = file.try_clone().map_err(|e| Error::io(tmp.path(), e))?;
    let out = BufWriter::with_capacity(IO_BUF, file);
    spirit_core::dump::dump_to_file(pid, out, &positional, opts, pipeline, progress, |w| {
        let f = w
            .into_inner()
            .map_err(|e| Error::io(output, e.into_error()))?;
        f.sync_data().map_err(|e| Error::io(output, e))?;
        tmp.persist(output)
            .map_err(|e| Error::io(output, e.error))?;
        Ok(Ending::AsAsked)
    })
}

/// Arguments of `spirit restore`.
pub struct RestoreArgs {
    pub image: std::path::PathBuf,
    pub detach: bool,
    pub pidfile: Option<std::path::PathBuf>,
    pub new_pid: bool,
    pub pid_ns: bool,
    pub workers: usize,
    pub allow_changed_files: bool,
    pub shell_job: bool,
    pub inherit_fds: Vec<spirit_core::restore::InheritFd>,
}

pub fn restore(a: RestoreArgs) -> i32 {
    let image = a.image.as_path();
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
    let opts = RestoreOptions {
        new_pid: a.new_pid,
        pid_ns: a.pid_ns,
        workers: a.workers,
        // From a pipe, the writer may still hold the pid until the image is complete.
        wait_for_pid: (image == Path::new("-")).then_some(std::time::Duration::from_secs(10)),
        allow_changed_files: a.allow_changed_files,
        shell_job: a.shell_job,
        inherit_fds: a.inherit_fds,
    };
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
    if let Some(p) = &a.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", restored.pid)) {
            eprintln!(
                "spirit: warning: cannot write pid file {}: {e}",
                p.display()
            );
        }
    }
    if a.detach {
        println!("{}", restored.pid);
        let _ = std::io::stdout().flush();
        return 0;
    }
    eprintln!(
        "spirit: restored pid {} ({} processes, {} threads, {}) in {} ms",
        restored.pid,
        restored.processes,
        restored.threads,
        mib(restored.page_bytes),
        restored.total.as_millis()
    );
    wait_forwarding(restored.waiter, restored.pid)
}

/// Wait for the restored process like a shell waits for a program: terminating signals
/// sent to us go to it, and its exit status becomes ours (128+N if killed by signal N).
/// Meanwhile we are the tree's subreaper: its orphans are reaped here, not left as
/// zombies under a PID 1 that may not reap (KERNEL-NOTES).
fn wait_forwarding(waiter: i32, pid: i32) -> i32 {
    let _ = spirit_kmod::set_child_subreaper();
    let set = terminating_signals();
    let _ = signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    std::thread::spawn(move || loop {
        if let Ok(sig) = set.wait() {
            let _ = signal::kill(Pid::from_raw(pid), sig);
        }
    });
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == waiter => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == waiter => return 128 + sig as i32,
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
