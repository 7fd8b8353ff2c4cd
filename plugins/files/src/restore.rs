//! Restore side, inside the new process: every open file description is rebuilt once
//! and parked at a high descriptor number, then moved to its own number(s) with `dup3`
//! (dup'ed fds get the same description again); epoll instances come last, once the
//! descriptors they watch are in place, and locks after the parking descriptors are
//! closed (closing any descriptor of a file drops the process's POSIX locks on it).

use crate::section::{FdKind, FdRecord, FilesSection, LockKind};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

pub fn fail(f: &FdRecord, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Restore(format!("fd {} ({}): {what}: {e}", f.fd, f.path))
}

/// Status flags `F_SETFL` can set.
const SETTABLE: i32 = libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_NOATIME;

/// Move `fd` to a number ≥ `base` (close-on-exec; the final flags come with `dup3`).
pub fn park(fd: OwnedFd, base: i32) -> Result<OwnedFd> {
    if fd.as_raw_fd() >= base {
        return Ok(fd);
    }
    kfd::dup_above(&fd, base)
        .map_err(|e| Error::Restore(format!("moving a descriptor above {base}: {e}")))
}

/// Open `path` with the access mode and flags of `f` (never creating or truncating).
fn open_as(f: &FdRecord, path: &str) -> Result<OwnedFd> {
    let acc = f.flags as i32 & libc::O_ACCMODE;
    let strip = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_ACCMODE;
    let file = std::fs::OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags((f.flags as i32 & !strip) | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::RestoreNotPermitted {
                reason: format!(
                    "fd {} of the process ({path}) cannot be opened by you: {e}",
                    f.fd
                ),
            },
            _ => fail(f, &format!("reopening {path}"), e),
        })?;
    Ok(file.into())
}

/// Open a FIFO without blocking on a missing peer: a non-blocking open, with a
/// read-write "keeper" held meanwhile so a write-only open finds a reader; then the
/// original blocking mode is put back.
fn open_fifo(f: &FdRecord) -> Result<OwnedFd> {
    let keeper = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&f.path)
        .map_err(|e| fail(f, "opening the FIFO read-write", e))?;
    let nonblocking = FdRecord {
        flags: f.flags | libc::O_NONBLOCK as u32,
        ..f.clone()
    };
    let fd = open_as(&nonblocking, &f.path)?;
    drop(keeper);
    kfd::set_status_flags(&fd, f.flags as i32 & SETTABLE)?;
    Ok(fd)
}

fn seek(fd: &OwnedFd, f: &FdRecord) -> Result<()> {
    if f.pos > 0 {
        nix::unistd::lseek(fd.as_raw_fd(), f.pos as i64, nix::unistd::Whence::SeekSet)
            .map_err(|e| fail(f, &format!("seeking to {}", f.pos), e))?;
    }
    Ok(())
}

fn write_all(fd: OwnedFd, data: &[u8], f: &FdRecord) -> Result<OwnedFd> {
    let mut file = std::fs::File::from(fd);
    file.write_all(data)
        .map_err(|e| fail(f, "writing the saved content", e))?;
    Ok(file.into())
}

/// Shared objects behind several descriptions: a pipe's two ends, a deleted file or
/// memfd opened more than once. The first description of each is made here; others
/// are reopened through `/proc/self/fd`.
enum Object {
    Pipe(PipeEnds),
    File(OwnedFd),
}

