//! Checkpoint side: every descriptor of the frozen process this plugin knows becomes an
//! [`FdRecord`]; descriptors sharing one open file description are found with `kcmp`;
//! contents (pipe data in flight, deleted files, memfds) and locks are collected.

use crate::section::{EpollTarget, FdKind, FdRecord, FilesSection, InotifyWatch, Lock, LockKind};
use crate::shared::DumpTree;
use spirit_core::plugin::{FdEntry, FdKind as CoreKind};
use spirit_core::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Deleted files and memfds up to this size travel inside the image.
pub const CONTENT_LIMIT: u64 = 64 << 20;
/// Regular files up to this size get a content hash for the identity check.
pub const HASH_LIMIT: u64 = 1 << 20;

/// `/proc/PID/fdinfo/N`, parsed on demand.
pub struct FdInfo {
    text: String,
}

impl FdInfo {
    pub fn read(pid: i32, fd: i32) -> Result<FdInfo> {
        let p = format!("/proc/{pid}/fdinfo/{fd}");
        Ok(FdInfo {
            text: std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?,
        })
    }

    /// The value of `name:` (first match), trimmed.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }

    fn num(&self, name: &str, radix: u32) -> Option<u64> {
        u64::from_str_radix(self.field(name)?, radix).ok()
    }

    /// Lines starting with `prefix`.
    fn lines<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.text
            .lines()
            .filter_map(move |l| l.strip_prefix(prefix))
    }
}

