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
mod restore;
mod section;
mod shared;

use section::{FdKind, FdRecord, FilesSection};
use serde_json::{json, Map, Value};
use spirit_core::plugin::{
    state_mut, state_ref, DumpCtx, Parking, Plugin, PrepareCtx, TreeState, TreeView,
};
use spirit_core::{Error, Result};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// The files plugin.
#[derive(Clone, Copy, Debug, Default)]
pub struct FilesPlugin;

const VERSION: u32 = 1;
const NAME: &str = "files";

impl Plugin for FilesPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn dump_tree(&self, tree: &spirit_core::plugin::DumpTree) -> Result<TreeState> {
        Ok(Box::new(shared::DumpTree::new(tree)))
    }

    fn dump(&self, state: &mut TreeState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
        let tree = state_mut::<shared::DumpTree>(state)?;
        let sec = dump::collect(ctx.remote.pid, ctx.fds, tree)?;
        Ok(Some(sec.encode()))
    }

    fn plan_restore(&self, tree: &TreeView<'_>, park: &mut Parking) -> Result<TreeState> {
        Ok(Box::new(shared::plan(tree, park)?))
    }

    fn prepare(&self, _state: &mut TreeState, ctx: &PrepareCtx<'_>, data: &[u8]) -> Result<()> {
        let sec = FilesSection::decode(data)?;
        for f in sec.fds.iter().filter(|f| f.dup_of.is_none()) {
            match f.kind {
                FdKind::Regular | FdKind::Directory | FdKind::CharDevice | FdKind::Fifo => {
                    check_file(f, ctx.allow_changed_files)?
                }
                FdKind::Inotify => {
                    for w in &f.inotify {
                        if std::fs::symlink_metadata(&w.path).is_err() {
                            return Err(Error::FileMismatch {
                                path: w.path.clone(),
                                what: format!(
                                    "watched by the inotify instance at fd {} (wd {}) at checkpoint, but missing on this host",
                                    f.fd, w.wd
                                ),
                            });
                        }
                    }
                }
                _ => {}
            }
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

    fn restore_before_fork(&self, state: &TreeState, _tree: &TreeView<'_>, pid: i32) -> Result<()> {
        shared::before_fork(state_ref(state)?, pid)
    }

    fn restore_in_child(
        &self,
        state: &TreeState,
        tree: &TreeView<'_>,
        p: &spirit_core::model::ProcessImage,
        data: &[u8],
    ) -> Result<Vec<i32>> {
        let sec = FilesSection::decode(data)?;
        let (shared, inherited) = shared::for_process(state_ref(state)?, tree, p.pid, &sec);
        if sec.root != "/" {
            nix::unistd::chroot(sec.root.as_str())
                .map_err(|e| Error::Restore(format!("chroot {}: {e}", sec.root)))?;
        }
        nix::unistd::chdir(sec.cwd.as_str())
            .map_err(|e| Error::Restore(format!("chdir {}: {e}", sec.cwd)))?;
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(sec.umask));
        restore::restore(&sec, &shared, &inherited)
    }

    fn show(&self, data: &[u8]) -> Result<Value> {
        let sec = FilesSection::decode(data)?;
        Ok(json!({
            "cwd": sec.cwd,
            "root": sec.root,
            "umask": sec.umask,
            "fds": sec.fds.iter().map(show_fd).collect::<Vec<_>>(),
        }))
    }
}

