//! spirit's files plugin: the process's descriptors on the filesystem and its
//! filesystem state.
//!
//! Dump: for each descriptor `core` lists, regular files, directories, FIFOs and
//! character devices opened by path are claimed and recorded (path, open flags, close-on-exec,
//! offset, identity); cwd, root and umask too. Prepare: every path must exist, and a
//! device must still be the same device. In the child: cwd and umask are set and every
//! descriptor is reopened at a high number, then moved to its own number with `dup3`
//! (so reopening never clobbers a descriptor not yet placed), offset restored.
//! Pipes, sockets, anonymous inodes, deleted files and terminals are left unclaimed:
//! the checkpoint then fails naming them (their plugins come later).

#[allow(clippy::all, clippy::pedantic)]
mod files_capnp {
    include!(concat!(env!("OUT_DIR"), "/files_capnp.rs"));
}

mod section;

use section::{FdKind, FdRecord, FilesSection};
use spirit_core::plugin::{DumpCtx, Plugin};
use spirit_core::{Error, Result};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

pub struct FilesPlugin;

const VERSION: u32 = 1;

fn fdinfo(pid: i32, fd: i32) -> Option<(u64, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let pos = field("pos:")?.parse().ok()?;
    let flags = u32::from_str_radix(&field("flags:")?, 8).ok()?;
    Some((pos, flags))
}