/// `key:value` tokens of one fdinfo line (`tfd: 5 events: 19` has spaces after the
/// colons: both spellings are handled).
fn tokens(line: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if let Some((k, v)) = w.split_once(':') {
            if v.is_empty() {
                if let Some(next) = words.next() {
                    out.insert(k.to_string(), next.to_string());
                }
            } else {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

fn dump_err(pid: i32, msg: String) -> Error {
    Error::Dump { pid, msg }
}

fn unsupported(pid: i32, e: &FdEntry, kind: &str) -> Error {
    Error::UnsupportedFd {
        pid,
        fd: e.fd,
        kind: kind.to_string(),
        target: e.target.clone(),
    }
}

/// Read up to `limit` bytes of the file behind `/proc/PID/fd/N`; `None` if it is
/// larger.
fn content(pid: i32, fd: i32, limit: u64) -> Result<Option<Vec<u8>>> {
    let p = format!("/proc/{pid}/fd/{fd}");
    let f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(&p, e))?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

/// Collect the files section of process `pid`, claiming the descriptors it covers;
/// `tree` is what the dump of its tree knew before it.
pub fn collect(pid: i32, fds: &mut [FdEntry], tree: &mut DumpTree) -> Result<FilesSection> {
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
    // Descriptors an earlier plugin of the pipeline took (an external plugin's path
    // prefix or device major) are its own.
    for entry in fds.iter_mut().filter(|e| !e.claimed) {
        if let Some(rec) = classify(pid, entry)? {
            sec.fds.push(rec);
            entry.claimed = true;
        }
    }
    find_shared(pid, &mut sec.fds)?;
    let mut pidfd = None;
    let entries: HashMap<i32, &FdEntry> = fds.iter().map(|e| (e.fd, e)).collect();
    let mine: std::collections::HashSet<i32> = sec.fds.iter().map(|r| r.fd).collect();
    for i in 0..sec.fds.len() {
        if sec.fds[i].dup_of.is_some() {
            continue;
        }
        let fd = sec.fds[i].fd;
        let entry = entries[&fd];
        let info = FdInfo::read(pid, fd)?;
        sec.fds[i].locks = locks(pid, entry, &info)?;
        let r = &mut sec.fds[i];
        match r.kind {
            FdKind::Regular if r.size <= HASH_LIMIT => {
                if let Some(data) = content(pid, fd, HASH_LIMIT)? {
                    r.hash = Some(xxhash_rust::xxh3::xxh3_64(&data));
                }
            }
            FdKind::DeletedFile | FdKind::Memfd => {
                let data = if r.size > CONTENT_LIMIT {
                    None
                } else {
                    content(pid, fd, CONTENT_LIMIT)?
                };
                match data {
                    Some(data) => r.data = data,
                    None => {
                        let what = if r.kind == FdKind::Memfd {
                            "a memfd"
                        } else {
                            "a deleted file"
                        };
                        return Err(unsupported(
                            pid,
                            entry,
                            &format!(
                                "{what} of {} bytes, more than the {} MiB spirit stores in an image",
                                r.size,
                                CONTENT_LIMIT >> 20
                            ),
                        ));
                    }
                }
                r.size = r.data.len() as u64;
                if r.kind == FdKind::Memfd {
                    r.seals = memfd_seals(pid, fd)?;
                }
            }
            FdKind::Epoll => r.epoll = epoll_targets(pid, entry, &info, &mine)?,
            FdKind::Inotify => r.inotify = inotify_watches(pid, entry, &info)?,
            _ => {}
        }
    }
    pipes(pid, &mut sec.fds, &entries, &mut pidfd, tree)?;
    tree.assign_ids(pid, &mut sec.fds)?;
    Ok(sec)
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

/// The record of one descriptor, or `None` if this plugin does not handle its kind.
fn classify(pid: i32, entry: &FdEntry) -> Result<Option<FdRecord>> {
    let t = entry.target.as_str();
    // The kind as core classified it (fstat, fstatfs, anon_inode name): never guessed
    // from the link text, so a message queue is not taken for a deleted file.
    let kind = match entry.kind {
        CoreKind::Pipe => FdKind::Pipe,
        CoreKind::Eventfd => FdKind::Eventfd,
        CoreKind::Timerfd => FdKind::Timerfd,
        CoreKind::Signalfd => FdKind::Signalfd,
        CoreKind::Epoll => FdKind::Epoll,
        CoreKind::Inotify => FdKind::Inotify,
        CoreKind::Regular | CoreKind::Pseudo => FdKind::Regular,
        CoreKind::Directory => FdKind::Directory,
        CoreKind::CharDevice => FdKind::CharDevice,
        CoreKind::Fifo => FdKind::Fifo,
        CoreKind::Deleted => FdKind::DeletedFile,
        CoreKind::Memfd => FdKind::Memfd,
        _ => return Ok(None),
    };
    // stat through the magic link: the open file itself, wherever it is now.
    let Ok(md) = std::fs::metadata(format!("/proc/{pid}/fd/{}", entry.fd)) else {
        return Ok(None);
    };
    let Ok(info) = FdInfo::read(pid, entry.fd) else {
        return Ok(None);
    };
    let (Some(pos), Some(flags)) = (info.num("pos", 10), info.num("flags", 8)) else {
        return Ok(None);
    };
    let flags = flags as u32;
    let mut r = FdRecord {
        fd: entry.fd,
        kind,
        path: t.to_string(),
        flags: flags & !(libc::O_CLOEXEC as u32),
        cloexec: flags & libc::O_CLOEXEC as u32 != 0,
        pos,
        rdev: md.rdev(),
        mode: md.mode(),
        size: md.size(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        dev: md.dev(),
        inode: md.ino(),
        ..Default::default()
    };
    let bad = |what: &str| dump_err(pid, format!("fd {}: unexpected fdinfo ({what})", entry.fd));
    match kind {
        FdKind::Pipe => r.object_id = md.ino(),
        FdKind::Eventfd => {
            r.counter = info
                .num("eventfd-count", 16)
                .ok_or_else(|| bad("eventfd-count"))?;
            r.semaphore = info.num("eventfd-semaphore", 10) == Some(1);
        }
        FdKind::Timerfd => {
            r.clock_id = info.num("clockid", 10).ok_or_else(|| bad("clockid"))? as i32;
            r.counter = info.num("ticks", 10).unwrap_or(0);
            r.value_ns = timespec_ns(info.field("it_value")).ok_or_else(|| bad("it_value"))?;
            r.interval_ns =
                timespec_ns(info.field("it_interval")).ok_or_else(|| bad("it_interval"))?;
        }
        FdKind::Signalfd => {
            r.sigmask = info.num("sigmask", 16).ok_or_else(|| bad("sigmask"))?;
        }
        FdKind::Epoll | FdKind::Inotify => {}
        FdKind::DeletedFile | FdKind::Memfd => {
            r.path = t.strip_suffix(" (deleted)").unwrap_or(t).to_string();
            r.object_id = md.ino();
        }
        _ => {
            // The path must still name this very file, or a restore would open another.
            match std::fs::metadata(t) {
                Ok(p) if p.ino() == md.ino() && p.dev() == md.dev() => {}
                _ => return Ok(None),
            }
        }
    }
    Ok(Some(r))
}

/// `(SEC, NSEC)` as printed in timerfd fdinfo, in nanoseconds.
fn timespec_ns(v: Option<&str>) -> Option<u64> {
    let inner = v?.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (s, ns) = inner.split_once(',')?;
    let s: u64 = s.trim().parse().ok()?;
    let ns: u64 = ns.trim().parse().ok()?;
    Some(s * 1_000_000_000 + ns)
}

/// The seals of a memfd (fails for files that are no memfd).
fn memfd_seals(pid: i32, fd: i32) -> Result<u32> {
    let p = format!("/proc/{pid}/fd/{fd}");
    let f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
    let s = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GET_SEALS)
        .map_err(|e| Error::io(&p, e.into()))?;
    Ok(s as u32)
}

/// Mark descriptors that share an open file description with a lower one (dup, dup2,
/// F_DUPFD, inherited): `kcmp(KCMP_FILE)` compares the kernel's file objects.
fn find_shared(pid: i32, recs: &mut [FdRecord]) -> Result<()> {
    for i in 0..recs.len() {
        for j in 0..i {
            let (a, b) = (&recs[j], &recs[i]);
            if a.dup_of.is_some() || a.kind != b.kind || a.dev != b.dev || a.inode != b.inode {
                continue;
            }
            let same = spirit_kmod::fd::kcmp_same_file(pid, a.fd, pid, b.fd).map_err(|e| {
                dump_err(
                    pid,
                    format!(
                        "comparing fds {} and {} with kcmp failed ({e}); spirit needs kcmp (CONFIG_CHECKPOINT_RESTORE) to find shared descriptors",
                        a.fd, b.fd
                    ),
                )
            })?;
            if same {
                let owner = a.fd;
                let b = &mut recs[i];
                b.dup_of = Some(owner);
                b.data.clear();
                break;
            }
        }
    }
    Ok(())
}

/// Locks held through this open file description (`lock:` lines of its fdinfo): flock
/// and OFD locks belong to the description, POSIX locks to the process (only this
/// process's are kept).
fn locks(pid: i32, entry: &FdEntry, info: &FdInfo) -> Result<Vec<Lock>> {
    let mut out = Vec::new();
    for l in info.lines("lock:") {
        // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 8 {
            continue;
        }
        let kind = match w[1] {
            "FLOCK" => LockKind::Flock,
            "POSIX" => LockKind::Posix,
            "OFDLCK" => LockKind::Ofd,
            other => {
                return Err(unsupported(
                    pid,
                    entry,
                    &format!(
                        "a file holding a {} (lease or delegation)",
                        other.to_lowercase()
                    ),
                ))
            }
        };
        if kind == LockKind::Posix && w[4].parse::<i32>().ok() != Some(pid) {
            continue;
        }
        let write = match w[3] {
            "WRITE" => true,
            "READ" => false,
            _ => continue,
        };
        let start: u64 = w[6].parse().unwrap_or(0);
        let len = match w[7] {
            "EOF" => 0,
            end => end.parse::<u64>().map_or(0, |e| e + 1 - start),
        };
        out.push(Lock {
            kind,
            write,
            start,
            len,
        });
    }
    Ok(out)
}

/// The descriptors an epoll instance watches (`tfd: N events: E data: D` lines). Each
/// must still be open in the process and be one this plugin restores (`mine`): the
/// restore re-adds it by number once it is in place.
fn epoll_targets(
    pid: i32,
    entry: &FdEntry,
    info: &FdInfo,
    mine: &std::collections::HashSet<i32>,
) -> Result<Vec<EpollTarget>> {
    let mut out = Vec::new();
    for l in info.lines("tfd:") {
        let t = tokens(&format!("tfd:{l}"));
        let parse = |k: &str, radix| t.get(k).and_then(|v| u64::from_str_radix(v, radix).ok());
        let (Some(tfd), Some(events), Some(data)) =
            (parse("tfd", 10), parse("events", 16), parse("data", 16))
        else {
            return Err(dump_err(
                pid,
                format!("fd {}: unexpected epoll fdinfo line {l:?}", entry.fd),
            ));
        };
        let tfd = tfd as i32;
        let current = spirit_kmod::fd::epoll_target_is_current(pid, entry.fd, tfd).unwrap_or(false);
        if !current || !mine.contains(&tfd) {
            let why = if !current {
                "closed or reused for another file since (the watched file lives on only inside the epoll set)"
            } else if Path::new(&format!("/proc/{pid}/fd/{tfd}")).exists() {
                "a descriptor left out or of a kind the files plugin does not restore (epoll sets over sockets or terminals are not supported yet)"
            } else {
                "closed (its file lives on only inside the epoll set)"
            };
            return Err(unsupported(
                pid,
                entry,
                &format!("an epoll instance watching fd {tfd}, which is {why}"),
            ));
        }
        out.push(EpollTarget {
            fd: tfd,
            events: events as u32,
            data,
        });
    }
    Ok(out)
}

/// The watches of an inotify instance, each resolved to a path through its file handle.
fn inotify_watches(pid: i32, entry: &FdEntry, info: &FdInfo) -> Result<Vec<InotifyWatch>> {
    let mut out = Vec::new();
    for l in info.lines("inotify ") {
        let t = tokens(l);
        let hex = |k: &str| t.get(k).and_then(|v| u64::from_str_radix(v, 16).ok());
        let (Some(wd), Some(ino), Some(sdev), Some(mask), Some(htype), Some(handle)) = (
            hex("wd"),
            hex("ino"),
            hex("sdev"),
            hex("mask"),
            hex("fhandle-type"),
            t.get("f_handle").and_then(|h| unhex(h)),
        ) else {
            return Err(dump_err(
                pid,
                format!("fd {}: unexpected inotify fdinfo line {l:?}", entry.fd),
            ));
        };
        let path = resolve_handle(pid, sdev, htype as i32, &handle, ino).ok_or_else(|| {
            unsupported(
                pid,
                entry,
                &format!(
                    "an inotify instance whose watch {wd} (inode {ino} on device {}:{}) spirit cannot resolve to a path (needs CAP_DAC_READ_SEARCH and the file still linked)",
                    sdev >> 20,
                    sdev & 0xfffff
                ),
            )
        })?;
        out.push(InotifyWatch {
            wd: wd as i32,
            path,
            mask: mask as u32,
        });
    }
    out.sort_by_key(|w| w.wd);
    Ok(out)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The path of the file a handle names: open it through a mount of its filesystem
/// (from the process's mountinfo) and read the path back.
fn resolve_handle(pid: i32, sdev: u64, htype: i32, handle: &[u8], ino: u64) -> Option<String> {
    let want = format!("{}:{}", sdev >> 20, sdev & 0xfffff);
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    // Fields: id parent major:minor root mountpoint ...; prefer a mount of the fs root.
    let mut mounts: Vec<(bool, String)> = mi
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.get(2) == Some(&want.as_str())).then(|| (w[3] != "/", w[4].to_string()))
        })
        .collect();
    mounts.sort();
    for (_, mnt) in mounts {
        let Ok(m) = std::fs::File::open(format!("/proc/{pid}/root{mnt}")) else {
            continue;
        };
        let Ok(f) = spirit_kmod::fd::open_by_handle(
            &m.into(),
            htype,
            handle,
            libc::O_PATH | libc::O_CLOEXEC,
        ) else {
            continue;
        };
        let link = format!("/proc/self/fd/{}", f.as_raw_fd());
        let Ok(p) = std::fs::read_link(&link) else {
            continue;
        };
        let p = p.to_string_lossy().into_owned();
        let same = std::fs::metadata(&link).is_ok_and(|md| md.ino() == ino);
        if same && !p.ends_with(" (deleted)") && std::path::Path::new(&p).exists() {
            return Some(p);
        }
    }
    None
}

/// Pipes: each end must be held by a process of the tree (this one, among the
/// descriptors it does not leave out, or another); the data in flight is read once per
/// pipe, without consuming it (`tee` from a copy of a read end taken with `pidfd_getfd`,
/// from this process or another of the tree), and stored on the pipe's first descriptor
/// in dump order; every descriptor of the pipe records its capacity.
fn pipes(
    pid: i32,
    recs: &mut [FdRecord],
    entries: &HashMap<i32, &FdEntry>,
    pidfd: &mut Option<std::os::fd::OwnedFd>,
    tree: &mut DumpTree,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for i in 0..recs.len() {
        if recs[i].kind != FdKind::Pipe || !seen.insert(recs[i].object_id) {
            continue;
        }
        let id = recs[i].object_id;
        let acc = |r: &FdRecord| r.flags as i32 & libc::O_ACCMODE;
        let mine = |write: bool| {
            recs.iter().find(|r| {
                r.kind == FdKind::Pipe
                    && r.object_id == id
                    && acc(r)
                        != if write {
                            libc::O_RDONLY
                        } else {
                            libc::O_WRONLY
                        }
            })
        };
        let ends = tree.pipe_ends.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        for (write, name) in [(false, "read"), (true, "write")] {
            if mine(write).is_some() {
                continue;
            }
            let holds = |e: &&crate::shared::PipeEnd| if write { e.write } else { e.read };
            if ends.iter().filter(holds).any(|e| e.pid != pid) {
                continue;
            }
            let why = match ends.iter().filter(holds).find(|e| e.pid == pid) {
                Some(e) => format!(
                    "its {name} end, fd {}, is left out of the checkpoint; keep both ends or leave both out",
                    e.fd
                ),
                None => format!(
                    "its {name} end is held by no process of the tree (closed, or held outside it: checkpoint the process tree that holds both ends)"
                ),
            };
            return Err(unsupported(
                pid,
                entries[&recs[i].fd],
                &format!("one end of a pipe (inode {id}): {why}"),
            ));
        }
        let any_fd = recs[i].fd;
        if pidfd.is_none() {
            *pidfd = Some(spirit_kmod::fd::pidfd_open(pid)?);
        }
        let getfd = |fd: i32| {
            spirit_kmod::fd::pidfd_getfd(pidfd.as_ref().expect("set above"), fd).map_err(|e| {
                dump_err(
                    pid,
                    format!("fd {fd}: taking a copy of the pipe with pidfd_getfd: {e}"),
                )
            })
        };
        let size = if tree.captured.contains(&id) {
            pipe_size(&getfd(any_fd)?).map_err(|e| dump_err(pid, format!("fd {any_fd}: {e}")))?
        } else {
            let peeked = match mine(false) {
                Some(reader) => {
                    let fd = reader.fd;
                    peek_pipe(&getfd(fd)?).map_err(|e| {
                        dump_err(
                            pid,
                            format!("fd {fd}: reading the pipe's data in flight: {e}"),
                        )
                    })?
                }
                None => match crate::shared::peek_elsewhere(tree, pid, id)? {
                    Some(p) => p,
                    None => (Vec::new(), pipe_size(&getfd(any_fd)?)?),
                },
            };
            tree.captured.insert(id);
            recs[i].data = peeked.0;
            peeked.1
        };
        for r in recs
            .iter_mut()
            .filter(|r| r.kind == FdKind::Pipe && r.object_id == id)
        {
            r.pipe_size = size;
        }
    }
    Ok(())
}

fn pipe_size(fd: &std::os::fd::OwnedFd) -> Result<u32> {
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ)
        .map(|s| s as u32)
        .map_err(|e| Error::Restore(format!("F_GETPIPE_SZ: {e}")))
}

