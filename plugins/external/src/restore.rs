//! Restore through an external plugin.
//!
//! Restore children are forks of the restorer, which must be single-threaded when it
//! forks (`clone3_fork` refuses otherwise), and zbus runs threads of its own; a restore
//! child cannot talk D-Bus either (its extra threads would survive into the restored
//! process). So, at plan time, before anything exists, the restorer forks a helper
//! process (`helper.rs`) that starts the plugin, calls `Restore` for every record of
//! every process (a record of an object an earlier one has gets that one's descriptor
//! again, or, for another open file description of it, a reopening of it through
//! `/proc/self/fd` with its own flags and position), checks each descriptor is of the
//! kind that was checkpointed (same filesystem magic, same file type) and reports. The
//! restorer takes the descriptors out of the helper with `pidfd_getfd` and parks them
//! at numbers from [`Parking`]; each restore child inherits them and `dup3`s its own to
//! their numbers with their close-on-exec flag. The helper and the plugin wait for the
//! restore's end: when it failed, the plugin's `Discard` removes what its `Restore` made
//! on the host (a named queue). The restorer's copies are closed then.

use crate::helper::Helper;
use crate::manifest::Manifest;
use crate::section::{self, FdRecord};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use spirit_core::plugin::{Parking, TreeView};
use spirit_core::{Error, Result};
use spirit_kmod::fd::dup_above;
use std::os::fd::{AsRawFd, OwnedFd};

/// One descriptor ready for its process, parked in the restorer.
pub struct Parked {
    pub pid: i32,
    pub fd: i32,
    pub cloexec: bool,
    pub parked: OwnedFd,
}

/// Per restore: every descriptor the plugin rebuilt, and the helper process holding the
/// plugin until the restore ends.
#[derive(Default)]
pub struct RestoreState {
    pub fds: Vec<Parked>,
    pub helper: Option<Helper>,
}

impl RestoreState {
    /// The restore ended: close the parked copies; on failure the plugin removes what
    /// its `Restore` made on the host (`Discard`).
    pub fn end(&mut self, ok: bool) {
        self.fds.clear();
        if let Some(mut h) = self.helper.take() {
            h.end(ok);
        }
    }
}

pub(crate) fn failed(m: &Manifest, msg: impl std::fmt::Display) -> Error {
    Error::Restore(format!(
        "external plugin '{}' ({}): {msg}",
        m.name,
        m.exec.display()
    ))
}

pub fn plan(m: &Manifest, tree: &TreeView<'_>, park: &mut Parking) -> Result<RestoreState> {
    let mut work: Vec<(i32, FdRecord)> = Vec::new();
    for (pid, data) in tree.sections(&m.name) {
        work.extend(
            section::decode(&m.name, data)?
                .into_iter()
                .map(|r| (pid, r)),
        );
    }
    if work.is_empty() {
        return Ok(RestoreState::default());
    }
    let (helper, got) = Helper::run(m, &work)?;
    let mut fds = Vec::with_capacity(got.len());
    for ((pid, r), fd) in work.iter().zip(got) {
        fds.push(Parked {
            pid: *pid,
            fd: r.fd,
            cloexec: r.cloexec,
            parked: park_at(&fd, park)?,
        });
    }
    Ok(RestoreState {
        fds,
        helper: Some(helper),
    })
}

/// A copy of `fd` at a number from `park` that nothing of the restorer uses.
fn park_at(fd: &OwnedFd, park: &mut Parking) -> Result<OwnedFd> {
    loop {
        let n = park.take(1)?;
        if fcntl(n, FcntlArg::F_GETFD) == Err(nix::errno::Errno::EBADF) {
            let d = dup_above(fd, n)?;
            if d.as_raw_fd() == n {
                return Ok(d);
            }
        }
    }
}

/// In the restore child of `pid`: each of its descriptors to its number.
pub fn install(st: &RestoreState, pid: i32) -> Result<Vec<i32>> {
    let mut kept = Vec::new();
    for p in st.fds.iter().filter(|p| p.pid == pid) {
        let flags = if p.cloexec {
            OFlag::O_CLOEXEC
        } else {
            OFlag::empty()
        };
        nix::unistd::dup3(p.parked.as_raw_fd(), p.fd, flags).map_err(|e| {
            Error::Restore(format!(
                "process {pid}: dup3 of fd {} into place: {e}",
                p.fd
            ))
        })?;
        kept.push(p.fd);
    }
    Ok(kept)
}

/// Another open file description of the object `first` is on, with `r`'s access mode,
/// status flags and position.
pub(crate) fn reopen(first: &OwnedFd, r: &FdRecord) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = r.flags as i32;
    let acc = flags & libc::O_ACCMODE;
    let status =
        flags & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
    let f = std::fs::OpenOptions::new()
        .read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .custom_flags(status | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", first.as_raw_fd()))?;
    if r.pos != 0 {
        use std::io::Seek;
        (&f).seek(std::io::SeekFrom::Start(r.pos))?;
    }
    Ok(f.into())
}

/// The descriptor is on the same kind of filesystem, and the same type of file, as the
/// one checkpointed.
pub(crate) fn check_kind(fd: &OwnedFd, r: &FdRecord) -> std::result::Result<(), String> {
    let magic = nix::sys::statfs::fstatfs(fd)
        .map(|s| s.filesystem_type().0)
        .map_err(|e| format!("fstatfs of the descriptor it returned: {e}"))?;
    let ftype = nix::sys::stat::fstat(fd.as_raw_fd())
        .map(|s| s.st_mode & libc::S_IFMT)
        .map_err(|e| format!("fstat of the descriptor it returned: {e}"))?;
    if magic != r.fs_magic || ftype != r.file_type {
        return Err(format!(
            "returned a descriptor of another kind (filesystem {magic:#x}, file type {ftype:#o}) than was checkpointed (filesystem {:#x}, file type {:#o})",
            r.fs_magic, r.file_type
        ));
    }
    Ok(())
}