fn umask_of(pid: i32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

impl Plugin for FilesPlugin {
    fn name(&self) -> &'static str {
        "files"
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn dump(&self, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
        let pid = ctx.remote.pid;
        let link = |name: &str| {
            std::fs::read_link(format!("/proc/{pid}/{name}"))
                .map(|p| p.to_string_lossy().into_owned())
                .map_err(|e| Error::io(format!("/proc/{pid}/{name}"), e))
        };
        let mut sec = FilesSection {
            cwd: link("cwd")?,
            root: link("root")?,
            umask: umask_of(pid),
            fds: Vec::new(),
        };
        for entry in ctx.fds.iter_mut() {
            if !entry.target.starts_with('/') || entry.target.ends_with(" (deleted)") {
                continue;
            }
            // stat through the magic link: the open file itself, wherever it is now.
            let Ok(md) = std::fs::metadata(format!("/proc/{pid}/fd/{}", entry.fd)) else {
                continue;
            };
            let ft = md.file_type();
            let kind = if ft.is_file() {
                FdKind::Regular
            } else if ft.is_dir() {
                FdKind::Directory
            } else if ft.is_char_device() && !is_terminal(md.rdev()) {
                FdKind::CharDevice
            } else if ft.is_fifo() {
                FdKind::Fifo
            } else {
                continue;
            };
            // The path must still name this very file, or a restore would open another.
            match std::fs::metadata(&entry.target) {
                Ok(p) if p.ino() == md.ino() && p.dev() == md.dev() => {}
                _ => continue,
            }
            let Some((pos, flags)) = fdinfo(pid, entry.fd) else {
                continue;
            };
            sec.fds.push(FdRecord {
                fd: entry.fd,
                kind,
                path: entry.target.clone(),
                flags: flags & !(libc::O_CLOEXEC as u32),
                cloexec: flags & libc::O_CLOEXEC as u32 != 0,
                pos,
                rdev: md.rdev(),
                mode: md.mode(),
                size: md.size(),
                mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                dev: md.dev(),
                inode: md.ino(),
            });
            entry.claimed = true;
        }
        Ok(Some(sec.encode()))
    }

    fn prepare(&self, _p: &spirit_core::model::ProcessImage, data: &[u8]) -> Result<()> {
        let sec = FilesSection::decode(data)?;
        for f in &sec.fds {
            let md = std::fs::metadata(&f.path).map_err(|e| Error::FileMismatch {
                path: f.path.clone(),
                what: format!(
                    "open as fd {} at checkpoint but missing on this host: {e}",
                    f.fd
                ),
            })?;
            let same_kind = match f.kind {
                FdKind::Regular => md.is_file(),
                FdKind::Directory => md.is_dir(),
                FdKind::CharDevice => md.file_type().is_char_device() && md.rdev() == f.rdev,
                FdKind::Fifo => md.file_type().is_fifo(),
            };
            if !same_kind {
                return Err(Error::FileMismatch {
                    path: f.path.clone(),
                    what: format!("open as fd {} at checkpoint, but it is now a different kind of file or device", f.fd),
                });
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

    fn restore_in_child(
        &self,
        _p: &spirit_core::model::ProcessImage,
        data: &[u8],
    ) -> Result<Vec<i32>> {
        let sec = FilesSection::decode(data)?;
        if sec.root != "/" {
            nix::unistd::chroot(sec.root.as_str())
                .map_err(|e| Error::Restore(format!("chroot {}: {e}", sec.root)))?;
        }
        nix::unistd::chdir(sec.cwd.as_str())
            .map_err(|e| Error::Restore(format!("chdir {}: {e}", sec.cwd)))?;
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(sec.umask));
        let base = sec.fds.iter().map(|f| f.fd).max().unwrap_or(0) + 1;
        let mut staged = Vec::with_capacity(sec.fds.len());
        for f in &sec.fds {
            staged.push((f, reopen(f, base)?));
        }
        let mut placed = Vec::new();
        for (f, tmp) in staged {
            let flags = if f.cloexec {
                nix::fcntl::OFlag::O_CLOEXEC
            } else {
                nix::fcntl::OFlag::empty()
            };
            nix::unistd::dup3(tmp, f.fd, flags)
                .map_err(|e| Error::Restore(format!("dup3 to fd {}: {e}", f.fd)))?;
            let _ = nix::unistd::close(tmp);
            placed.push(f.fd);
        }
        Ok(placed)
    }

    fn show(&self, data: &[u8]) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(FilesSection::decode(data)?).unwrap_or_default())
    }
}

/// Ttys and ptys belong to the tty plugin (major 4: ttyN/ttyS, 5: tty/console/ptmx,
/// 136–143: pts).
fn is_terminal(rdev: u64) -> bool {
    let major = nix::sys::stat::major(rdev);
    major == 4 || major == 5 || (136..=143).contains(&major)
}

/// Open a FIFO without blocking on a missing peer: a nonblocking open, with a
/// read-write "keeper" held meanwhile so a write-only open finds a reader; then the
/// original blocking mode is put back.
fn open_fifo(path: &str, oflags: nix::fcntl::OFlag) -> nix::Result<i32> {
    use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
    let keeper = open(
        path,
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let fd = open(
        path,
        oflags | OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
    );
    let _ = nix::unistd::close(keeper);
    let fd = fd?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(oflags & OFlag::O_NONBLOCK | oflags & OFlag::O_APPEND),
    )?;
    Ok(fd)
}

/// Open `f` again and park it at a descriptor number ≥ `base`.
fn reopen(f: &FdRecord, base: i32) -> Result<i32> {
    use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
    let strip = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_TRUNC | OFlag::O_CLOEXEC;
    let oflags = (OFlag::from_bits_truncate(f.flags as i32) - strip) | OFlag::O_NOCTTY;
    let fd = if f.kind == FdKind::Fifo {
        open_fifo(&f.path, oflags)
    } else {
        open(f.path.as_str(), oflags, nix::sys::stat::Mode::empty())
    }
    .map_err(|e| Error::Restore(format!("reopening {} as fd {}: {e}", f.path, f.fd)))?;
    if matches!(f.kind, FdKind::Regular | FdKind::Directory) && f.pos > 0 {
        nix::unistd::lseek(fd, f.pos as i64, nix::unistd::Whence::SeekSet)
            .map_err(|e| Error::Restore(format!("seeking {} to {}: {e}", f.path, f.pos)))?;
    }
    let high = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(base))
        .map_err(|e| Error::Restore(format!("moving fd {} out of the way: {e}", f.fd)))?;
    let _ = nix::unistd::close(fd);
    Ok(high)
}