/// Rebuild the descriptors of `sec`. `shared` maps the fds whose open file description
/// other processes of the tree share to the number it was parked at by their common
/// ancestor (see `shared.rs`); `inherited` lists every parked number this process
/// inherited, closed once its own descriptors are in place (before locks are taken:
/// closing any descriptor of a file drops the process's POSIX locks on it).
pub fn restore(
    sec: &FilesSection,
    shared: &HashMap<i32, i32>,
    inherited: &[i32],
) -> Result<Vec<i32>> {
    let base = sec.fds.iter().map(|f| f.fd).max().unwrap_or(0) + 1;
    let mut objects: HashMap<(u64, u64), Object> = HashMap::new();
    let mut staged: HashMap<i32, OwnedFd> = HashMap::new();
    let owners = || sec.fds.iter().filter(|f| f.dup_of.is_none());
    for f in owners().filter(|f| f.kind != FdKind::Epoll && !shared.contains_key(&f.fd)) {
        let fd = build(sec, f, &mut objects)?;
        staged.insert(f.fd, park(fd, base)?);
    }
    // Memfd seals only once every description of it exists (a write seal would stop
    // reopening it for writing).
    for f in owners().filter(|f| f.kind == FdKind::Memfd && f.seals != 0) {
        if let Some(Object::File(m)) = objects.get(&(f.dev, f.object_id)) {
            seal(f, m, f.seals)?;
        }
    }
    drop(objects);
    let place = |f: &FdRecord, src: i32| -> Result<()> {
        let flags = if f.cloexec {
            nix::fcntl::OFlag::O_CLOEXEC
        } else {
            nix::fcntl::OFlag::empty()
        };
        nix::unistd::dup3(src, f.fd, flags).map_err(|e| {
            if shared.get(&f.fd) == Some(&src) {
                fail(
                    f,
                    &format!("dup3 of the description shared with other processes of the tree, which should have been inherited at descriptor {src}"),
                    e,
                )
            } else {
                fail(f, "dup3 into place", e)
            }
        })?;
        Ok(())
    };
    let owner_of = |f: &FdRecord| f.dup_of.unwrap_or(f.fd);
    for f in sec.fds.iter().filter(|f| f.kind != FdKind::Epoll) {
        let src = match shared.get(&owner_of(f)) {
            Some(&slot) => slot,
            None => staged
                .get(&owner_of(f))
                .ok_or_else(|| fail(f, "placing", "its open file description was not rebuilt"))?
                .as_raw_fd(),
        };
        place(f, src)?;
    }
    drop(staged);
    for &slot in inherited {
        let _ = nix::unistd::close(slot);
    }
    // Epoll instances, each once everything it watches is in place (an epoll set may
    // watch another).
    let mut pending: Vec<&FdRecord> = owners().filter(|f| f.kind == FdKind::Epoll).collect();
    let mut placed: std::collections::HashSet<i32> = sec
        .fds
        .iter()
        .filter(|f| f.kind != FdKind::Epoll)
        .map(|f| f.fd)
        .collect();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|e| e.epoll.iter().all(|t| placed.contains(&t.fd)));
        let Some(i) = ready else {
            let e = pending[0];
            return Err(fail(
                e,
                "rebuilding the epoll set",
                "it watches descriptors that are not in the image (or epoll sets watch each other in a cycle)",
            ));
        };
        let e = pending.remove(i);
        let ep = park(kfd::epoll_create(libc::EPOLL_CLOEXEC)?, base)?;
        for t in &e.epoll {
            kfd::epoll_add(&ep, t.fd, t.events, t.data).map_err(|err| {
                fail(
                    e,
                    &format!("watching fd {} (events {:#x})", t.fd, t.events),
                    err,
                )
            })?;
        }
        kfd::set_status_flags(&ep, e.flags as i32 & SETTABLE)?;
        for f in sec.fds.iter().filter(|f| owner_of(f) == e.fd) {
            place(f, ep.as_raw_fd())?;
            placed.insert(f.fd);
        }
    }
    // Locks, now that no parking descriptor is left to close.
    for f in owners() {
        for l in &f.locks {
            let res = match l.kind {
                LockKind::Flock => kfd::flock(
                    f.fd,
                    libc::LOCK_NB
                        | if l.write {
                            libc::LOCK_EX
                        } else {
                            libc::LOCK_SH
                        },
                ),
                LockKind::Posix => kfd::range_lock(f.fd, libc::F_SETLK, l.write, l.start, l.len),
                LockKind::Ofd => kfd::range_lock(f.fd, libc::F_OFD_SETLK, l.write, l.start, l.len),
            };
            res.map_err(|e| {
                fail(
                    f,
                    &format!(
                        "taking its {:?} {} lock again (is the checkpointed process, or another, still holding it?)",
                        l.kind,
                        if l.write { "write" } else { "read" }
                    ),
                    e,
                )
            })?;
        }
    }
    Ok(sec.fds.iter().map(|f| f.fd).collect())
}