/// A regular file, directory or device opened by path must be there, of the same kind,
/// and (regular files) unchanged since the checkpoint.
fn check_file(f: &FdRecord, allow_changed: bool) -> Result<()> {
    let mismatch = |what: String| Error::FileMismatch {
        path: f.path.clone(),
        what,
    };
    let md = std::fs::metadata(&f.path).map_err(|e| {
        mismatch(format!(
            "open as fd {} at checkpoint but missing on this host: {e}",
            f.fd
        ))
    })?;
    let same_kind = match f.kind {
        FdKind::Regular => md.is_file(),
        FdKind::Directory => md.is_dir(),
        FdKind::CharDevice => md.file_type().is_char_device() && md.rdev() == f.rdev,
        FdKind::Fifo => md.file_type().is_fifo(),
        _ => true,
    };
    if !same_kind {
        return Err(mismatch(format!(
            "open as fd {} at checkpoint, but it is now a different kind of file or device",
            f.fd
        )));
    }
    if f.kind != FdKind::Regular || allow_changed {
        return Ok(());
    }
    let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
    let changed = if md.size() != f.size {
        Some(format!("its size is {} bytes, was {}", md.size(), f.size))
    } else if mtime != f.mtime_ns {
        Some("it was modified (mtime differs)".to_string())
    } else if let Some(h) = f.hash {
        let now = std::fs::read(&f.path).map_err(|e| Error::io(&f.path, e))?;
        (xxhash_rust::xxh3::xxh3_64(&now) != h).then(|| "its content differs".to_string())
    } else {
        None
    };
    match changed {
        Some(why) => Err(mismatch(format!(
            "open as fd {} at checkpoint, but changed since: {why}; restore with --allow-changed-files to accept it",
            f.fd
        ))),
        None => Ok(()),
    }
}

/// One descriptor for `spirit show`: common fields, then what its kind carries.
fn show_fd(f: &FdRecord) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    put("fd", json!(f.fd));
    put("kind", serde_json::to_value(f.kind).unwrap_or(Value::Null));
    put("flags", json!(f.flags));
    put("cloexec", json!(f.cloexec));
    match f.dup_of {
        Some(d) => put("dup_of", json!(d)),
        None if f.desc_id != 0 => put("desc", json!(f.desc_id)),
        None => {}
    }
    match f.kind {
        FdKind::Regular | FdKind::Directory | FdKind::CharDevice | FdKind::Fifo => {
            put("path", json!(f.path));
            put("pos", json!(f.pos));
            put("mode", json!(f.mode));
            put("dev", json!(f.dev));
            put("inode", json!(f.inode));
            put("rdev", json!(f.rdev));
            put("size", json!(f.size));
            put("mtime_ns", json!(f.mtime_ns));
            if let Some(h) = f.hash {
                put("xxh3", json!(format!("{h:016x}")));
            }
        }
        FdKind::Pipe => {
            put("pipe", json!(f.object_id));
            let end = match f.flags as i32 & libc::O_ACCMODE {
                libc::O_RDONLY => "read",
                libc::O_WRONLY => "write",
                _ => "read+write",
            };
            put("end", json!(end));
            put("capacity", json!(f.pipe_size));
            put("in_flight", json!(f.data.len()));
        }
        FdKind::DeletedFile | FdKind::Memfd => {
            put("path", json!(f.path));
            put("pos", json!(f.pos));
            put("mode", json!(f.mode));
            put("size", json!(f.data.len()));
            put(
                "xxh3",
                json!(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&f.data))),
            );
            if f.kind == FdKind::Memfd {
                put("seals", json!(f.seals));
            }
        }
        FdKind::Eventfd => {
            put("count", json!(f.counter));
            put("semaphore", json!(f.semaphore));
        }
        FdKind::Timerfd => {
            put("clock", json!(f.clock_id));
            put("remaining_ns", json!(f.value_ns));
            put("interval_ns", json!(f.interval_ns));
            put("ticks", json!(f.counter));
        }
        FdKind::Signalfd => put("sigmask", json!(f.sigmask)),
        FdKind::Epoll => put(
            "watches",
            json!(f
                .epoll
                .iter()
                .map(|t| json!({"fd": t.fd, "events": t.events, "data": t.data}))
                .collect::<Vec<_>>()),
        ),
        FdKind::Inotify => put(
            "watches",
            json!(f
                .inotify
                .iter()
                .map(|w| json!({"wd": w.wd, "path": w.path, "mask": w.mask}))
                .collect::<Vec<_>>()),
        ),
    }
    if !f.locks.is_empty() {
        put(
            "locks",
            serde_json::to_value(&f.locks).unwrap_or(Value::Null),
        );
    }
    Value::Object(m)
}
