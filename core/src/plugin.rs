//! The plugin contract: a plugin owns one kind of resource end to end — what it
//! collects at checkpoint, its section's schema, how it is rebuilt, how it is shown.
//!
//! Contract v2: tree-level calls beside per-process ones, and per-tree state that the
//! pipeline owns (no plugin keeps a static). The order of calls is on [`Plugin`]; see
//! also DESIGN.md, "The plugin contract".
//!
//! Descriptors reach plugins already classified ([`FdKind`], decided once in
//! [`crate::fdclass`]); a plugin claims those it dumps. Sections are bytes in the
//! plugin's own Cap'n Proto schema; nothing Rust-specific crosses the contract's edge,
//! so an out-of-process plugin (`org.spirit.Plugin1`) speaks it too.

use crate::error::Result;
use crate::model::ProcessImage;
use spirit_kmod::{read_memory, write_memory, Tracee};

/// The threads of one frozen (dump) or half-built (restore) process, and the means to
/// run syscalls inside them. Thread 0 is the main thread.
pub struct Remote<'a> {
    pub pid: i32,
    pub threads: &'a mut [Tracee],
    /// Address of a `syscall` instruction mapped in the process.
    pub gadget: u64,
    /// A read-write scratch area in the process, for syscall arguments and results.
    pub scratch: u64,
    pub scratch_len: u64,
}

impl Remote<'_> {
    /// Run a syscall in thread `t`; returns the raw result (negative errno on failure).
    pub fn syscall(&mut self, t: usize, nr: i64, args: &[u64]) -> Result<i64> {
        Ok(self.threads[t].syscall(self.gadget, nr, args)?)
    }

    /// Run a syscall in thread `t`; a negative result is an error naming `what`.
    pub fn syscall_ok(
        &mut self,
        t: usize,
        nr: i64,
        args: &[u64],
        what: &'static str,
    ) -> Result<i64> {
        Ok(self.threads[t].syscall_ok(self.gadget, nr, args, what)?)
    }

    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        read_memory(self.pid, &mut buf, &[(addr, len)])?;
        Ok(buf)
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        write_memory(self.pid, data, &[(addr, data.len())])?;
        Ok(())
    }
}

pub use crate::fdclass::{FdEntry, FdKind};

/// A plugin's state for one dump or one restore of a tree: made by the plugin's
/// tree-level call, owned by the pipeline, handed back to every later call of the same
/// dump or restore, dropped at its end. A restore's state is made before the first
/// fork, so each restore child has its own copy (read-only there).
pub type TreeState = Box<dyn std::any::Any + Send>;

/// The state of a plugin that keeps none.
pub fn no_state() -> TreeState {
    Box::new(())
}

/// The plugin's own state type inside a [`TreeState`] (a plugin only ever gets back the
/// state it made; anything else is a bug in the pipeline, reported as an error).
pub fn state_mut<T: 'static>(s: &mut TreeState) -> Result<&mut T> {
    s.downcast_mut::<T>()
        .ok_or_else(|| crate::Error::Restore("plugin handed another plugin's state".into()))
}

/// Read-only access to the plugin's own state type.
pub fn state_ref<T: 'static>(s: &TreeState) -> Result<&T> {
    s.downcast_ref::<T>()
        .ok_or_else(|| crate::Error::Restore("plugin handed another plugin's state".into()))
}

/// One process of a frozen tree with its classified descriptors.
#[derive(Clone, Debug)]
pub struct FrozenProcess {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Descriptors not left out with `--skip-fd`.
    pub fds: Vec<FdEntry>,
}

/// The whole frozen tree, as a dump sees it before any process's own dump: for
/// resources shared between processes (a pipe, a socketpair, a pty, one open file).
#[derive(Clone, Debug)]
pub struct DumpTree {
    /// Live processes, root first, every parent before its children.
    pub procs: Vec<FrozenProcess>,
    /// What the user asked of this dump (options plugins read: external sockets...).
    pub opts: crate::dump::DumpOptions,
}

impl DumpTree {
    pub fn contains(&self, pid: i32) -> bool {
        self.procs.iter().any(|p| p.pid == pid)
    }

    pub fn process(&self, pid: i32) -> Option<&FrozenProcess> {
        self.procs.iter().find(|p| p.pid == pid)
    }

    /// Every (pid, descriptor) of the tree.
    pub fn all_fds(&self) -> impl Iterator<Item = (i32, &FdEntry)> {
        self.procs
            .iter()
            .flat_map(|p| p.fds.iter().map(move |f| (p.pid, f)))
    }
}

/// What a plugin sees while the process is frozen.
pub struct DumpCtx<'a> {
    pub remote: Remote<'a>,
    /// This process's classified descriptors; unclaimed ones fail the checkpoint.
    pub fds: &'a mut Vec<FdEntry>,
    /// The core state collected so far (registers, memory layout...).
    pub process: &'a ProcessImage,
    /// The whole frozen tree.
    pub tree: &'a DumpTree,
}