/// Seal memfd `m` (once every description of it exists: a write seal would stop
/// reopening it for writing).
pub fn seal(f: &FdRecord, m: &OwnedFd, seals: u32) -> Result<()> {
    let flags = nix::fcntl::SealFlag::from_bits_truncate(seals as i32);
    nix::fcntl::fcntl(m.as_raw_fd(), nix::fcntl::FcntlArg::F_ADD_SEALS(flags))
        .map_err(|e| fail(f, &format!("sealing the memfd ({seals:#x})"), e))?;
    Ok(())
}

/// Rebuild the open file description of owner record `f`.
fn build(
    sec: &FilesSection,
    f: &FdRecord,
    objects: &mut HashMap<(u64, u64), Object>,
) -> Result<OwnedFd> {
    match f.kind {
        FdKind::Pipe => build_pipe(sec, f, objects),
        FdKind::DeletedFile | FdKind::Memfd => {
            let key = (f.dev, f.object_id);
            if let Entry::Vacant(slot) = objects.entry(key) {
                let data = sec
                    .fds
                    .iter()
                    .find(|o| o.kind == f.kind && (o.dev, o.object_id) == key && !o.data.is_empty())
                    .map_or(&[][..], |o| &o.data[..]);
                slot.insert(Object::File(make_file_object(f, data)?));
            }
            let Some(Object::File(obj)) = objects.get(&key) else {
                return Err(fail(
                    f,
                    "rebuilding",
                    "the same inode is listed as two kinds",
                ));
            };
            open_object(f, obj)
        }
        _ => build_desc(f),
    }
}

/// The deleted file or memfd `f` is a description of, with `data` as its content.
pub fn make_file_object(f: &FdRecord, data: &[u8]) -> Result<OwnedFd> {
    let made = if f.kind == FdKind::Memfd {
        make_memfd(f)?
    } else {
        make_unlinked(f)?
    };
    let made = write_all(made, data, f)?;
    let file = std::fs::File::from(made);
    use std::os::unix::fs::PermissionsExt;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(f.mode & 0o7777));
    Ok(file.into())
}

/// A new description of deleted file or memfd `obj`, with the flags and offset of `f`.
pub fn open_object(f: &FdRecord, obj: &OwnedFd) -> Result<OwnedFd> {
    let fd = open_as(f, &format!("/proc/self/fd/{}", obj.as_raw_fd()))?;
    seek(&fd, f)?;
    Ok(fd)
}

