//! Controlling terminals and foreground groups (sessions and groups themselves are
//! core's).
//!
//! Dump: a session leader of the tree whose controlling terminal is a pty of the tree
//! records it (`cttyOf`), and the first process of the tree in the terminal's foreground
//! group records that (`foregroundOf`). A session leader whose controlling terminal is
//! outside the tree is refused: its session cannot be given another one.
//!
//! Restore: both calls act on the caller, so each is made by the restored process itself
//! while it is still spirit's code. The leader takes its terminal (`TIOCSCTTY`) in
//! `restore_before_fork`, before it forks its children — a controlling terminal is
//! inherited at fork, so members forked before would never get it; the foreground
//! group's process makes its own group foreground (`TIOCSPGRP` with its own group id,
//! right in whatever pid namespace or pid it got) in `restore_in_child`, once every
//! group of the session exists up to it, with SIGTTOU blocked for the call.

use crate::section::TtySection;
use spirit_core::plugin::DumpTree;
use spirit_core::{Error, Result};
use spirit_kmod::tty as ktty;
use std::collections::HashMap;
use std::os::fd::AsFd;

/// Find the tree's session leaders' terminals and their foreground groups; `ptys` maps a
/// pty slave's device number to its terminal id, for the ptys whose master is in the tree.
pub fn find(
    tree: &DumpTree,
    ptys: &HashMap<u64, u32>,
    sections: &mut HashMap<i32, TtySection>,
) -> Result<()> {
    for p in tree.procs.iter().filter(|p| p.sid == p.pid) {
        let (ctty, tpgid) = spirit_core::procinfo::terminal(p.pid)?;
        if ctty == 0 {
            continue;
        }
        let Some(&id) = ptys.get(&ctty) else {
            return Err(Error::Dump {
                pid: p.pid,
                msg: format!(
                    "it leads a session whose controlling terminal (device {}:{}) is outside the tree; spirit cannot give a restored session another terminal: checkpoint the process holding the terminal's master (e.g. the tmux server) with it, or a process that does not lead its session",
                    nix::sys::stat::major(ctty),
                    nix::sys::stat::minor(ctty)
                ),
            });
        };
        sections.entry(p.pid).or_default().ctty_of = id;
        if let Some(fg) = tree
            .procs
            .iter()
            .find(|q| q.pgid == tpgid && q.sid == p.pid)
        {
            sections.entry(fg.pid).or_default().foreground_of.push(id);
        }
    }
    Ok(())
}

/// Run `f` with SIGTTOU blocked (a background process may then set the terminal's
/// foreground group and termios).
pub fn without_sigttou<T>(f: impl FnOnce() -> T) -> Result<T> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|e| Error::Restore(format!("sigprocmask: {e}")))?;
    let out = f();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    Ok(out)
}

/// In a restored session leader: take the terminal behind parked descriptor `slot`.
pub fn take(pid: i32, slot: i32) -> Result<()> {
    let fd = ktty::dup_of(slot).map_err(|e| {
        Error::Restore(format!(
            "process {pid}: its terminal's parked descriptor {slot}: {e}"
        ))
    })?;
    ktty::set_controlling(&fd, false).map_err(|e| {
        Error::Restore(format!(
            "process {pid}: making the restored pty its session's controlling terminal: {e}"
        ))
    })
}

/// In a restored process: make its own group the foreground group of terminal `fd`.
pub fn make_foreground(pid: i32, fd: impl AsFd) -> Result<()> {
    let me = nix::unistd::getpgrp();
    without_sigttou(|| nix::unistd::tcsetpgrp(fd, me))?.map_err(|e| {
        Error::Restore(format!(
            "process {pid}: making its process group the terminal's foreground group: {e}"
        ))
    })
}
