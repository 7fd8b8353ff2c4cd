//! Forking the process tree of an image, each process by its original parent.
//!
//! The restorer forks the root; every restore child then (1) takes its session and
//! process group (`setsid`, `setpgid`, group leaders forked before their members),
//! (2) forks its own children — zombies exit at once with their recorded status and
//! stay unreaped for their restored parent — (3) runs its own in-child setup, and (4)
//! reports on a shared board that it is ready, then waits in `pause()` for the restorer
//! to seize it. Children are forked before the parent's setup, so rlimits or descriptor
//! changes of the parent cannot get in their way. Each child asks to be killed when its
//! parent dies (PR_SET_PDEATHSIG; the real value is put back at the end), so a restorer
//! that dies leaves nothing behind.
//!
//! A restore child is a fork of a single-threaded restorer, so allocation is safe; it
//! must not use glibc's cached thread id (`raise`), only raw `getpid`/`kill`.

use super::child;
use crate::error::{Error, Result};
use crate::model::{ProcessImage, TreeNode};
use crate::plugin::{Pipeline, TreeState, TreeView};
use nix::unistd::{getpid, getppid, Pid};
use spirit_kmod::{clone3_fork, die_with_status, exit_now, ForkOutcome, SharedBoard};
use std::collections::HashMap;

/// The pipeline and each plugin's state for this restore (restore children read their
/// inherited copy).
#[derive(Clone, Copy)]
pub(crate) struct Plugins<'a> {
    pub list: &'a Pipeline,
    pub states: &'a [TreeState],
}

/// What to build: the tree's nodes (root first) and the live processes' records.
pub(crate) struct Plan<'a> {
    pub nodes: &'a [TreeNode],
    pub procs: &'a [ProcessImage],
    pub keep_pids: bool,
    pub opts: &'a super::RestoreOptions,
}

impl Plan<'_> {
    pub fn slot_of(&self, pid: i32) -> usize {
        self.nodes
            .iter()
            .position(|n| n.pid == pid)
            .unwrap_or(usize::MAX)
    }

    pub fn view(&self) -> TreeView<'_> {
        TreeView {
            nodes: self.nodes,
            procs: self.procs,
            opts: self.opts,
        }
    }

    pub fn proc_of(&self, pid: i32) -> Option<&ProcessImage> {
        self.procs.iter().find(|p| p.pid == pid)
    }

    /// Children of `pid`, group and session leaders first (members join them).
    fn children(&self, pid: i32) -> Vec<&TreeNode> {
        let mut c: Vec<&TreeNode> = self
            .nodes
            .iter()
            .filter(|n| n.ppid == pid && n.pid != pid)
            .collect();
        c.sort_by_key(|n| (n.pgid != n.pid, n.sid != n.pid));
        c
    }
}

pub(crate) fn fork_error(e: spirit_kmod::Error, pid: i32) -> Error {
    match e.errno() {
        Some(nix::errno::Errno::EEXIST) => Error::PidInUse { pid },
        Some(nix::errno::Errno::EPERM) => Error::RestoreNotPermitted {
            reason: format!("keeping the original pid {pid} needs root (CAP_CHECKPOINT_RESTORE); pass --new-pid"),
        },
        _ => e.into(),
    }
}

/// Fork the root (from the restorer). Returns its pid; the rest of the tree follows
/// inside it and reports on `board`.
pub(crate) fn spawn(plan: &Plan<'_>, plugins: Plugins<'_>, board: &SharedBoard) -> Result<i32> {
    let mut known = HashMap::new();
    fork_node(plan, &plan.nodes[0], plugins, board, &mut known)
}

fn fork_node(
    plan: &Plan<'_>,
    node: &TreeNode,
    plugins: Plugins<'_>,
    board: &SharedBoard,
    known: &mut HashMap<i32, i32>,
) -> Result<i32> {
    let parent = getpid();
    match clone3_fork(plan.keep_pids.then_some(node.pid)) {
        Ok(ForkOutcome::Child) => in_child(plan, node, plugins, board, known.clone(), parent),
        Ok(ForkOutcome::Parent { child }) => {
            known.insert(node.pid, child);
            Ok(child)
        }
        Err(e) => Err(fork_error(e, node.pid)),
    }
}

/// Fork the children of `node`. A group whose leader is no longer in the tree (it
/// exited and was reaped) is recreated with a placeholder leader holding the original
/// group id while the members join it (the parent sets each new child's group itself,
/// so it is done before the placeholder goes); then the placeholder is killed and reaped.
fn fork_children(
    plan: &Plan<'_>,
    node: &TreeNode,
    plugins: Plugins<'_>,
    board: &SharedBoard,
    known: &mut HashMap<i32, i32>,
) -> Result<()> {
    let children = plan.children(node.pid);
    let mut placeholders: Vec<(i32, i32)> = Vec::new();
    for c in &children {
        let leader_gone = c.pgid != c.pid
            && c.sid != c.pid
            && c.pgid != node.pgid
            && !plan.nodes.iter().any(|n| n.pid == c.pgid)
            && !known.contains_key(&c.pgid);
        if leader_gone && !placeholders.iter().any(|(g, _)| *g == c.pgid) {
            let pid = fork_placeholder(plan.keep_pids.then_some(c.pgid))?;
            known.insert(c.pgid, pid);
            placeholders.push((c.pgid, pid));
        }
    }
    let done = (|| -> Result<()> {
        for c in children {
            let pid = fork_node(plan, c, plugins, board, known)?;
            if let Some(&(group, leader)) = placeholders.iter().find(|(g, _)| *g == c.pgid) {
                nix::unistd::setpgid(Pid::from_raw(pid), Pid::from_raw(leader)).map_err(|e| {
                    Error::Restore(format!("putting {} into process group {group}: {e}", c.pid))
                })?;
            }
        }
        Ok(())
    })();
    for (_, p) in placeholders {
        let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(p), None);
    }
    done
}

