//! Sockets shared across the tree at checkpoint: every socket inode held in the tree
//! with its holders, the kernel's view of every unix socket (sock_diag), and the unix
//! sockets in flight in the tree's queues. A socket held by several processes (a
//! listener inherited by a pre-fork server's workers) is recorded in full once, by the
//! first process dumped; its other holders record a `dup` of its inode. The restore
//! side is `plan.rs`.

use crate::diag::{self, UnixInfo};
use crate::unix::TCP_LISTEN;
use spirit_core::dump::DumpOptions;
use spirit_core::{Error, Result};
use std::collections::{HashMap, HashSet};

pub struct DumpState {
    pub unix: HashMap<u64, UnixInfo>,
    /// Socket inode → every (pid, fd) holding it in the tree.
    pub holders: HashMap<u64, Vec<(i32, i32)>>,
    /// Inodes already recorded in full (by an earlier process).
    pub recorded: HashSet<u64>,
    /// Unix sockets in flight (SCM_RIGHTS) in a queue of a socket of the tree: a peer
    /// there is in the tree too.
    pub in_flight: HashSet<u64>,
    pub opts: DumpOptions,
    pub inet: crate::inet::DumpTree,
}

impl DumpState {
    pub fn new(tree: &spirit_core::plugin::DumpTree) -> Result<DumpState> {
        let mut holders: HashMap<u64, Vec<(i32, i32)>> = HashMap::new();
        for (pid, f) in tree.all_fds() {
            if f.kind == spirit_core::plugin::FdKind::Socket {
                holders.entry(f.ino).or_default().push((pid, f.fd));
            }
        }
        let unix = if holders.is_empty() {
            HashMap::new()
        } else {
            diag::unix_sockets()?
        };
        let in_flight = sockets_in_flight(tree, &unix)?;
        Ok(DumpState {
            in_flight,
            unix,
            holders,
            recorded: HashSet::new(),
            opts: tree.opts.clone(),
            inet: crate::inet::DumpTree::new(tree)?,
        })
    }
}

/// Every unix socket in flight in the tree's queues (and in theirs, in turn), found by
/// peeking at each socket of the tree that has data queued.
fn sockets_in_flight(
    tree: &spirit_core::plugin::DumpTree,
    unix: &HashMap<u64, UnixInfo>,
) -> Result<HashSet<u64>> {
    let mut found = HashSet::new();
    let mut seen = HashSet::new();
    let mut work = Vec::new();
    for p in &tree.procs {
        let socks: Vec<_> = p
            .fds
            .iter()
            .filter(|f| f.kind == spirit_core::plugin::FdKind::Socket)
            .filter(|f| {
                unix.get(&f.ino)
                    .is_some_and(|d| d.state != TCP_LISTEN && d.rqlen.0 > 0)
            })
            .collect();
        if socks.is_empty() {
            continue;
        }
        let pidfd = spirit_kmod::fd::pidfd_open(p.pid).map_err(|e| Error::Dump {
            pid: p.pid,
            msg: format!("pidfd_open to read its sockets: {e}"),
        })?;
        for f in socks {
            if !seen.insert(f.ino) {
                continue;
            }
            let copy = spirit_kmod::fd::pidfd_getfd(&pidfd, f.fd).map_err(|e| Error::Dump {
                pid: p.pid,
                msg: format!(
                    "fd {}: taking a copy of the socket (pidfd_getfd): {e}",
                    f.fd
                ),
            })?;
            work.push((p.pid, f.fd, f.ino, copy));
        }
    }
    while let Some((pid, fd, ino, copy)) = work.pop() {
        let Some(d) = unix.get(&ino) else { continue };
        let what = if fd < 0 {
            format!("unix socket socket:[{ino}] in flight")
        } else {
            format!("fd {fd}: unix socket socket:[{ino}]")
        };
        let (_, socks) = crate::queue::peek_all(&copy, d.ty, pid, &what)?;
        for (i, c) in socks {
            found.insert(i);
            if seen.insert(i) {
                work.push((pid, -1, i, c));
            }
        }
    }
    Ok(found)
}