/// The bytes waiting in pipe `theirs` (left in place) and its capacity.
pub fn peek_pipe(theirs: &std::os::fd::OwnedFd) -> Result<(Vec<u8>, u32)> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let size = fcntl(theirs.as_raw_fd(), FcntlArg::F_GETPIPE_SZ)
        .map_err(|e| Error::Restore(format!("F_GETPIPE_SZ: {e}")))?;
    let pending = spirit_kmod::fd::pipe_pending(theirs)?;
    if pending == 0 {
        return Ok((Vec::new(), size as u32));
    }
    let (ours_r, ours_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| Error::Restore(format!("pipe2: {e}")))?;
    // Our pipe holds at least as many buffers as theirs, so one tee takes everything.
    fcntl(ours_w.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size))
        .map_err(|e| Error::Restore(format!("F_SETPIPE_SZ {size}: {e}")))?;
    let copied = spirit_kmod::fd::tee(theirs, &ours_w, pending)?;
    if copied != pending {
        return Err(Error::Restore(format!(
            "tee copied {copied} of the {pending} bytes in the pipe"
        )));
    }
    drop(ours_w);
    let mut data = Vec::with_capacity(pending);
    std::fs::File::from(ours_r)
        .read_to_end(&mut data)
        .map_err(|e| Error::Restore(format!("reading the copy of the pipe: {e}")))?;
    if data.len() != pending {
        return Err(Error::Restore(format!(
            "read {} of the {pending} bytes copied from the pipe",
            data.len()
        )));
    }
    Ok((data, size as u32))
}
