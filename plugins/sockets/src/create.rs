//! Building the sockets of one group in the process that creates it (before it forks
//! its children), then putting each at its numbers in each holder. See `tree.rs` for
//! who creates what, `unix.rs` for the unix steps.

use crate::model::{Payload, PeerKind, Unix};
use crate::plan::{Group, Plan};
use crate::unix::{self, TCP_ESTABLISHED, TCP_LISTEN};
use crate::{opts, queue};
use spirit_core::{Error, Result};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

fn what(plan: &Plan, ino: u64) -> String {
    let o = &plan.objs[&ino];
    let kind = match &o.rec.payload {
        Payload::Unix(u) => format!("unix {} socket", unix::type_name(u.ty)),
        Payload::Inet(_) => "inet socket".into(),
        Payload::Netlink(_) => "netlink socket".into(),
        Payload::Dup => "socket".into(),
    };
    match o.holders.first() {
        Some((pid, fd)) => format!("process {pid} fd {fd}: {kind} socket:[{ino}]"),
        None => format!("{kind} socket:[{ino}] in flight"),
    }
}

fn unix_of(plan: &Plan, ino: u64) -> Option<&Unix> {
    match &plan.objs.get(&ino)?.rec.payload {
        Payload::Unix(u) => Some(u),
        _ => None,
    }
}

/// The name a client connects to for listener `l` (its absolute path for a path name).
fn listen_name(u: &Unix) -> Vec<u8> {
    match &u.file {
        Some(f) => f.path.as_bytes().to_vec(),
        None => u.name.clone(),
    }
}

/// A socket bound to its own name, if it has one it bound itself.
fn own_name(u: &Unix) -> bool {
    !u.name.is_empty() && !u.name_inherited
}

