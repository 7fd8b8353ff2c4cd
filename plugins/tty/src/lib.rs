//! spirit's tty plugin: terminal descriptors (pty masters and slaves, `/dev/tty`), their
//! termios, window size, packet, locked and exclusive modes and queued bytes, the
//! controlling terminal of a session and its foreground group. (Sessions and process
//! groups themselves are core's.)
//!
//! Dump (`dump.rs`, once for the frozen tree, before any process's `dump`): every
//! descriptor core classified as a terminal is sorted into
//! - a pty whose master is in the tree (`pty.rs`: tmux's and screen's panes, `script`):
//!   its state read through `pidfd_getfd` copies, its queued bytes taken out (put back
//!   when the tree runs on: `--leave-running` or a failed dump);
//! - a terminal outside the tree (`external.rs`: the shell the process was started
//!   from), accepted only with `--shell-job`;
//! - anything else — virtual consoles, serial lines, the console, ptys of another
//!   devpts instance or line discipline, a pty of the tree whose slave a process
//!   outside it also holds — refused naming the process and fd.
//!
//! Open file descriptions get tree-wide ids (`kcmp`); session leaders and foreground
//! groups are found (`ctty.rs`). Each process's section lists its fds and the
//! terminals it describes.
//!
//! Restore: the plan (`plan.rs`, in the restorer) makes each pty's creator the lowest
//! common ancestor of its holders, leader and foreground process, and gives every
//! description a parked number; outside terminals are bound in the restorer (`prepare`)
//! to its own terminal (`--shell-job`) or a descriptor it was given (`--inherit-fd`). In
//! each restore child, before it forks: the ptys it creates (a new pair, so a new index:
//! the restored process sees another `/dev/pts/N`; a process reopening its terminal by
//! name is the rare case that notices) and, for a session leader, its controlling
//! terminal; then its fds are put in place from the parked numbers, and the foreground
//! group made foreground again (`ctty.rs`).

#[allow(clippy::all, clippy::pedantic)]
mod tty_capnp {
    include!(concat!(env!("OUT_DIR"), "/tty_capnp.rs"));
}

mod ctty;
mod dump;
mod external;
mod plan;
mod pty;
mod section;

use plan::Plan;
use section::{Kind, Side, TtySection};
use serde_json::{json, Value};
use spirit_core::model::ProcessImage;
use spirit_core::plugin::{
    state_mut, state_ref, DumpCtx, DumpOutcome, DumpTree, Parking, Plugin, PrepareCtx, TreeState,
    TreeView,
};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use spirit_kmod::tty as ktty;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};

/// The tty plugin.
#[derive(Clone, Copy, Debug, Default)]
pub struct TtyPlugin;

const VERSION: u32 = 1;
const NAME: &str = "tty";