/// How a dump ended, for [`Plugin::dump_end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpOutcome {
    /// The image is committed and the tree runs on (`--leave-running`, or a migration
    /// target that did not confirm).
    Resumed,
    /// The image is committed and the tree was ended (it lives on in the image).
    Killed,
    /// The dump failed; the tree runs on untouched.
    Failed,
}

/// What a plugin sees when it prepares a restore on this host.
pub struct PrepareCtx<'a> {
    pub process: &'a ProcessImage,
    /// The user accepts files that changed since the checkpoint (`--allow-changed-files`).
    pub allow_changed_files: bool,
    /// What the user asked of this restore (options plugins read: `--shell-job`,
    /// `--inherit-fd`...).
    pub opts: &'a crate::restore::RestoreOptions,
}

/// The whole tree as a restore builds it, for resources shared between processes
/// (a pipe between a parent and its child, one open file inherited by both).
pub struct TreeView<'a> {
    /// Root first; zombies included.
    pub nodes: &'a [crate::model::TreeNode],
    /// Live processes.
    pub procs: &'a [ProcessImage],
    /// What the user asked of this restore (options plugins read: `--inherit-fd`...).
    pub opts: &'a crate::restore::RestoreOptions,
}

impl TreeView<'_> {
    /// Whether `a` is `b` or one of its ancestors.
    pub fn is_ancestor_or_self(&self, a: i32, b: i32) -> bool {
        let mut cur = b;
        for _ in 0..=self.nodes.len() {
            if cur == a {
                return true;
            }
            match self.nodes.iter().find(|n| n.pid == cur) {
                Some(n) if n.ppid != cur => cur = n.ppid,
                _ => return false,
            }
        }
        false
    }

    /// The lowest common ancestor of `holders` in the tree (who creates what they
    /// share before forking them); `None` for an empty list or disjoint holders.
    pub fn common_ancestor(&self, holders: &[i32]) -> Option<i32> {
        let mut cur = *holders.first()?;
        for _ in 0..=self.nodes.len() {
            if holders.iter().all(|&h| self.is_ancestor_or_self(cur, h)) {
                return Some(cur);
            }
            let n = self.nodes.iter().find(|n| n.pid == cur)?;
            if n.ppid == cur {
                return None;
            }
            cur = n.ppid;
        }
        None
    }

    /// Every process's section of `plugin`: (pid, section bytes).
    pub fn sections(&self, plugin: &str) -> Vec<(i32, &[u8])> {
        self.procs
            .iter()
            .filter_map(|p| p.section(plugin).map(|s| (p.pid, s.data.as_slice())))
            .collect()
    }
}

/// Descriptor numbers above every descriptor of the tree (and above 2), handed out at
/// plan time: a plugin parks what restore children inherit (a pipe, a socket, a pty
/// shared across fork) at numbers it takes here, so no two plugins' parked
/// descriptors, and no descriptor a process really had, ever meet.
#[derive(Debug)]
pub struct Parking {
    next: i32,
}

impl Parking {
    pub fn new(tree: &TreeView<'_>) -> Parking {
        Parking {
            next: tree
                .procs
                .iter()
                .map(|p| p.fd_end)
                .max()
                .unwrap_or(0)
                .max(3)
                // Descriptors the restorer was given (`--inherit-fd`) stay where they are.
                .max(
                    tree.opts
                        .inherit_fds
                        .iter()
                        .map(|i| i.fd + 1)
                        .max()
                        .unwrap_or(0),
                ),
        }
    }

    /// Hand out nothing at or below `fd` (a descriptor a plugin knows of that the
    /// process records did not count, as in images without `fd_end`).
    pub fn above(&mut self, fd: i32) {
        self.next = self.next.max(fd.saturating_add(1));
    }

    /// The first of `n` consecutive numbers for this plugin.
    pub fn take(&mut self, n: usize) -> Result<i32> {
        let first = self.next;
        self.next = i32::try_from(n)
            .ok()
            .and_then(|n| first.checked_add(n))
            .filter(|&e| e < 1 << 20)
            .ok_or_else(|| crate::Error::Restore("too many descriptors to park".into()))?;
        Ok(first)
    }

    /// One past the last number handed out.
    pub fn end(&self) -> i32 {
        self.next
    }
}

/// In a restore child: make sure descriptor numbers below `end` (parked ones) can be
/// used, raising the soft RLIMIT_NOFILE up to the hard one (the process's own limits
/// are set again after its setup). `what` names what is parked, for the message.
pub fn ensure_fd_room(pid: i32, end: i32, what: &str) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| crate::Error::Restore(format!("getrlimit(RLIMIT_NOFILE): {e}")))?;
    let need = end as u64;
    if soft >= need {
        return Ok(());
    }
    if hard < need {
        return Err(crate::Error::Restore(format!(
            "process {pid}: {what} are parked at numbers up to {}, above the limit of {hard} open files; raise it (ulimit -n) and restore again",
            end - 1
        )));
    }
    setrlimit(Resource::RLIMIT_NOFILE, need, hard)
        .map_err(|e| crate::Error::Restore(format!("setrlimit(RLIMIT_NOFILE, {need}): {e}")))
}