/// Create every socket of `g`, fully set up; returns them by inode.
fn build(plan: &Plan, g: &Group) -> Result<HashMap<u64, OwnedFd>> {
    let mut made: HashMap<u64, OwnedFd> = HashMap::new();
    // Stream ends whose peer is gone: the other end of a pair, closed after the refill.
    let mut orphan_ends: HashMap<u64, OwnedFd> = HashMap::new();
    let unixes: Vec<(u64, &Unix)> = g
        .members
        .iter()
        .filter_map(|m| unix_of(plan, *m).map(|u| (*m, u)))
        .collect();
    // 1. Listeners.
    for (ino, u) in unixes.iter().filter(|(_, u)| u.state == TCP_LISTEN) {
        let w = what(plan, *ino);
        let s = unix::new_socket(u, &w)?;
        if !u.name.is_empty() {
            unix::bind(&s, u, &w)?;
        }
        unix::listen(&s, u.backlog.max(u.pending.len() as u32), &w)?;
        made.insert(*ino, s);
    }
    // 2. Accepted connections of a listener of the group: connect to it and accept.
    for (ino, u) in unixes
        .iter()
        .filter(|(_, u)| u.name_inherited && u.peer_kind == PeerKind::InTree)
    {
        let Some((l, lu)) = unixes
            .iter()
            .find(|(_, l)| l.state == TCP_LISTEN && l.name == u.name)
        else {
            continue;
        };
        let Some(cu) = unix_of(plan, u.peer) else {
            continue;
        };
        if made.contains_key(&u.peer) {
            continue;
        }
        let w = what(plan, u.peer);
        let c = unix::new_socket(cu, &w)?;
        if own_name(cu) {
            unix::bind(&c, cu, &w)?;
        }
        unix::connect(&c, &listen_name(lu), &w)?;
        let s = unix::accept(&made[l], &what(plan, *ino))?;
        made.insert(u.peer, c);
        made.insert(*ino, s);
    }
    // 3. Clients waiting on a listener, in the listener's queue order.
    for (l, lu) in unixes.iter().filter(|(_, u)| u.state == TCP_LISTEN) {
        for c in &lu.pending {
            let Some(cu) = unix_of(plan, *c) else {
                continue;
            };
            let w = what(plan, *c);
            let s = unix::new_socket(cu, &w)?;
            if own_name(cu) {
                unix::bind(&s, cu, &w)?;
            }
            unix::connect(&s, &listen_name(lu), &w)?;
            let _ = l;
            made.insert(*c, s);
        }
    }
    // 4. Pairs and datagram sockets connected to a peer of the group.
    for (ino, u) in &unixes {
        if made.contains_key(ino) {
            continue;
        }
        let w = what(plan, *ino);
        if u.peer_kind == PeerKind::InTree && !u.embryo {
            let pu = unix_of(plan, u.peer)
                .ok_or_else(|| Error::Restore(format!("{w}: its peer is not a unix socket")))?;
            if pu.peer == *ino && !made.contains_key(&u.peer) {
                let (a, b) = unix::new_pair(u, &w)?;
                if own_name(u) {
                    unix::bind(&a, u, &w)?;
                }
                if own_name(pu) {
                    unix::bind(&b, pu, &what(plan, u.peer))?;
                }
                made.insert(*ino, a);
                made.insert(u.peer, b);
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = made.entry(u.peer) {
                // A datagram socket connected to a named one that is not connected back.
                let pw = what(plan, u.peer);
                let p = unix::new_socket(pu, &pw)?;
                if own_name(pu) {
                    unix::bind(&p, pu, &pw)?;
                }
                e.insert(p);
            }
            let s = unix::new_socket(u, &w)?;
            if own_name(u) {
                unix::bind(&s, u, &w)?;
            }
            unix::connect(&s, &listen_name(pu), &w)?;
            made.insert(*ino, s);
            continue;
        }
        let s = match u.peer_kind {
            PeerKind::Inherit => {
                let given = plan.inherit[ino];
                spirit_kmod::sockopt::dup_number(given, 3).map_err(|e| {
                    Error::Restore(format!(
                        "{w}: taking the descriptor {given} given with --inherit-fd: {e}"
                    ))
                })?
            }
            PeerKind::Reconnect => {
                let s = unix::new_socket(u, &w)?;
                if own_name(u) {
                    unix::bind(&s, u, &w)?;
                }
                unix::connect(&s, &u.peer_name, &w)?;
                s
            }
            _ if u.state == TCP_ESTABLISHED && u.ty as i32 != libc::SOCK_DGRAM => {
                // Its peer is gone (closed): what it sent is still to be read, then EOF.
                let (a, b) = unix::new_pair(u, &w)?;
                orphan_ends.insert(*ino, b);
                a
            }
            _ => {
                let s = unix::new_socket(u, &w)?;
                if own_name(u) {
                    unix::bind(&s, u, &w)?;
                }
                s
            }
        };
        made.insert(*ino, s);
    }
    // 5. Queued data, sent again from the peer end.
    for (ino, u) in &unixes {
        if u.queue.is_empty() {
            continue;
        }
        let w = what(plan, *ino);
        if let Some(end) = orphan_ends.get(ino) {
            queue::refill(end, None, &u.queue, &w, &made)?;
        } else if u.peer_kind == PeerKind::InTree && made.contains_key(&u.peer) {
            let back = unix_of(plan, u.peer).is_some_and(|p| p.peer == *ino);
            let to = if back {
                None
            } else {
                Some(unix::addr_of(&listen_name(u), &w)?)
            };
            queue::refill(&made[&u.peer], to.as_ref(), &u.queue, &w, &made)?;
        } else if !u.name.is_empty() {
            // Each datagram from the socket of the group that sent it, else from an
            // unnamed one.
            let tmp = unix::new_socket(u, &w)?;
            let to = unix::addr_of(&listen_name(u), &w)?;
            for m in &u.queue {
                let sender = unixes
                    .iter()
                    .find(|(s, su)| {
                        *s != *ino && !m.from.is_empty() && own_name(su) && su.name == m.from
                    })
                    .and_then(|(s, _)| made.get(s))
                    .unwrap_or(&tmp);
                queue::refill(sender, Some(&to), std::slice::from_ref(m), &w, &made)?;
            }
        } else {
            return Err(Error::Restore(format!(
                "{w}: it has data to read but no peer and no name to send it to"
            )));
        }
    }
    drop(orphan_ends);
    // 6. Shutdown state, options, status flags.
    for (ino, u) in &unixes {
        if u.peer_kind == PeerKind::Inherit {
            continue;
        }
        unix::shutdown(&made[ino], u.shutdown, &what(plan, *ino))?;
    }
    for m in &g.members {
        let o = &plan.objs[m];
        let w = what(plan, *m);
        let s = match &o.rec.payload {
            Payload::Unix(_) => made
                .remove(m)
                .ok_or_else(|| Error::Restore(format!("{w}: not created")))?,
            Payload::Inet(rec) => crate::inet::restore(rec).map_err(|e| annotate(e, &w))?,
            Payload::Netlink(n) => crate::netlink::restore(n, &w)?,
            Payload::Dup => return Err(crate::model::bad(format!("{w}: only a duplicate"))),
        };
        if !matches!(&o.rec.payload, Payload::Unix(u) if u.peer_kind == PeerKind::Inherit) {
            match &o.rec.payload {
                Payload::Inet(r) if r.tcp.is_some() => {
                    opts::restore(&s, &opts::not_shrinking(&s, &o.rec.opts), &w)?
                }
                _ => opts::restore(&s, &o.rec.opts, &w)?,
            }
            spirit_kmod::fd::set_status_flags(
                &s,
                o.rec.flags as i32 & !libc::O_ACCMODE & !libc::O_CLOEXEC,
            )
            .map_err(|e| Error::Restore(format!("{w}: status flags: {e}")))?;
        }
        made.insert(*m, s);
    }
    Ok(made)
}

fn annotate(e: Error, w: &str) -> Error {
    match e {
        Error::Restore(m) => Error::Restore(format!("{w}: {m}")),
        other => other,
    }
}

/// In process `pid`, before it forks: create the groups it is the creator of, each
/// socket parked at its number.
pub fn before_fork(plan: &Plan, pid: i32) -> Result<()> {
    for g in plan.groups.iter().filter(|g| g.creator == pid) {
        let made = build(plan, g)?;
        // Above every parked number first, so parking one never lands on another.
        let mut high = Vec::new();
        for (ino, s) in made {
            let h = spirit_kmod::fd::dup_above(&s, plan.end)
                .map_err(|e| Error::Restore(format!("{}: {e}", what(plan, ino))))?;
            high.push((ino, h));
        }
        for (ino, h) in high {
            let slot = plan.objs[&ino].slot;
            nix::unistd::dup3(h.as_raw_fd(), slot, nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
                Error::Restore(format!("{}: parking it at {slot}: {e}", what(plan, ino)))
            })?;
        }
    }
    Ok(())
}

/// In each holder: every socket at its numbers. Returns the numbers to keep.
pub fn in_child(plan: &Plan, sec: &crate::model::Section) -> Result<Vec<i32>> {
    let mut keep = Vec::new();
    for s in &sec.sockets {
        let o = plan.objs.get(&s.inode).ok_or_else(|| {
            crate::model::bad(format!("fd {}: socket:[{}] not planned", s.fd, s.inode))
        })?;
        let flags = if s.cloexec {
            nix::fcntl::OFlag::O_CLOEXEC
        } else {
            nix::fcntl::OFlag::empty()
        };
        nix::unistd::dup3(o.slot, s.fd, flags).map_err(|e| {
            Error::Restore(format!(
                "fd {}: socket:[{}] from parked {}: {e}",
                s.fd, s.inode, o.slot
            ))
        })?;
        keep.push(s.fd);
    }
    Ok(keep)
}