/// Rebuild an open file description that stands alone (no pipe, deleted file or memfd
/// behind it, no epoll set).
pub fn build_desc(f: &FdRecord) -> Result<OwnedFd> {
    let anon_flags = f.flags as i32 & SETTABLE;
    let fd = match f.kind {
        FdKind::Regular | FdKind::Directory | FdKind::CharDevice => {
            let fd = open_as(f, &f.path)?;
            if f.kind != FdKind::CharDevice {
                seek(&fd, f)?;
            }
            fd
        }
        FdKind::Fifo => open_fifo(f)?,
        FdKind::Eventfd => {
            let sem = if f.semaphore { libc::EFD_SEMAPHORE } else { 0 };
            let fd = kfd::eventfd(f.counter, libc::EFD_CLOEXEC | sem)
                .map_err(|e| fail(f, &format!("eventfd with count {}", f.counter), e))?;
            kfd::set_status_flags(&fd, anon_flags)?;
            fd
        }
        FdKind::Timerfd => {
            let fd = kfd::timerfd_create(f.clock_id, libc::TFD_CLOEXEC)
                .map_err(|e| fail(f, &format!("timerfd on clock {}", f.clock_id), e))?;
            // Armed periodic timers never show 0 remaining for long; keep them armed.
            let value = if f.value_ns == 0 && f.interval_ns > 0 {
                1
            } else {
                f.value_ns
            };
            if value > 0 {
                kfd::timerfd_settime(&fd, value, f.interval_ns)
                    .map_err(|e| fail(f, "arming the timer", e))?;
            }
            if f.counter > 0 {
                kfd::timerfd_set_ticks(&fd, f.counter).map_err(|e| {
                    fail(f, &format!("setting {} pending expirations", f.counter), e)
                })?;
            }
            kfd::set_status_flags(&fd, anon_flags)?;
            fd
        }
        FdKind::Signalfd => {
            let fd = kfd::signalfd(f.sigmask, libc::SFD_CLOEXEC)
                .map_err(|e| fail(f, &format!("signalfd for mask {:#x}", f.sigmask), e))?;
            kfd::set_status_flags(&fd, anon_flags)?;
            fd
        }
        FdKind::Inotify => {
            let fd = build_inotify(f)?;
            kfd::set_status_flags(&fd, anon_flags)?;
            fd
        }
        FdKind::Pipe | FdKind::DeletedFile | FdKind::Memfd | FdKind::Epoll => {
            return Err(fail(
                f,
                "rebuilding",
                "pipes, deleted files, memfds and epoll sets are rebuilt with what they share",
            ))
        }
    };
    Ok(fd)
}

/// A new pipe (non-blocking while it is refilled; `packet`: O_DIRECT) of capacity
/// `size` (0: the default), holding `data`.
pub fn make_pipe(f: &FdRecord, packet: bool, size: u32, data: &[u8]) -> Result<(OwnedFd, OwnedFd)> {
    let mut flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
    if packet {
        flags |= nix::fcntl::OFlag::O_DIRECT;
    }
    let (r, w) = nix::unistd::pipe2(flags).map_err(|e| fail(f, "pipe2", e))?;
    if size > 0 {
        nix::fcntl::fcntl(
            w.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(size as i32),
        )
        .map_err(|e| fail(f, &format!("setting the pipe's capacity to {size}"), e))?;
    }
    let w = write_all(w, data, f)?;
    Ok((r, w))
}

/// The two ends of a rebuilt pipe, handed out as descriptions: the first description
/// of each end is the end itself, others reopen it through `/proc/self/fd`.
pub struct PipeEnds {
    r: OwnedFd,
    w: OwnedFd,
    used_r: bool,
    used_w: bool,
}

impl PipeEnds {
    pub fn new(r: OwnedFd, w: OwnedFd) -> PipeEnds {
        PipeEnds {
            r,
            w,
            used_r: false,
            used_w: false,
        }
    }

    /// The description of record `f` (its end from its access mode), with its status
    /// flags.
    pub fn take(&mut self, f: &FdRecord) -> Result<OwnedFd> {
        let write = f.flags as i32 & libc::O_ACCMODE == libc::O_WRONLY;
        let (end, used) = if write {
            (&self.w, &mut self.used_w)
        } else {
            (&self.r, &mut self.used_r)
        };
        let fd = if *used {
            // Another description of the same end (reopened through /proc): its own flags.
            open_as(f, &format!("/proc/self/fd/{}", end.as_raw_fd()))?
        } else {
            *used = true;
            end.try_clone().map_err(|e| fail(f, "dup", e))?
        };
        kfd::set_status_flags(&fd, f.flags as i32 & SETTABLE)?;
        Ok(fd)
    }
}