/// A process that only leads a process group (its pid is the group id) until killed.
fn fork_placeholder(pid: Option<i32>) -> Result<i32> {
    match clone3_fork(pid) {
        Ok(ForkOutcome::Child) => {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            loop {
                nix::unistd::pause();
            }
        }
        Ok(ForkOutcome::Parent { child }) => {
            nix::unistd::setpgid(Pid::from_raw(child), Pid::from_raw(child))
                .map_err(|e| Error::Restore(format!("making {child} a group leader: {e}")))?;
            Ok(child)
        }
        Err(e) => Err(fork_error(e, pid.unwrap_or(0))),
    }
}

fn in_child(
    plan: &Plan<'_>,
    node: &TreeNode,
    plugins: Plugins<'_>,
    board: &SharedBoard,
    mut known: HashMap<i32, i32>,
    parent: Pid,
) -> ! {
    let me = getpid().as_raw();
    known.insert(node.pid, me);
    let slot = plan.slot_of(node.pid);
    let built = (|| -> Result<()> {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| Error::Restore(format!("PR_SET_PDEATHSIG: {e}")))?;
        if getppid() != parent {
            return Err(Error::Restore("the restorer went away".into()));
        }
        identity(node, &known, me)?;
        if node.zombie {
            die_with_status(node.exit_status);
        }
        let view = plan.view();
        for (p, st) in plugins.list.iter().zip(plugins.states) {
            p.restore_before_fork(st, &view, node.pid)?;
        }
        fork_children(plan, node, plugins, board, &mut known)?;
        let proc = plan
            .proc_of(node.pid)
            .ok_or_else(|| Error::Restore(format!("no record for process {}", node.pid)))?;
        child::setup(&view, proc, plugins)
    })();
    match built {
        Ok(()) => {
            board.ready(slot, me);
            loop {
                nix::unistd::pause();
            }
        }
        Err(e) => {
            board.failed(slot, me, e.exit_code(), &e.to_string());
            exit_now(e.exit_code())
        }
    }
}

/// Session and process group, as far as the tree itself can give them: a session or
/// group leader leads again; a member joins a group whose leader was restored before it.
/// A group whose leader is not in the tree keeps the parent's group.
fn identity(node: &TreeNode, known: &HashMap<i32, i32>, me: i32) -> Result<()> {
    if node.sid == node.pid {
        nix::unistd::setsid()
            .map_err(|e| Error::Restore(format!("setsid for {}: {e}", node.pid)))?;
        return Ok(());
    }
    let want = if node.pgid == node.pid {
        Some(me)
    } else {
        known.get(&node.pgid).copied()
    };
    if let Some(want) = want {
        if nix::unistd::getpgrp().as_raw() != want {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(want)).map_err(|e| {
                Error::Restore(format!(
                    "joining process group {} for {}: {e}",
                    node.pgid, node.pid
                ))
            })?;
        }
    }
    Ok(())
}

/// Fork an init for a new pid namespace (pid 1 there), which forks the root with its
/// original pid inside the namespace and then reaps orphans until the root exits, ending
/// with the root's status. Returns the init's pid (as seen here).
pub(crate) fn spawn_in_pid_ns(
    plan: &Plan<'_>,
    plugins: Plugins<'_>,
    board: &SharedBoard,
) -> Result<i32> {
    let parent = getpid();
    match spirit_kmod::clone3_fork_with(None, true) {
        Ok(ForkOutcome::Child) => {
            let started = (|| -> Result<i32> {
                let _ = nix::sys::prctl::set_name(c"spirit-init");
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(|e| Error::Restore(format!("PR_SET_PDEATHSIG: {e}")))?;
                if getppid() != parent && getppid().as_raw() != 0 {
                    return Err(Error::Restore("the restorer went away".into()));
                }
                let mut known = HashMap::new();
                fork_node(plan, &plan.nodes[0], plugins, board, &mut known)
            })();
            let root = match started {
                Ok(p) => p,
                Err(e) => {
                    board.failed(0, 1, e.exit_code(), &e.to_string());
                    exit_now(e.exit_code())
                }
            };
            let _ = spirit_kmod::close_fds_from(3);
            reap_until(root)
        }
        Ok(ForkOutcome::Parent { child }) => Ok(child),
        Err(e) => Err(match e.errno() {
            Some(nix::errno::Errno::EPERM) => Error::RestoreNotPermitted {
                reason: "a new pid namespace needs root (CAP_SYS_ADMIN)".into(),
            },
            _ => e.into(),
        }),
    }
}

/// The namespace init's life: reap whatever dies, end with the root's status.
fn reap_until(root: i32) -> ! {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == root => exit_now(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == root => exit_now(128 + sig as i32),
            Err(nix::errno::Errno::ECHILD) => exit_now(0),
            _ => {}
        }
    }
}