/// What a plugin sees in the remote phase of a restore.
pub struct RestoreCtx<'a> {
    pub remote: Remote<'a>,
    pub process: &'a ProcessImage,
    /// Blocked-signal mask each thread gets when it is let go (initially: all blocked).
    pub final_sigmask: &'a mut [u64],
}

/// A resource kind's owner. Calls, in order (every call may fail; a failed dump resumes
/// the tree untouched, a failed restore kills what was built):
///
/// Dump, the whole tree frozen: [`dump_tree`](Plugin::dump_tree) once (see what is
/// shared between processes, set up what must hold during the dump — e.g. a network
/// lock — and make the state) → [`dump`](Plugin::dump) per process, parents first
/// (claim descriptors, return the section) → the image is written →
/// [`dump_end`](Plugin::dump_end) once with how it ended, also on failure.
///
/// Restore: [`plan_restore`](Plugin::plan_restore) once, every section decoded in
/// the restorer before anything exists (decide who creates what is shared, make the
/// state) → [`prepare`](Plugin::prepare) per process (check the host has what the
/// section needs) → in each restore child: [`restore_before_fork`](Plugin::restore_before_fork)
/// (create what descendants inherit) then, once its children are forked,
/// [`restore_in_child`](Plugin::restore_in_child) → in the restorer, once each process's
/// memory is in place: [`restore_remote`](Plugin::restore_remote) by remote syscalls →
/// the tree runs → [`finish`](Plugin::finish) per process → [`restore_end`](Plugin::restore_end)
/// once, also on failure (remove what the plan set up on the host).
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Section format version; a restore refuses sections newer than the plugin.
    fn version(&self) -> u32;

    /// Once per dump, after every process of the tree is frozen and its descriptors
    /// classified, before any [`dump`](Plugin::dump).
    fn dump_tree(&self, _tree: &DumpTree) -> Result<TreeState> {
        Ok(no_state())
    }

    /// Collect this plugin's state of one frozen process; `None` if it has nothing.
    fn dump(&self, state: &mut TreeState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>>;

    /// Once per dump, after the image is committed or the dump failed: before the tree
    /// runs again (`Resumed`, `Failed`), after it was killed (`Killed`).
    fn dump_end(&self, _state: &mut TreeState, _outcome: DumpOutcome) {}

    /// Once per restore, before anything exists: every process's record (sections
    /// included) is in `tree`.
    fn plan_restore(&self, _tree: &TreeView<'_>, _park: &mut Parking) -> Result<TreeState> {
        Ok(no_state())
    }

    /// On the restoring host, before any process exists: check that what the section
    /// needs is there (files, devices...).
    fn prepare(
        &self,
        _state: &mut TreeState,
        _ctx: &PrepareCtx<'_>,
        _section: &[u8],
    ) -> Result<()> {
        Ok(())
    }

    /// In process `pid`'s restore child (pid as in the image), after its session and
    /// group are set and before it forks its children: create what descendants inherit
    /// (shared pipes, open files shared across fork), parked at descriptor numbers the
    /// plan fixed, so each descendant finds them again. Whatever a process does not
    /// keep is closed after its setup.
    fn restore_before_fork(
        &self,
        _state: &TreeState,
        _tree: &TreeView<'_>,
        _pid: i32,
    ) -> Result<()> {
        Ok(())
    }

    /// Inside the new process, before its memory is replaced. Returns the descriptors
    /// it installed; every other descriptor is closed afterwards (parked inherited ones
    /// included, unless returned).
    fn restore_in_child(
        &self,
        _state: &TreeState,
        _tree: &TreeView<'_>,
        _process: &ProcessImage,
        _section: &[u8],
    ) -> Result<Vec<i32>> {
        Ok(Vec::new())
    }

    /// After the memory is in place, by remote syscalls.
    fn restore_remote(
        &self,
        _state: &mut TreeState,
        _ctx: &mut RestoreCtx<'_>,
        _section: &[u8],
    ) -> Result<()> {
        Ok(())
    }

    /// After the process runs.
    fn finish(
        &self,
        _state: &mut TreeState,
        _process: &ProcessImage,
        _section: &[u8],
    ) -> Result<()> {
        Ok(())
    }

    /// Once per restore, after the tree runs (`ok`) or the restore failed.
    fn restore_end(&self, _state: &mut TreeState, _ok: bool) {}

    /// The section as readable JSON.
    fn show(&self, section: &[u8]) -> Result<serde_json::Value>;
}

/// The ordered plugin list (order is part of the design: files before sockets before tty
/// in the child; signals after memory in the remote phase; security state last).
pub type Pipeline = Vec<Box<dyn Plugin>>;