fn build_pipe(
    sec: &FilesSection,
    f: &FdRecord,
    objects: &mut HashMap<(u64, u64), Object>,
) -> Result<OwnedFd> {
    let key = (0, f.object_id);
    if let Entry::Vacant(slot) = objects.entry(key) {
        let mine = || {
            sec.fds
                .iter()
                .filter(|o| o.kind == FdKind::Pipe && o.object_id == f.object_id)
        };
        let packet = mine().any(|o| o.flags as i32 & libc::O_DIRECT != 0);
        let data = mine()
            .find(|o| !o.data.is_empty())
            .map_or(&[][..], |o| &o.data[..]);
        let (r, w) = make_pipe(f, packet, f.pipe_size, data)?;
        slot.insert(Object::Pipe(PipeEnds::new(r, w)));
    }
    let Some(Object::Pipe(ends)) = objects.get_mut(&key) else {
        return Err(fail(
            f,
            "rebuilding",
            "the same inode is listed as two kinds",
        ));
    };
    ends.take(f)
}

fn make_memfd(f: &FdRecord) -> Result<OwnedFd> {
    let name = f.path.strip_prefix("/memfd:").unwrap_or(&f.path);
    let mut name: String = name.chars().take(240).collect();
    name.retain(|c| c != '\0');
    kfd::memfd_create(&name, libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        .map_err(|e| fail(f, "memfd_create", e))
}

/// An unlinked regular file: `O_TMPFILE` in the original directory if it still exists,
/// else in $TMPDIR or /tmp; a named file unlinked at once where `O_TMPFILE` is not
/// supported.
fn make_unlinked(f: &FdRecord) -> Result<OwnedFd> {
    let dir = std::path::Path::new(&f.path)
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| "/".into());
    let tmp = std::env::var_os("TMPDIR").map_or_else(|| "/tmp".into(), std::path::PathBuf::from);
    let mut last = None;
    for d in [dir, tmp] {
        if !d.is_dir() {
            continue;
        }
        let tmpfile = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(&d);
        match tmpfile {
            Ok(file) => return Ok(file.into()),
            Err(e) => last = Some(e),
        }
        for n in 0..100u32 {
            let p = d.join(format!(".spirit-deleted-{}-{n}", std::process::id()));
            let made = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p);
            match made {
                Ok(file) => {
                    let _ = std::fs::remove_file(&p);
                    return Ok(file.into());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
    }
    Err(fail(
        f,
        "creating an unlinked file for the deleted file's content (in its directory, $TMPDIR or /tmp)",
        last.map_or_else(|| "no such directory".to_string(), |e| e.to_string()),
    ))
}

/// Inotify watches with their original watch descriptors: watches are added in wd
/// order; where the kernel would hand out a lower wd, that number is used up (added
/// and removed again) first, and the resulting IN_IGNORED events are drained.
fn build_inotify(f: &FdRecord) -> Result<OwnedFd> {
    let fd = kfd::inotify_init(libc::IN_CLOEXEC | libc::IN_NONBLOCK)
        .map_err(|e| fail(f, "inotify_init1", e))?;
    let mut burned = false;
    for w in &f.inotify {
        let mut tries = 0u32;
        loop {
            let wd = kfd::inotify_add_watch(&fd, &w.path, w.mask)
                .map_err(|e| fail(f, &format!("watching {} (wd {})", w.path, w.wd), e))?;
            if wd == w.wd {
                break;
            }
            if wd > w.wd || tries > 1 << 16 {
                return Err(fail(
                    f,
                    &format!("watching {} as wd {}", w.path, w.wd),
                    format!("the kernel gave wd {wd} (is the same file watched twice?)"),
                ));
            }
            kfd::inotify_rm_watch(&fd, wd).map_err(|e| fail(f, "inotify_rm_watch", e))?;
            burned = true;
            tries += 1;
        }
    }
    if burned {
        let mut file = std::fs::File::from(fd);
        let mut buf = [0u8; 4096];
        while matches!(file.read(&mut buf), Ok(n) if n > 0) {}
        return Ok(file.into());
    }
    Ok(fd)
}
