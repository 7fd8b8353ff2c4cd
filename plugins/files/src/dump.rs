//! One process's dump, the tree frozen: each descriptor of a kind the files plugin
//! handles (as core classified it) becomes a record with its kind's payload and is
//! claimed; descriptors sharing one open file description (`kcmp`) are recorded once
//! and the others marked `dup_of` it; owner records get what only they carry (content,
//! hash, watches, locks, signal owner, lease); pipes, FIFOs' data in flight and tree-wide description ids
//! go through the tree's state ([`DumpTree`]).

use crate::kinds::lock::Lock;
use crate::kinds::owner::{Lease, Owner};
use crate::kinds::pipe::Pipe;
use crate::kinds::Payload;
use crate::record::{FdInfo, Head, Probe};
use crate::section::{FdRecord, FilesSection};
use crate::tree::DumpTree;
use spirit_core::plugin::FdEntry;
use spirit_core::{Error, Result};
use std::collections::{HashMap, HashSet};

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
        umask: spirit_core::procinfo::umask(pid)?,
        fds: Vec::new(),
    };
    // What each record's kind was dumped from, for the owner-only pass.
    let mut facts: Vec<(FdInfo, std::fs::Metadata)> = Vec::new();
    // Descriptors an earlier plugin of the pipeline took (an external plugin's path
    // prefix or device major) are its own.
    for entry in fds.iter_mut().filter(|e| !e.claimed) {
        let Some((rec, fact)) = record(pid, entry)? else {
            continue;
        };
        sec.fds.push(rec);
        facts.push(fact);
        entry.claimed = true;
    }
    let entries: HashMap<i32, &FdEntry> = fds.iter().map(|e| (e.fd, e)).collect();
    find_shared(pid, &mut sec.fds, &entries)?;
    // What an epoll set may watch: this plugin's descriptors and the sockets (the
    // sockets plugin's; a socket left out with --skip-fd is not among them).
    let mine: HashSet<i32> = sec
        .fds
        .iter()
        .map(|r| r.fd())
        .chain(
            fds.iter()
                .filter(|e| e.kind == spirit_core::plugin::FdKind::Socket)
                .map(|e| e.fd),
        )
        .collect();
    let pidfd = match sec.fds.is_empty() {
        true => None,
        false => Some(spirit_kmod::fd::pidfd_open(pid).map_err(|e| Error::Dump {
            pid,
            msg: format!("pidfd_open: {e}"),
        })?),
    };
    for (r, (info, md)) in sec.fds.iter_mut().zip(&facts) {
        if !r.is_owner() {
            continue;
        }
        let p = Probe {
            pid,
            entry: entries[&r.fd()],
            info,
            md,
        };
        r.locks = Lock::dump(&p)?;
        // An O_PATH descriptor has no signal owner or lease (fcntl gives EBADF).
        if let Some(pidfd) = pidfd
            .as_ref()
            .filter(|_| r.head.flags as i32 & libc::O_PATH == 0)
        {
            let copy = spirit_kmod::fd::pidfd_getfd(pidfd, r.fd()).map_err(|e| Error::Dump {
                pid,
                msg: format!("fd {}: taking a copy (pidfd_getfd): {e}", r.fd()),
            })?;
            r.owner = Owner::dump(pid, r.fd(), &copy)?;
            r.lease = Lease::dump(pid, r.fd(), &copy)?;
        }
        // Opening the file to read it would break a write lease (and wait for the
        // frozen holder): a regular file goes without its hash, other kinds are refused.
        if r.lease == Some(Lease::Write) {
            if !matches!(r.payload, Payload::Regular(_)) {
                return Err(p.refuse(format!(
                    "{} holding a write lease (spirit would break it reading the file)",
                    p.entry.kind.describe()
                )));
            }
        } else {
            r.payload.fill(&p, &mine)?;
        }
        // An O_PATH descriptor of a FIFO does not reach its buffer.
        let o_path = r.head.flags as i32 & libc::O_PATH != 0;
        if let Payload::Fifo(f) = &mut r.payload {
            if !o_path && tree.fifos.insert((f.file.dev, f.file.inode)) {
                f.capture(pid, &r.head)?;
            }
            f.poll_hangup(pid, &r.head)?;
        }
    }
    let mut pipes: Vec<(&Head, &mut Pipe)> = sec
        .fds
        .iter_mut()
        .filter_map(|r| match &mut r.payload {
            Payload::Pipe(p) => Some((&r.head, p)),
            _ => None,
        })
        .collect();
    tree.pipes.capture(pid, &mut pipes, &entries)?;
    tree.assign_ids(pid, &mut sec.fds, &entries)?;
    Ok(sec)
}

/// The record of one descriptor, or `None` if this plugin does not handle it (left
/// unclaimed: core refuses it naming pid, fd and kind).
fn record(pid: i32, entry: &FdEntry) -> Result<Option<(FdRecord, (FdInfo, std::fs::Metadata))>> {
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
    let probe = Probe {
        pid,
        entry,
        info: &info,
        md: &md,
    };
    let Some(payload) = Payload::dump(&probe)? else {
        return Ok(None);
    };
    let rec = FdRecord {
        head: Head {
            fd: entry.fd,
            flags: flags & !(libc::O_CLOEXEC as u32),
            cloexec: flags & libc::O_CLOEXEC as u32 != 0,
            pos,
        },
        dup_of: None,
        desc_id: 0,
        locks: Vec::new(),
        owner: None,
        lease: None,
        payload,
    };
    Ok(Some((rec, (info, md))))
}

/// Mark descriptors that share an open file description with a lower one (dup, dup2,
/// F_DUPFD, inherited): `kcmp(KCMP_FILE)` compares the kernel's file objects.
fn find_shared(pid: i32, recs: &mut [FdRecord], entries: &HashMap<i32, &FdEntry>) -> Result<()> {
    let ident = |r: &FdRecord| entries.get(&r.fd()).map(|e| (e.dev, e.ino));
    for i in 0..recs.len() {
        for j in 0..i {
            let (a, b) = (&recs[j], &recs[i]);
            if !a.is_owner() || !a.payload.same_kind(&b.payload) || ident(a) != ident(b) {
                continue;
            }
            let same = spirit_kmod::fd::kcmp_same_file(pid, a.fd(), pid, b.fd()).map_err(|e| {
                Error::Dump {
                    pid,
                    msg: format!(
                        "comparing fds {} and {} with kcmp failed ({e}); spirit needs kcmp (CONFIG_CHECKPOINT_RESTORE) to find shared descriptors",
                        a.fd(),
                        b.fd()
                    ),
                }
            })?;
            if same {
                let owner = a.fd();
                let b = &mut recs[i];
                b.dup_of = Some(owner);
                b.payload = b.payload.without_content();
                break;
            }
        }
    }
    Ok(())
}