impl Plugin for TtyPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn dump_tree(&self, tree: &DumpTree) -> Result<TreeState> {
        Ok(Box::new(dump::dump_tree(tree)?))
    }

    fn dump(&self, state: &mut TreeState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
        let st = state_mut::<dump::DumpState>(state)?;
        let Some(sec) = st.sections.remove(&ctx.remote.pid) else {
            return Ok(None);
        };
        for f in ctx.fds.iter_mut() {
            if sec.fds.iter().any(|t| t.fd == f.fd) {
                f.claimed = true;
            }
        }
        Ok(Some(sec.encode()))
    }

    fn dump_end(&self, state: &mut TreeState, outcome: DumpOutcome) {
        if let Ok(st) = state_mut::<dump::DumpState>(state) {
            if outcome != DumpOutcome::Killed {
                dump::put_back(&mut st.taken);
            }
            st.taken.clear();
        }
    }

    fn plan_restore(&self, tree: &TreeView<'_>, park: &mut Parking) -> Result<TreeState> {
        Ok(Box::new(plan::plan(tree, park)?))
    }

    fn prepare(&self, state: &mut TreeState, ctx: &PrepareCtx<'_>, _data: &[u8]) -> Result<()> {
        let plan = state_mut::<Plan>(state)?;
        if plan.bound {
            return Ok(());
        }
        plan.bound = true;
        let opts = ctx.opts;
        for e in &plan.externals {
            let src = external::source(opts, &e.key, e.first.0, e.first.1)?;
            external::bind(src, e.slot, &e.key)?;
            if src == 0 && plan.restorer_pgrp.is_none() {
                plan.restorer_pgrp = nix::unistd::tcgetpgrp(std::io::stdin())
                    .ok()
                    .map(|p| p.as_raw());
            }
        }
        Ok(())
    }

    fn restore_before_fork(&self, state: &TreeState, _tree: &TreeView<'_>, pid: i32) -> Result<()> {
        let plan = state_ref::<Plan>(state)?;
        let mine: Vec<&plan::PtyPlan> = plan.ptys.iter().filter(|p| p.creator == pid).collect();
        if !mine.is_empty() {
            spirit_core::plugin::ensure_fd_room(pid, plan.end, "its tree's terminals")?;
        }
        for p in mine {
            create(p, plan.end).map_err(|e| match e {
                Error::Restore(m) => Error::Restore(format!(
                    "process {pid}, recreating pty {} (held by {:?}): {m}",
                    p.terminal.index, p.holders
                )),
                other => other,
            })?;
        }
        for p in plan.ptys.iter().filter(|p| p.leader == Some(pid)) {
            let slot = plan.slave_slot(p.terminal.id).ok_or_else(|| {
                Error::Restore(format!("process {pid}: no slave parked for its terminal"))
            })?;
            ctty::take(pid, slot)?;
        }
        Ok(())
    }

    fn restore_in_child(
        &self,
        state: &TreeState,
        _tree: &TreeView<'_>,
        p: &ProcessImage,
        data: &[u8],
    ) -> Result<Vec<i32>> {
        let plan = state_ref::<Plan>(state)?;
        let sec = TtySection::decode(data)?;
        let mut keep = Vec::new();
        for f in &sec.fds {
            let slot = plan.slot_of(f.terminal, f.desc).ok_or_else(|| {
                Error::Restore(format!(
                    "process {}: no parked descriptor for its terminal fd {}",
                    p.pid, f.fd
                ))
            })?;
            let flags = if f.flags as i32 & libc::O_CLOEXEC != 0 {
                nix::fcntl::OFlag::O_CLOEXEC
            } else {
                nix::fcntl::OFlag::empty()
            };
            nix::unistd::dup3(slot, f.fd, flags).map_err(|e| {
                Error::Restore(format!(
                    "process {}: putting its terminal at fd {}: {e}",
                    p.pid, f.fd
                ))
            })?;
            keep.push(f.fd);
        }
        for id in &sec.foreground_of {
            let slot = plan.slave_slot(*id).ok_or_else(|| {
                Error::Restore(format!(
                    "process {}: no slave parked for its terminal",
                    p.pid
                ))
            })?;
            let fd = ktty::dup_of(slot).map_err(|e| Error::Restore(e.to_string()))?;
            ctty::make_foreground(p.pid, &fd)?;
        }
        for t in sec
            .terminals
            .iter()
            .filter(|t| t.kind == Kind::External && t.foreground)
        {
            if let Some(slot) = plan.slave_slot(t.id) {
                let fd = ktty::dup_of(slot).map_err(|e| Error::Restore(e.to_string()))?;
                external::take_foreground(p.pid, &fd, t)?;
            }
        }
        Ok(keep)
    }

    fn restore_remote(
        &self,
        state: &mut TreeState,
        ctx: &mut spirit_core::plugin::RestoreCtx<'_>,
        data: &[u8],
    ) -> Result<()> {
        let plan = state_mut::<Plan>(state)?;
        let sec = TtySection::decode(data)?;
        for t in sec
            .terminals
            .iter()
            .filter(|t| t.kind == Kind::External && t.foreground)
        {
            // The bound terminal is open in the restorer at its parked number.
            let now = plan
                .slave_slot(t.id)
                .and_then(|s| ktty::dup_of(s).ok())
                .and_then(|fd| ktty::window_size(&fd).ok());
            if now.is_some_and(|ws| ws != t.winsize) && !plan.winch.contains(&ctx.remote.pid) {
                plan.winch.push(ctx.remote.pid);
            }
        }
        Ok(())
    }

    fn restore_end(&self, state: &mut TreeState, ok: bool) {
        let Ok(plan) = state_mut::<Plan>(state) else {
            return;
        };
        if ok {
            for pid in plan.winch.drain(..) {
                let pid = nix::unistd::Pid::from_raw(pid);
                if let Ok(g) = nix::unistd::getpgid(Some(pid)) {
                    let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGWINCH);
                }
            }
        }
        if !plan.bound {
            return;
        }
        for e in &plan.externals {
            let _ = nix::unistd::close(e.slot);
        }
        if let (false, Some(pgrp)) = (ok, plan.restorer_pgrp) {
            let stdin = std::io::stdin();
            let _ = ctty::without_sigttou(|| {
                nix::unistd::tcsetpgrp(&stdin, nix::unistd::Pid::from_raw(pgrp))
            });
        }
        plan.bound = false;
    }

    fn show(&self, data: &[u8]) -> Result<Value> {
        let sec = TtySection::decode(data)?;
        let mut v = json!({
            "fds": sec.fds.iter().map(|f| json!({
                "fd": f.fd,
                "terminal": f.terminal,
                "side": f.side.name(),
                "desc": f.desc,
                "path": f.key,
                "flags": format!("{:#o}", f.flags),
            })).collect::<Vec<_>>(),
            "terminals": sec.terminals.iter().map(|t| json!({
                "id": t.id,
                "kind": match t.kind { Kind::Pty => "pty", Kind::External => "outside the tree" },
                "key": t.key,
                "index": t.index,
                "termios": t.termios.as_ref().map(pty::show_termios),
                "winsize": {"rows": t.winsize[0], "cols": t.winsize[1], "xpixel": t.winsize[2], "ypixel": t.winsize[3]},
                "packet": t.packet,
                "locked": t.locked,
                "exclusive": t.exclusive,
                "queued_for_slave": t.to_slave.len(),
                "queued_for_master": t.to_master.len(),
                "foreground": t.foreground,
            })).collect::<Vec<_>>(),
        });
        if sec.ctty_of != 0 {
            v["leads_session_of_terminal"] = json!(sec.ctty_of);
        }
        if !sec.foreground_of.is_empty() {
            v["foreground_group_of"] = json!(sec.foreground_of);
        }
        Ok(v)
    }
}

