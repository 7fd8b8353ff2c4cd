//! The plugin contract: a plugin owns one kind of resource end to end — what it
//! collects at checkpoint, its section's schema, how it is rebuilt, how it is shown.
//!
//! Order of calls (see DESIGN.md, "The plugin contract"):
//! `dump` while the tree is frozen → `prepare` on the restoring host before any process
//! exists → `restore_in_child` inside the new process before its memory is replaced →
//! `restore_remote` by remote syscalls once memory is in place → `finish` after the tree
//! runs. `show` renders a section for `spirit show`.
//!
//! Sections are bytes in the plugin's own Cap'n Proto schema; nothing Rust-specific
//! crosses the contract's edge, so an out-of-process plugin can speak it later.

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

/// A descriptor of the process being checkpointed; a plugin that handles it claims it.
#[derive(Clone, Debug)]
pub struct FdEntry {
    pub fd: i32,
    /// `readlink /proc/PID/fd/N`.
    pub target: String,
    pub claimed: bool,
}

/// What a plugin sees while the process is frozen.
pub struct DumpCtx<'a> {
    pub remote: Remote<'a>,
    /// Descriptors not left out with `--skip-fd`; unclaimed ones fail the checkpoint.
    pub fds: &'a mut Vec<FdEntry>,
    /// The core state collected so far (registers, memory layout...).
    pub process: &'a ProcessImage,
}

/// What a plugin sees when it prepares a restore on this host.
pub struct PrepareCtx<'a> {
    pub process: &'a ProcessImage,
    /// The user accepts files that changed since the checkpoint (`--allow-changed-files`).
    pub allow_changed_files: bool,
}

/// The whole tree as a restore builds it, for resources shared between processes
/// (a pipe between a parent and its child, one open file inherited by both).
pub struct TreeView<'a> {
    /// Root first; zombies included.
    pub nodes: &'a [crate::model::TreeNode],
    /// Live processes.
    pub procs: &'a [ProcessImage],
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

    /// Every process's section of `plugin`: (pid, section bytes).
    pub fn sections(&self, plugin: &str) -> Vec<(i32, &[u8])> {
        self.procs
            .iter()
            .filter_map(|p| p.section(plugin).map(|s| (p.pid, s.data.as_slice())))
            .collect()
    }
}

/// What a plugin sees in the remote phase of a restore.
pub struct RestoreCtx<'a> {
    pub remote: Remote<'a>,
    pub process: &'a ProcessImage,
    /// Blocked-signal mask each thread gets when it is let go (initially: all blocked).
    pub final_sigmask: &'a mut [u64],
}

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Section format version; a restore refuses sections newer than the plugin.
    fn version(&self) -> u32;

    /// Collect this plugin's state of the frozen process; `None` if it has nothing.
    fn dump(&self, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>>;

    /// On the restoring host, before any process exists: check that what the section
    /// needs is there (files, devices...).
    fn prepare(&self, _ctx: &PrepareCtx<'_>, _section: &[u8]) -> Result<()> {
        Ok(())
    }

    /// In process `pid`'s restore child (pid as in the image), after its session and
    /// group are set and before it forks its children: create what descendants inherit
    /// (shared pipes, open files shared across fork), parked at descriptor numbers the
    /// plugin derives from the tree alone, so each descendant finds them again.
    /// Returns nothing: whatever a process does not keep is closed after its setup.
    fn restore_before_fork(&self, _tree: &TreeView<'_>, _pid: i32) -> Result<()> {
        Ok(())
    }

    /// Inside the new process, before its memory is replaced. Returns the descriptors
    /// it installed; every other descriptor is closed afterwards (parked inherited ones
    /// included, unless returned).
    fn restore_in_child(
        &self,
        _tree: &TreeView<'_>,
        _process: &ProcessImage,
        _section: &[u8],
    ) -> Result<Vec<i32>> {
        Ok(Vec::new())
    }

    /// After the memory is in place, by remote syscalls.
    fn restore_remote(&self, _ctx: &mut RestoreCtx<'_>, _section: &[u8]) -> Result<()> {
        Ok(())
    }

    /// After the process runs.
    fn finish(&self, _process: &ProcessImage, _section: &[u8]) -> Result<()> {
        Ok(())
    }

    /// The section as readable JSON.
    fn show(&self, section: &[u8]) -> Result<serde_json::Value>;
}

/// The ordered plugin list (order is part of the design: files before sockets before tty
/// in the child; signals after memory in the remote phase).
pub type Pipeline = Vec<Box<dyn Plugin>>;
