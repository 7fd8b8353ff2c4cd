//! Stopping every thread of a process, and ending it after a checkpoint.

use crate::error::{Error, Result};
use crate::procinfo;
use spirit_kmod::Tracee;

/// Refuse early, with a reason, what ptrace would refuse with a bare EPERM.
pub fn check_access(pid: i32) -> Result<()> {
    if pid <= 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    if pid == std::process::id() as i32 {
        return Err(Error::PermissionDenied {
            pid,
            reason: "spirit cannot checkpoint itself".into(),
        });
    }
    let (uid, _) = procinfo::owner(pid)?;
    let me = nix::unistd::geteuid().as_raw();
    if me != 0 && uid != me {
        return Err(Error::PermissionDenied {
            pid,
            reason: format!(
                "it belongs to uid {uid} and you are uid {me}; only root may checkpoint another user's process (or ask the spiritd service, which checks who you are)"
            ),
        });
    }
    Ok(())
}

/// Seize and stop every thread; re-read the thread list until no new thread appears.
/// The main thread comes first.
pub fn freeze(pid: i32) -> Result<Vec<Tracee>> {
    let mut out: Vec<Tracee> = Vec::new();
    for _round in 0..100 {
        let tids = procinfo::threads(pid)?;
        let mut added = false;
        for tid in tids {
            if out.iter().any(|t| t.tid() == tid) {
                continue;
            }
            match Tracee::seize(pid, tid) {
                Ok(t) => {
                    out.push(t);
                    added = true;
                }
                // A thread that exited between listing and seizing.
                Err(e) if tid != pid && e.errno() == Some(nix::errno::Errno::ESRCH) => {}
                Err(e) if e.errno() == Some(nix::errno::Errno::EPERM) => {
                    return Err(Error::PermissionDenied {
                        pid,
                        reason: format!("the kernel refused to trace it ({e}); it may be traced already or not dumpable"),
                    })
                }
                Err(e) if tid == pid && e.errno() == Some(nix::errno::Errno::ESRCH) => {
                    return Err(Error::NoSuchProcess { pid })
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !added {
            out.sort_by_key(|t| (t.tid() != pid, t.tid()));
            return Ok(out);
        }
    }
    Err(Error::Dump {
        pid,
        msg: "its thread list never settled (threads are being created too fast)".into(),
    })
}

/// End a checkpointed process: SIGKILL, then reap the traced threads, non-leaders first
/// (a dead leader is not reported before its other threads are reaped: KERNEL-NOTES P1).
pub fn kill(pid: i32, tracees: Vec<Tracee>) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let mut tids: Vec<i32> = tracees.iter().map(|t| t.tid()).collect();
    for t in tracees {
        t.forget();
    }
    tids.sort_by_key(|&t| t == pid);
    for tid in tids {
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(tid),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        );
    }
}
