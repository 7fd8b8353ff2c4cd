//! spirit's files plugin: the process's descriptors and its filesystem state.
//!
//! Dump (`dump.rs`, the process frozen): every descriptor `core` lists whose kind this
//! plugin knows becomes one record, claimed:
//! - regular files, directories, FIFOs (data in flight not kept yet), character
//!   devices (not terminals) opened by path:
//!   path, open flags, close-on-exec, offset, identity (size, mtime, and for files up
//!   to 1 MiB an xxh3 hash of the content);
//! - pipes (their inode and, from the access mode, which end), with the capacity and
//!   the data in flight, captured once per pipe for the whole tree (peeked with `tee`
//!   from a `pidfd_getfd` copy of a read end held by this process or another of the
//!   tree, left in place); each end must be held somewhere in the tree: an end held
//!   only outside it, closed, or left out with `--skip-fd` is refused naming the fd;
//! - files deleted while open and memfds (name, seals): their content (≤ 64 MiB, else
//!   refused naming the fd);
//! - eventfd (count, semaphore), timerfd (clock, remaining time, interval, unread
//!   ticks), signalfd (mask), epoll (watched fds, events, data), inotify (watches,
//!   paths resolved from their file handles with `open_by_handle_at`);
//! - descriptors sharing one open file description (`kcmp`) are recorded once and the
//!   others marked `dup_of` it; flock, POSIX and OFD locks held through a description;
//! - each description (owner record) gets a tree-wide `desc_id`: the same id in two
//!   processes means one description shared across fork (`kcmp` across processes,
//!   `shared.rs`, with state kept across the dump calls of one tree).
//!
//! cwd, root and umask too.
//!
//! Prepare (restoring host): every path must exist as the same kind of file; a regular
//! file that changed since the checkpoint (size, mtime, content hash) is refused with
//! exit 11 unless the restore allows it (`spirit restore --allow-changed-files`).
//!
//! Before a restore child forks its children (`shared.rs`): every pipe, deleted file or
//! memfd, and every other description, held by more than one process of the tree is
//! created once, by the lowest common ancestor of its holders (a shell that made the
//! pipe of `a | b` and closed it holds none of it), with its data in flight, capacity,
//! content, offset and status flags, each description parked at a number above every
//! fd of the tree; the descendants inherit them.
//!
//! In the child (`restore.rs`): cwd, root, umask; each open file description is rebuilt
//! once, parked at a high number (or, when shared with other processes, taken from the
//! number its creator parked it at), then `dup3`'d to each of its fd numbers; the parked
//! numbers inherited are closed; epoll sets last (they watch fds by number; an epoll
//! set shared across fork is rebuilt in each process); locks taken again at the very
//! end.
//!
//! Terminals, sockets and unknown anonymous inodes are left unclaimed:
//! the checkpoint then fails naming them.

#[allow(clippy::all, clippy::pedantic)]
mod files_capnp {
    include!(concat!(env!("OUT_DIR"), "/files_capnp.rs"));
}

mod dump;
mod kinds;
mod record;
mod restore;
mod section;
mod tree;

use section::FilesSection;
use serde_json::{json, Value};
use spirit_core::plugin::{
    state_mut, state_ref, DumpCtx, Parking, Plugin, PrepareCtx, TreeState, TreeView,
};
use spirit_core::{Error, Result};

/// The files plugin.
#[derive(Clone, Copy, Debug, Default)]
pub struct FilesPlugin;

const VERSION: u32 = 2;
const NAME: &str = "files";

impl Plugin for FilesPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn dump_tree(&self, tree: &spirit_core::plugin::DumpTree) -> Result<TreeState> {
        Ok(Box::new(tree::DumpTree::new(tree)))
    }

    fn dump(&self, state: &mut TreeState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
        let tree = state_mut::<tree::DumpTree>(state)?;
        let sec = dump::collect(ctx.remote.pid, ctx.fds, tree)?;
        Ok(Some(sec.encode()))
    }

    fn plan_restore(&self, tree: &TreeView<'_>, park: &mut Parking) -> Result<TreeState> {
        Ok(Box::new(tree::plan(tree, park)?))
    }

    fn prepare(&self, _state: &mut TreeState, ctx: &PrepareCtx<'_>, data: &[u8]) -> Result<()> {
        let sec = FilesSection::decode(data)?;
        for f in sec.fds.iter().filter(|f| f.is_owner()) {
            f.payload.check(f.fd(), ctx.allow_changed_files)?;
        }
        for d in [&sec.cwd, &sec.root] {
            if !std::path::Path::new(d).is_dir() {
                return Err(Error::FileMismatch {
                    path: d.clone(),
                    what: "the process's working or root directory is missing on this host".into(),
                });
            }
        }
        Ok(())
    }

    fn restore_before_fork(&self, state: &TreeState, tree: &TreeView<'_>, pid: i32) -> Result<()> {
        tree::before_fork(state_ref(state)?, tree, pid)
    }

    fn restore_in_child(
        &self,
        state: &TreeState,
        tree: &TreeView<'_>,
        p: &spirit_core::model::ProcessImage,
        data: &[u8],
    ) -> Result<Vec<i32>> {
        let sec = FilesSection::decode(data)?;
        let (shared, inherited) = tree::for_process(state_ref(state)?, tree, p.pid, &sec);
        if sec.root != "/" {
            nix::unistd::chroot(sec.root.as_str())
                .map_err(|e| Error::Restore(format!("chroot {}: {e}", sec.root)))?;
        }
        nix::unistd::chdir(sec.cwd.as_str())
            .map_err(|e| Error::Restore(format!("chdir {}: {e}", sec.cwd)))?;
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(sec.umask));
        restore::restore(&sec, &shared, &inherited, &tree::pids_of(tree, p.pid))
    }

    fn show(&self, data: &[u8]) -> Result<Value> {
        let sec = FilesSection::decode(data)?;
        Ok(json!({
            "cwd": sec.cwd,
            "root": sec.root,
            "umask": sec.umask,
            "fds": sec.fds.iter().map(section::FdRecord::show).collect::<Vec<_>>(),
        }))
    }
}
