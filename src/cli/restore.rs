//! `spirit restore`: bring a process tree back from an image, then either return its
//! pid (`--detach`) or wait for it like a shell waits for a program.

use super::{fail, mib, terminating_signals, IO_BUF};
use crate::default_pipeline;
use clap::Args;
use nix::sys::signal::{self, SigmaskHow};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use spirit_core::restore::{RestoreOptions, Restored};
use spirit_core::Error;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Arguments of `spirit restore`.
#[derive(Args, Clone, Debug)]
pub struct RestoreArgs {
    /// Image file, or - for standard input.
    pub image: PathBuf,
    /// Return once the process runs and print its pid, instead of waiting for it.
    #[arg(long)]
    pub detach: bool,
    /// Write the restored pid to this file.
    #[arg(long)]
    pub pidfile: Option<PathBuf>,
    /// Give the process fresh pid and tids instead of the original ones.
    #[arg(long)]
    pub new_pid: bool,
    /// Restore into a new pid namespace (under a small init), so every process keeps
    /// its pid even where those pids are taken on this host.
    #[arg(long, conflicts_with = "new_pid")]
    pub pid_ns: bool,
    /// Restore even if the executable, a mapped library or an open file changed
    /// since the checkpoint (the default refuses, naming the file).
    #[arg(long)]
    pub allow_changed_files: bool,
    /// Page write threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Put the descriptors that were on the terminal the process was started from
    /// (dumped with --shell-job) on this terminal (our standard input), the
    /// process made the foreground job when it was one.
    #[arg(long)]
    pub shell_job: bool,
    /// fd[N]:KEY — our descriptor N stands for the resource outside the tree the
    /// image names KEY, as `spirit show` lists it: `socket:[4242]` for a unix socket
    /// dumped with --ext-unix-inherit, `/dev/pts/3` for a terminal. Repeatable.
    #[arg(long = "inherit-fd", value_name = "fd[N]:KEY")]
    pub inherit_fds: Vec<spirit_core::restore::InheritFd>,
    /// Without --detach: exit 0 once the program has ended (its status goes to stderr
    /// and --json) instead of with the program's own status, so spirit's own exit codes
    /// cannot be mistaken for the program's.
    #[arg(long, conflicts_with = "detach")]
    pub own_exit_code: bool,
    /// Print the result as one JSON object on stdout: at once with --detach, else when
    /// the program ends (with its `exit_code` or `signal`).
    #[arg(long)]
    pub json: bool,
}

/// How the restored program ended.
#[derive(Clone, Copy, Debug)]
pub enum Ended {
    Exited(i32),
    Killed(i32),
}

impl Ended {
    /// As a shell reports it: the exit code, or 128+N when signal N killed it.
    pub fn status(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Killed(s) => 128 + s,
        }
    }
}

/// The `--json` object of `spirit restore` (field names are stable; README, "JSON").
pub fn restore_json(r: &Restored, detached: bool, ended: Option<Ended>) -> serde_json::Value {
    serde_json::json!({
        "pid": r.pid,
        "processes": r.processes,
        "threads": r.threads,
        "page_bytes": r.page_bytes,
        "total_ms": r.total.as_millis() as u64,
        "detached": detached,
        "exit_code": match ended { Some(Ended::Exited(c)) => Some(c), _ => None },
        "signal": match ended { Some(Ended::Killed(s)) => Some(s), _ => None },
    })
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
    tracing::debug!(image = %name, "restore starts");
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
        if a.json {
            println!("{}", restore_json(&restored, true, None));
        } else {
            println!("{}", restored.pid);
        }
        let _ = std::io::stdout().flush();
        return 0;
    }
    if !super::log::quiet() {
        eprintln!(
            "spirit: restored pid {} ({} processes, {} threads, {}) in {} ms",
            restored.pid,
            restored.processes,
            restored.threads,
            mib(restored.page_bytes),
            restored.total.as_millis()
        );
    }
    let ended = match wait_forwarding(restored.waiter, restored.pid) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("spirit: error: waiting for pid {}: {e}", restored.pid);
            return 1;
        }
    };
    if a.json {
        println!("{}", restore_json(&restored, false, Some(ended)));
    }
    if a.own_exit_code {
        match ended {
            Ended::Exited(c) => eprintln!("spirit: pid {} exited with status {c}", restored.pid),
            Ended::Killed(s) => eprintln!("spirit: pid {} killed by signal {s}", restored.pid),
        }
        return 0;
    }
    ended.status()
}

/// Wait for the restored process like a shell waits for a program: terminating signals
/// sent to us go to it, and its end is returned. Meanwhile we are the tree's
/// subreaper: its orphans are reaped here, not left as zombies under a PID 1 that may
/// not reap (KERNEL-NOTES).
fn wait_forwarding(waiter: i32, pid: i32) -> nix::Result<Ended> {
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
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == waiter => {
                return Ok(Ended::Exited(code))
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == waiter => {
                return Ok(Ended::Killed(sig as i32))
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}
