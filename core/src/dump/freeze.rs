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
                Ok(mut t) => {
                    ready_for_injection(pid, &mut t)?;
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

/// Make a frozen thread's own syscall filters stay out of the dump's injected syscalls:
/// syscall user dispatch off (set back when the thread is released), seccomp suspended
/// (a filter could refuse them, or kill the process; ends at detach).
fn ready_for_injection(pid: i32, t: &mut Tracee) -> Result<()> {
    t.pause_sud()?;
    if crate::security::under_seccomp(pid, t.tid())? {
        t.suspend_seccomp().map_err(|e| Error::Dump {
            pid,
            msg: format!(
                "thread {} runs under seccomp; spirit's injected syscalls would pass through its filters (which may kill it), and suspending them needs CAP_SYS_ADMIN (run spirit as root): {e}",
                t.tid()
            ),
        })?;
    }
    Ok(())
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

/// One process of the tree being checkpointed: frozen, or a zombie (its wait status).
pub struct Frozen {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub tracees: Vec<Tracee>,
    pub zombie: Option<i32>,
    /// Stopped by a signal before it was frozen.
    pub stopped: bool,
}

/// Freeze `root` and all its descendants, parents before children (a frozen parent
/// cannot fork any more, so its list of children is final once read).
pub fn freeze_tree(root: i32) -> Result<Vec<Frozen>> {
    let mut out: Vec<Frozen> = Vec::new();
    let mut queue = std::collections::VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        if out.iter().any(|f| f.pid == pid) {
            continue;
        }
        let st = procinfo::tree_stat(pid)?;
        if pid != root {
            check_access(pid)?;
        }
        let zombie = if st.zombie {
            if pid == root {
                return Err(Error::Dump {
                    pid,
                    msg: "it has exited and is a zombie waiting for its parent to reap it".into(),
                });
            }
            Some(st.exit_status)
        } else {
            None
        };
        let tracees = match zombie {
            Some(_) => Vec::new(),
            None => freeze(pid)?,
        };
        out.push(Frozen {
            pid,
            ppid: st.ppid,
            pgid: st.pgid,
            sid: st.sid,
            tracees,
            zombie,
            stopped: st.stopped,
        });
        if zombie.is_none() {
            queue.extend(procinfo::children(pid)?);
        }
    }
    Ok(out)
}

/// End every live process of a checkpointed tree.
pub fn kill_tree(tree: Vec<Frozen>) {
    for f in tree {
        if f.zombie.is_none() {
            kill(f.pid, f.tracees);
        }
    }
}
