//! The restore child: forked by the restorer, it sets up what normal code can set up
//! (plugins' in-child steps: cwd, umask, descriptors; then name, personality, rlimits),
//! then stops itself under ptrace for the restorer to replace its memory and threads.
//!
//! It runs in a fork of a single-threaded restorer, so allocation is safe; it must not
//! use glibc's cached thread id (`raise`), only raw `getpid`/`kill`.

use crate::error::{Error, Result};
use crate::model::ProcessImage;
use crate::plugin::Pipeline;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{getpid, Pid};
use spirit_kmod::{exit_now, get_rlimit, set_personality, set_rlimit, SharedPage};

pub(crate) fn run(proc: &ProcessImage, pipeline: &Pipeline, report: &SharedPage) -> ! {
    if let Err(e) = setup(proc, pipeline) {
        report.put(e.exit_code(), &e.to_string());
        exit_now(e.exit_code());
    }
    if let Err(e) = nix::sys::ptrace::traceme() {
        report.put(
            1,
            &format!("PTRACE_TRACEME failed in the restore child: {e}"),
        );
        exit_now(1);
    }
    let _ = kill(Pid::from_raw(getpid().as_raw()), Signal::SIGSTOP);
    // Only reached if the restorer let us go without rebuilding us.
    exit_now(1)
}

fn setup(proc: &ProcessImage, pipeline: &Pipeline) -> Result<()> {
    let _ =
        nix::sys::prctl::set_name(&std::ffi::CString::new(proc.comm.clone()).unwrap_or_default());
    set_personality(proc.personality)?;
    let mut keep = Vec::new();
    for p in pipeline {
        if let Some(sec) = proc.section(p.name()) {
            keep.extend(p.restore_in_child(proc, &sec.data)?);
        }
    }
    close_others(&keep)?;
    for rl in &proc.rlimits {
        // A hard limit above ours cannot be raised without CAP_SYS_RESOURCE (which even
        // root lacks on some hosts, KERNEL-NOTES): keep what we may.
        let (_, hard_now) = get_rlimit(rl.resource)?;
        let max = if nix::unistd::geteuid().is_root() {
            rl.max
        } else {
            rl.max.min(hard_now)
        };
        let cur = rl.cur.min(max);
        if set_rlimit(rl.resource, cur, max).is_err() {
            let max = rl.max.min(hard_now);
            set_rlimit(rl.resource, rl.cur.min(max), max).map_err(Error::from)?;
        }
    }
    Ok(())
}

fn close_others(keep: &[i32]) -> Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::io("/proc/self/fd", e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
    Ok(())
}