fn rerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Restore(format!("{what}: {e}"))
}

/// Leave `fd` open at number `slot` for the descendants to inherit.
fn park_at(fd: OwnedFd, slot: i32) -> Result<()> {
    if fd.as_raw_fd() == slot {
        let _ = fd.into_raw_fd();
        return Ok(());
    }
    nix::unistd::dup3(fd.as_raw_fd(), slot, nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| rerr(&format!("parking it at descriptor {slot}"), e))?;
    Ok(())
}

/// Create pty `p` (a new pair with its recorded state) and park each of its
/// descriptions at its number. The pair's own descriptors are first moved above every
/// parked number (`end`), so parking never lands on them.
fn create(p: &plan::PtyPlan, end: i32) -> Result<()> {
    let (m, s) = pty::new_pair()?;
    let master = kfd::dup_above(&m, end).map_err(|e| rerr("moving the master", e))?;
    let slave = kfd::dup_above(&s, end).map_err(|e| rerr("moving the slave", e))?;
    drop((m, s));
    pty::restore_state(&master, &slave, &p.terminal)?;
    let status = libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC;
    for d in &p.descs {
        let fd = match d.side {
            Side::Master => kfd::dup_above(&master, end).map_err(|e| rerr("dup", e))?,
            _ => {
                let acc = d.flags as i32 & libc::O_ACCMODE;
                ktty::open_peer(&master, acc | libc::O_NOCTTY | libc::O_CLOEXEC)
                    .map_err(|e| rerr("opening a slave (TIOCGPTPEER)", e))?
            }
        };
        kfd::set_status_flags(&fd, d.flags as i32 & status)
            .map_err(|e| rerr("setting its status flags", e))?;
        park_at(fd, d.slot)?;
    }
    pty::finish_pair(&master, &slave, &p.terminal)
}
