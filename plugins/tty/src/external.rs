//! A terminal outside the tree: the one the process was started from (its master is
//! held by a terminal emulator, tmux or sshd that is not checkpointed).
//!
//! Dump (only with `--shell-job`): each process holding it records which fds were on it
//! (their link text, e.g. `/dev/pts/3`, is the key), its termios and window size, and
//! whether the process's group was the terminal's foreground group.
//!
//! Restore: the restorer binds each such terminal to one of its own descriptors — the
//! `--inherit-fd fd[N]:KEY` naming the key, else with `--shell-job` its standard input,
//! which must be a terminal — parked at a number every restore child inherits. Each
//! holder puts it at its fds; a process whose group was foreground makes its group the
//! terminal's foreground group again and gives the terminal its termios (it owned the
//! terminal then). The window size is the restoring terminal's own.

use crate::ctty;
use crate::pty;
use crate::section::Terminal;
use spirit_core::restore::RestoreOptions;
use spirit_core::{Error, Result};
use spirit_kmod::tty as ktty;
use std::os::fd::{AsFd, AsRawFd};

/// What process `pid` saw of outside terminal `t` through its fd `fd` (device `rdev`).
pub fn describe(pid: i32, fd: i32, rdev: u64, mut t: Terminal) -> Result<Terminal> {
    let err = |what: &str, e: &dyn std::fmt::Display| Error::Dump {
        pid,
        msg: format!("terminal fd {fd}: {what}: {e}"),
    };
    let pidfd = spirit_kmod::fd::pidfd_open(pid).map_err(|e| err("pidfd_open", &e))?;
    let copy = spirit_kmod::fd::pidfd_getfd(&pidfd, fd).map_err(|e| err("pidfd_getfd", &e))?;
    t.termios = Some(pty::termios_of(&copy).map_err(|e| err("tcgetattr", &e))?);
    t.winsize = ktty::window_size(&copy).map_err(|e| err("TIOCGWINSZ", &e))?;
    let (ctty, tpgid) = spirit_core::procinfo::terminal(pid)?;
    let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
        .map_err(|e| err("getpgid", &e))?
        .as_raw();
    t.foreground = ctty == rdev && tpgid == pgid;
    Ok(t)
}

/// Where the restorer's descriptor for outside terminal `key` comes from.
pub fn source(opts: &RestoreOptions, key: &str, pid: i32, fd: i32) -> Result<i32> {
    if let Some(i) = opts.inherit_fds.iter().find(|i| i.key == key) {
        return Ok(i.fd);
    }
    if opts.shell_job {
        return Ok(0);
    }
    Err(Error::Restore(format!(
        "process {pid}: fd {fd} was on a terminal outside the checkpointed tree ({key}); restore with --shell-job from a terminal to put it on yours, or bind it with --inherit-fd fd[N]:{key}"
    )))
}

/// In the restorer: put descriptor `src` (which must be a terminal) at `slot`, for every
/// restore child to inherit.
pub fn bind(src: i32, slot: i32, key: &str) -> Result<()> {
    let fd = ktty::dup_of(src).map_err(|e| {
        Error::Restore(format!(
            "the descriptor {src} given for the terminal {key} is not open: {e}"
        ))
    })?;
    if !nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false) {
        return Err(Error::Restore(format!(
            "the descriptor {src} given for the terminal {key} is not a terminal{}",
            if src == 0 {
                " (spirit restore --shell-job puts the process on its standard input's terminal: run it from a terminal)"
            } else {
                ""
            }
        )));
    }
    nix::unistd::dup3(fd.as_raw_fd(), slot, nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Restore(format!("parking the terminal at {slot}: {e}")))?;
    Ok(())
}

/// In a restored process that was in the terminal's foreground group: its group is
/// foreground again and the terminal gets its termios back.
/// Nothing is done when the terminal is not the process's controlling terminal (a
/// terminal given with `--inherit-fd` that is not the restorer's).
pub fn take_foreground(pid: i32, fd: impl AsFd + Copy, t: &Terminal) -> Result<()> {
    let ours = nix::unistd::getsid(None).ok().map(|s| s.as_raw());
    if ktty::session_of(fd).ok() != ours {
        return Ok(());
    }
    ctty::make_foreground(pid, fd)?;
    if let Some(tio) = &t.termios {
        ctty::without_sigttou(|| pty::set_termios(fd, &pty::raw_termios(tio)))?.map_err(|e| {
            Error::Restore(format!(
                "process {pid}: setting the terminal's termios: {e}"
            ))
        })?;
    }
    Ok(())
}
