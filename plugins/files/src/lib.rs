//! spirit's files plugin: a process's descriptors (every kind below) and its
//! filesystem state (cwd, root, umask).
//!
//! Layout: one module per descriptor kind under `kinds/` — `regular`, `pseudo` (/proc
//! and /sys files), `deleted`, `memfd`, `directory`, `fifo`, `chardev`, `pipe`,
//! `eventfd`, `timerfd`, `signalfd`, `epoll`, `inotify`, `lock` (flock, POSIX and OFD
//! locks) and `owner` (F_SETOWN/F_SETSIG signal owners and leases, of any kind) — each
//! holding that kind's dump, payload encoding, prepare-time check, restore and show
//! side by side; `kinds/mod.rs` only dispatches on `kinds::Payload`.
//! Below them `record.rs` (the common record head, a file reached by path, fdinfo
//! parsing, open/seek/park); above them `section.rs` (the section: a common record per
//! descriptor — fd, flags, close-on-exec, offset, `dup_of`, tree-wide description id,
//! locks — with a Cap'n Proto union of per-kind payloads, `schema/files.capnp`),
//! `tree.rs` (what processes of a tree share), `dump.rs` and `restore.rs` (one
//! process's pass over its descriptors). Dependencies point one way: record ← kinds ←
//! section ← tree ← dump/restore ← lib.
//!
//! Dump, the tree frozen: [`Plugin::dump_tree`] makes the tree state (`tree::DumpTree`:
//! every pipe end held in the tree, from core's classified descriptors). Then per
//! process (`dump.rs`): each descriptor whose kind core classified as one this plugin
//! handles (core's `fdclass` decides the kind; nothing here guesses it from the link
//! text) gets its kind's payload and is claimed; a kind returning nothing (a path that
//! no longer names the open file) leaves it unclaimed. Descriptors sharing one open
//! file description (`kcmp`) are recorded once, the others marked `dup_of` it; owner
//! records get what only they carry (content of deleted files and memfds ≤ 64 MiB,
//! hashes of regular files ≤ 1 MiB, epoll targets, inotify watches, locks, signal
//! owner and lease read on a `pidfd_getfd` copy); pipes' and
//! FIFOs' data in flight is captured once per pipe or FIFO for the tree (each end of a
//! pipe held in it or closed everywhere); each description gets a tree-wide `desc_id`
//! (the same id in two processes: one description shared across fork).
//!
//! Every kind the plugin does not handle (terminals, sockets, message queues, pidfds,
//! ...) stays unclaimed: core refuses the checkpoint naming pid, fd and kind.
//!
//! Restore: [`Plugin::plan_restore`] decodes every process's section and plans
//! (`tree::Plan`) which descriptions more than one process holds, who creates each (the
//! lowest common ancestor of its holders) and at which number it is parked (taken from
//! core's `Parking`). [`Plugin::prepare`] runs each kind's check on this host (paths
//! there and of the same kind; a changed regular file refused with exit 11 unless
//! `--allow-changed-files`; /proc and /sys files never content-checked). In each
//! restore child [`Plugin::restore_before_fork`] creates what it is the creator of, and
//! [`Plugin::restore_in_child`] sets cwd (a removed one: a new directory entered and
//! removed), root and umask and rebuilds its descriptors (`restore.rs`): each
//! description once by its kind (or taken from its parked number), `dup3`'d to each of
//! its fds, inherited parked numbers closed, epoll sets last, then signal owners (the
//! own pid translated), locks and leases at the very end. A /proc path naming the
//! process itself is reopened through `/proc/self/` (right under `--new-pid`); one
//! naming another process of the tree is refused when pids change.

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
            let removed_cwd = d == &sec.cwd && d.ends_with(" (deleted)");
            if !removed_cwd && !std::path::Path::new(d).is_dir() {
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
        if sec.cwd.ends_with(" (deleted)") && !std::path::Path::new(&sec.cwd).is_dir() {
            kinds::directory::enter_deleted(&sec.cwd)?;
        } else {
            nix::unistd::chdir(sec.cwd.as_str())
                .map_err(|e| Error::Restore(format!("chdir {}: {e}", sec.cwd)))?;
        }
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(sec.umask));
        restore::restore(&sec, &shared, &inherited, &tree::pids_of(tree, p.pid))
    }

    fn restore_remote(
        &self,
        _state: &mut TreeState,
        ctx: &mut spirit_core::plugin::RestoreCtx<'_>,
        data: &[u8],
    ) -> Result<()> {
        // Epoll sets watching sockets: the sockets were placed after this plugin's
        // descriptors (kinds/epoll.rs).
        let sec = FilesSection::decode(data)?;
        for f in sec.fds.iter().filter(|f| f.is_owner()) {
            if let kinds::Payload::Epoll(e) = &f.payload {
                e.add_sockets(&mut ctx.remote, f.fd())?;
            }
        }
        Ok(())
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
