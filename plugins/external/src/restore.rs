//! Restore through an external plugin.
//!
//! Restore children are forks of the restorer, which must be single-threaded when it
//! forks (`clone3_fork` refuses otherwise), and zbus runs threads of its own; a restore
//! child cannot talk D-Bus either (its extra threads would survive into the restored
//! process). So, at plan time, before anything exists, the restorer forks a short-lived
//! helper process; the helper starts the plugin, calls `Restore` for every record of
//! every process (a record of an object an earlier one has gets that one's descriptor
//! again, or, for another open file description of it, a reopening of it through
//! `/proc/self/fd` with its own flags and position), checks each descriptor it gets is of the kind that was checkpointed
//! (same filesystem magic, same file type), ends the plugin, and reports. The restorer
//! takes the descriptors out of the helper with `pidfd_getfd`, lets it exit, and parks
//! them at numbers from [`Parking`]; each restore child inherits them and `dup3`s its
//! own to their numbers with their close-on-exec flag. The restorer's copies are
//! closed when the restore ends.

use crate::manifest::Manifest;
use crate::peer::Peer;
use crate::section::{self, FdRecord};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use spirit_core::plugin::{Parking, TreeView};
use spirit_core::{Error, Result};
use spirit_kmod::fd::{dup_above, pidfd_getfd, pidfd_open};
use spirit_kmod::{clone3_fork, exit_now, ForkOutcome};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use zbus::zvariant::Value;

/// One descriptor ready for its process, parked in the restorer.
pub struct Parked {
    pub pid: i32,
    pub fd: i32,
    pub cloexec: bool,
    pub parked: OwnedFd,
}

/// Per restore: every descriptor the plugin rebuilt.
#[derive(Default)]
pub struct RestoreState {
    pub fds: Vec<Parked>,
}

fn failed(m: &Manifest, msg: impl std::fmt::Display) -> Error {
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
    let got = in_helper(m, &work)?;
    let mut fds = Vec::with_capacity(got.len());
    for ((pid, r), fd) in work.iter().zip(got) {
        fds.push(Parked {
            pid: *pid,
            fd: r.fd,
            cloexec: r.cloexec,
            parked: park_at(&fd, park)?,
        });
    }
    Ok(RestoreState { fds })
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

/// Run the plugin's `Restore` calls in a helper process; the descriptors, in `work`'s
/// order, copied into this process.
fn in_helper(m: &Manifest, work: &[(i32, FdRecord)]) -> Result<Vec<OwnedFd>> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| failed(m, format!("pipe: {e}")));
    let (report_r, report_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let helper = match clone3_fork(None)? {
        ForkOutcome::Child => {
            drop((report_r, go_w));
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let text = match helper_work(m, work) {
                Ok(fds) => {
                    let nums: Vec<String> = fds.iter().map(|f| f.as_raw_fd().to_string()).collect();
                    std::mem::forget(fds); // kept open until this process exits
                    format!("ok {}", nums.join(" "))
                }
                Err(e) => format!("error {e}"),
            };
            let _ = std::fs::File::from(report_w).write_all(text.as_bytes());
            let _ = std::fs::File::from(go_r).read(&mut [0u8; 1]);
            exit_now(0)
        }
        ForkOutcome::Parent { child } => child,
    };
    drop((report_w, go_r));
    let mut text = String::new();
    let read = std::fs::File::from(report_r).read_to_string(&mut text);
    let taken = (|| {
        read.map_err(|e| failed(m, format!("reading the helper's report: {e}")))?;
        if let Some(msg) = text.strip_prefix("error ") {
            return Err(failed(m, msg));
        }
        let nums = text
            .strip_prefix("ok")
            .ok_or_else(|| failed(m, "the helper process died"))?;
        let pidfd = pidfd_open(helper)?;
        nums.split_whitespace()
            .map(|n| {
                let n: i32 = n.parse().map_err(|_| failed(m, "bad helper report"))?;
                Ok(pidfd_getfd(&pidfd, n)?)
            })
            .collect::<Result<Vec<_>>>()
    })();
    drop(go_w);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(helper), None);
    let fds = taken?;
    if fds.len() != work.len() {
        return Err(failed(
            m,
            "the helper returned the wrong number of descriptors",
        ));
    }
    Ok(fds)
}

/// In the helper: start the plugin, rebuild each descriptor (or share or reopen the
/// earlier one of the same object), check its kind.
fn helper_work(
    m: &Manifest,
    work: &[(i32, FdRecord)],
) -> std::result::Result<Vec<OwnedFd>, String> {
    let peer = Peer::start(m)?;
    let mut out: Vec<OwnedFd> = Vec::with_capacity(work.len());
    for (i, (pid, r)) in work.iter().enumerate() {
        let at = format!("process {pid} fd {} ({})", r.fd, r.target);
        let fd = match r.share {
            Some(sh) => {
                let first = work[..i]
                    .iter()
                    .position(|(p, f)| (*p, f.fd) == (sh.pid, sh.fd))
                    .ok_or_else(|| format!("{at}: bad section: it shares process {} fd {}, which has no earlier record", sh.pid, sh.fd))?;
                if sh.same_description {
                    out[first]
                        .try_clone()
                        .map_err(|e| format!("{at}: dup: {e}"))?
                } else {
                    reopen(&out[first], r).map_err(|e| {
                        format!(
                            "{at}: reopening the object of process {} fd {}: {e}",
                            sh.pid, sh.fd
                        )
                    })?
                }
            }
            None => {
                let facts = HashMap::from([
                    ("pid", Value::from(*pid)),
                    ("fd", Value::from(r.fd)),
                    ("flags", Value::from(r.flags)),
                    ("target", Value::from(r.target.as_str())),
                ]);
                peer.restore(&r.data, facts)
                    .map_err(|e| format!("{at}: {e}"))?
            }
        };
        check_kind(&fd, r).map_err(|e| format!("{at}: {e}"))?;
        out.push(fd);
    }
    drop(peer);
    Ok(out)
}

/// Another open file description of the object `first` is on, with `r`'s access mode,
/// status flags and position.
fn reopen(first: &OwnedFd, r: &FdRecord) -> std::io::Result<OwnedFd> {
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
fn check_kind(fd: &OwnedFd, r: &FdRecord) -> std::result::Result<(), String> {
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
