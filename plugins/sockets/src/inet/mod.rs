//! Inet sockets (IPv4, IPv6, v4-mapped v6): TCP (established through TCP_REPAIR,
//! listening, bound), UDP, UDPLite and ICMP ping sockets, their IP/IPv6/TCP/UDP-level
//! options, and the network lock that holds a frozen tree's connections.
//!
//! Data flow, dump (the framework calls these; the tree is frozen):
//! 1. [`DumpTree::new`] once, from the plugin's `dump_tree`: takes a copy
//!    (`pidfd_getfd`) of every inet socket of the tree, installs the network lock
//!    (netlock.rs: nft drop rules for every TCP connection and listener) and only then
//!    puts every established connection in repair mode.
//! 2. [`dump`] per socket descriptor, from the plugin's `dump`: an [`InetRecord`] (or a
//!    refusal naming pid, fd and what cannot be restored); [`encode`] writes it into the
//!    `InetSocket` member of the common record.
//! 3. [`DumpTree::end`] once, from `dump_end`: resumed or failed → repair off and the
//!    lock removed; killed → the copies are closed in repair mode (nothing is sent) and
//!    the lock stays for the restore (its table name is in every locked record).
//!
//! Restore:
//! 1. [`decode`] the record; [`restore`] in the restore child, before its memory is
//!    replaced: the new socket, an established one still in repair mode.
//! 2. [`finish`] per socket, on any descriptor of it (a `pidfd_getfd` copy will do), as
//!    soon as the process's memory is in place and at the latest right after the tree
//!    runs: repair off and the unsent data queued (it must precede anything the
//!    program writes next).
//! 3. [`unlock`] once every socket of the tree is finished, and also when the restore
//!    fails: removes the lock tables named by the records (from `restore_end`).
//!
//! Migration: the target host never has the source's lock table ([`unlock`] ignores a
//! missing table); it holds the flows with its own lock ([`lock_records`], before the
//! service address moves there, removed after [`finish`]). The source removes its
//! table with [`netlock::remove_table`] once the target confirms (the original
//! sockets are gone by then; [`DumpTree::lock_table`] names it).
//!
//! Order matters on restore: [`finish`] runs while the lock still holds the flows
//! (the replayed FIN of a closing connection is let through by its mark), and before
//! the program writes to the socket again (the unsent data must go first); only then
//! [`unlock`]. The lock is created in the tree's network namespace at dump (nsenter
//! when it is not the dumper's) but removed in the restorer's: a tree in its own
//! network namespace must be restored from that namespace.
//!
//! SOL_SOCKET options are the common record's; note that repair mode makes
//! SO_REUSEADDR read 2 and repair off clears it, so this module keeps and restores it
//! for TCP sockets ([`InetRecord::reuse_addr`]).

mod fin;
pub mod ipopts;
pub mod mcast;
pub mod netlock;
mod record;
pub mod tcp;
pub mod udp;

pub use record::{decode, encode, from_bytes, show, to_bytes};

use spirit_core::plugin::{DumpOutcome, FdKind};
use spirit_core::{Error, Result};
use spirit_kmod::sockopt;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// One inet socket, as the image keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InetRecord {
    pub family: i32,
    pub sotype: i32,
    pub protocol: i32,
    /// TCP state (tcp.rs constants); 0 for datagram sockets.
    pub state: u8,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub opts: Vec<ipopts::Opt>,
    pub backlog: u32,
    pub tcp: Option<tcp::TcpConn>,
    /// The lock table holding this socket's flows ("" none).
    pub netlock: String,
    /// Datagram sockets: bytes of the first waiting datagram, dropped.
    pub rcv_dropped: u32,
    pub reuse_addr: bool,
    /// Datagram sockets: multicast memberships.
    pub mcast: Vec<mcast::Membership>,
}

/// A socket of the family, type and protocol given (close-on-exec; the framework sets
/// the descriptor's own flags).
pub fn new_socket(family: i32, sotype: i32, protocol: i32) -> Result<OwnedFd> {
    sockopt::socket(family, sotype, protocol).map_err(|e| {
        Error::Restore(format!(
            "socket({}, {}, {protocol}): {e}",
            record::family_name(family),
            record::type_name(sotype)
        ))
    })
}

pub(crate) fn bind_to(fd: BorrowedFd<'_>, a: SocketAddr) -> Result<()> {
    let ss = nix::sys::socket::SockaddrStorage::from(a);
    nix::sys::socket::bind(fd.as_raw_fd(), &ss).map_err(|e| match e {
        nix::errno::Errno::EADDRNOTAVAIL => Error::Restore(format!(
            "bind to {a}: the address is not on this host (a migrated socket needs its address moved with the process)"
        )),
        e => Error::Restore(format!("bind to {a}: {e}")),
    })
}

fn sock_addr(ss: Option<nix::sys::socket::SockaddrStorage>) -> Option<SocketAddr> {
    let ss = ss?;
    if let Some(a) = ss.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    ss.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
}

/// Family, type and protocol of a socket (SO_DOMAIN, SO_TYPE, SO_PROTOCOL).
pub fn kind(sock: BorrowedFd<'_>) -> Result<(i32, i32, i32)> {
    let g = |n| {
        sockopt::getsockopt_int(sock, libc::SOL_SOCKET, n)
            .map_err(|e| Error::Restore(format!("reading a socket's kind: {e}")))
    };
    Ok((
        g(libc::SO_DOMAIN)?,
        g(libc::SO_TYPE)?,
        g(libc::SO_PROTOCOL)?,
    ))
}

/// Whether a socket is this module's (AF_INET or AF_INET6).
pub fn is_inet(sock: BorrowedFd<'_>) -> bool {
    matches!(kind(sock), Ok((libc::AF_INET | libc::AF_INET6, _, _)))
}

fn addrs(sock: BorrowedFd<'_>) -> (Option<SocketAddr>, Option<SocketAddr>) {
    use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};
    let local = sock_addr(getsockname::<SockaddrStorage>(sock.as_raw_fd()).ok())
        .filter(|a| a.port() != 0 || !a.ip().is_unspecified());
    let peer = sock_addr(getpeername::<SockaddrStorage>(sock.as_raw_fd()).ok());
    (local, peer)
}

/// One socket of the frozen tree, through this process's copy of it.
struct Held {
    sock: OwnedFd,
    family: i32,
    sotype: i32,
    protocol: i32,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    reuse_addr: bool,
    /// Put in repair mode by us.
    repair: bool,
    locked: bool,
}

fn is_tcp(h: &Held) -> bool {
    h.sotype == libc::SOCK_STREAM && h.protocol == libc::IPPROTO_TCP
}

/// The inet sockets of one frozen tree and the lock holding their connections.
pub struct DumpTree {
    socks: HashMap<u64, Held>,
    lock: Option<netlock::NetLock>,
    ended: bool,
}

impl DumpTree {
    /// Find the tree's inet sockets, lock their TCP flows, put established connections
    /// in repair mode. On failure nothing is left locked or in repair.
    pub fn new(tree: &spirit_core::plugin::DumpTree) -> Result<Self> {
        let mut me = DumpTree {
            socks: HashMap::new(),
            lock: None,
            ended: false,
        };
        let mut pidfds = HashMap::new();
        for (pid, e) in tree.all_fds() {
            if e.kind != FdKind::Socket || me.socks.contains_key(&e.ino) {
                continue;
            }
            let dump_err = |msg: String| Error::Dump { pid, msg };
            if let std::collections::hash_map::Entry::Vacant(v) = pidfds.entry(pid) {
                v.insert(
                    spirit_kmod::fd::pidfd_open(pid)
                        .map_err(|err| dump_err(format!("pidfd_open: {err}")))?,
                );
            }
            let sock = spirit_kmod::fd::pidfd_getfd(&pidfds[&pid], e.fd)
                .map_err(|err| dump_err(format!("taking a copy of fd {}: {err}", e.fd)))?;
            let (family, sotype, protocol) = kind(sock.as_fd())?;
            if family != libc::AF_INET && family != libc::AF_INET6 {
                continue;
            }
            let (local, mut peer) = addrs(sock.as_fd());
            if peer.is_none() && matches!(protocol, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) {
                peer = udp::ping_peer(&format!("/proc/{pid}/net"), family, e.ino);
            }
            let reuse_addr =
                sockopt::getsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR)
                    .unwrap_or(0)
                    != 0;
            me.socks.insert(
                e.ino,
                Held {
                    sock,
                    family,
                    sotype,
                    protocol,
                    local,
                    peer,
                    reuse_addr,
                    repair: false,
                    locked: false,
                },
            );
        }
        let mut flows = Vec::new();
        for h in me.socks.values_mut().filter(|h| is_tcp(h)) {
            let st = tcp::info(h.sock.as_fd())?.state;
            match (h.local, h.peer) {
                (Some(local), Some(peer)) => flows.push(netlock::Flow::Conn { local, peer }),
                (Some(local), None) if st == tcp::LISTEN => {
                    flows.push(netlock::Flow::Listen { local })
                }
                _ => continue,
            }
            h.locked = true;
        }
        if !flows.is_empty() {
            let root = tree.procs.first().map(|p| p.pid).unwrap_or(0);
            let lock =
                netlock::NetLock::install(&netlock::unique_name(), &flows, root).map_err(|e| {
                    Error::Dump {
                        pid: root,
                        msg: format!("{e}"),
                    }
                })?;
            me.lock = Some(lock);
        }
        // The flows are held: only now is any connection's state read.
        let ids: Vec<u64> = me.socks.keys().copied().collect();
        for id in ids {
            let h = &me.socks[&id];
            if !is_tcp(h) || !tcp::repairable(tcp::info(h.sock.as_fd())?.state) {
                continue;
            }
            if let Err(e) = tcp::set_repair(h.sock.as_fd(), true) {
                me.end(DumpOutcome::Failed);
                return Err(e);
            }
            if let Some(h) = me.socks.get_mut(&id) {
                h.repair = true;
            }
        }
        Ok(me)
    }

    /// The lock table's name, if any connection needed one.
    pub fn lock_table(&self) -> Option<&str> {
        self.lock.as_ref().map(|l| l.table())
    }

    /// End the dump: `Resumed`/`Failed` → repair off on every socket and the lock
    /// removed; `Killed` → every copy closed in repair mode (nothing sent) and the lock
    /// kept for the restore. Idempotent; dropping an unended tree ends it as `Failed`.
    pub fn end(&mut self, outcome: DumpOutcome) {
        if self.ended {
            return;
        }
        self.ended = true;
        match outcome {
            DumpOutcome::Killed => self.socks.clear(),
            DumpOutcome::Resumed | DumpOutcome::Failed => {
                for h in self.socks.values().filter(|h| h.repair) {
                    let _ = tcp::set_repair(h.sock.as_fd(), false);
                    if h.reuse_addr {
                        let _ = sockopt::setsockopt_int(
                            h.sock.as_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_REUSEADDR,
                            1,
                        );
                    }
                }
                if let Some(l) = self.lock.take() {
                    let _ = l.remove();
                }
            }
        }
    }
}

impl Drop for DumpTree {
    fn drop(&mut self) {
        self.end(DumpOutcome::Failed);
    }
}

fn inode(sock: BorrowedFd<'_>) -> Result<u64> {
    nix::sys::stat::fstat(sock.as_raw_fd())
        .map(|st| st.st_ino)
        .map_err(|e| Error::Restore(format!("fstat of a socket: {e}")))
}

/// Dump descriptor `fd` of `pid`, an inet socket (`sock`: any descriptor of it).
pub fn dump(state: &mut DumpTree, pid: i32, fd: i32, sock: BorrowedFd<'_>) -> Result<InetRecord> {
    let refuse = |msg: String| Error::Dump {
        pid,
        msg: format!("fd {fd}: {msg}"),
    };
    let ino = inode(sock)?;
    let lock = state.lock_table().unwrap_or("").to_string();
    let h = state
        .socks
        .get(&ino)
        .ok_or_else(|| refuse("inet socket not seen when the tree was frozen".into()))?;
    let s = h.sock.as_fd();
    let mut rec = InetRecord {
        family: h.family,
        sotype: h.sotype,
        protocol: h.protocol,
        local: h.local,
        peer: h.peer,
        reuse_addr: h.reuse_addr,
        netlock: if h.locked { lock } else { String::new() },
        ..Default::default()
    };
    let dgram_protos = [
        libc::IPPROTO_UDP,
        libc::IPPROTO_UDPLITE,
        libc::IPPROTO_ICMP,
        libc::IPPROTO_ICMPV6,
    ];
    if is_tcp(h) {
        let i = tcp::info(s)?;
        rec.state = i.state;
        match i.state {
            st if tcp::repairable(st) && h.repair => {
                rec.tcp = Some(tcp::dump_conn(s, st).map_err(|e| refuse(e.to_string()))?)
            }
            tcp::LISTEN if i.unacked > 0 => {
                return Err(refuse(format!(
                    "TCP listener on {} has {} connection(s) the kernel completed but the program has not accepted yet; spirit cannot restore a listener's accept queue: let the program accept them and checkpoint again",
                    fmt_addr(h.local),
                    i.unacked
                )))
            }
            tcp::LISTEN => rec.backlog = i.sacked,
            tcp::CLOSE => {}
            st => {
                return Err(refuse(format!(
                    "TCP socket {} → {} is in state {}, which spirit cannot restore (only ESTABLISHED, the half-closed and closing states, LISTEN and unconnected sockets are); checkpoint again once the connection is established or closed",
                    fmt_addr(h.local),
                    fmt_addr(h.peer),
                    tcp::state_name(st)
                )))
            }
        }
    } else if h.sotype == libc::SOCK_DGRAM && dgram_protos.contains(&h.protocol) {
        rec.rcv_dropped = udp::dump(s, pid, fd)?;
        rec.mcast = mcast::dump(s, h.family, &format!("/proc/{pid}/net"));
    } else {
        return Err(refuse(format!(
            "{} socket of type {} and protocol {}, which spirit cannot checkpoint (TCP, UDP, UDPLite and ICMP ping sockets are supported)",
            record::family_name(h.family),
            record::type_name(h.sotype),
            h.protocol
        )));
    }
    rec.opts = ipopts::dump(s, h.family, h.sotype, h.protocol);
    Ok(rec)
}

fn fmt_addr(a: Option<SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "(none)".into())
}

/// Rebuild the socket (in the restore child, before its memory is replaced). An
/// established connection comes back in repair mode: see [`finish`].
pub fn restore(rec: &InetRecord) -> Result<OwnedFd> {
    match (rec.sotype, rec.protocol, rec.state) {
        (libc::SOCK_STREAM, libc::IPPROTO_TCP, st) if tcp::repairable(st) => {
            let c = rec.tcp.as_ref().ok_or_else(|| {
                Error::Restore("established TCP socket without its repair state".into())
            })?;
            tcp::restore_conn(rec, c)
        }
        (libc::SOCK_STREAM, libc::IPPROTO_TCP, tcp::LISTEN) => tcp::restore_listen(rec),
        (libc::SOCK_STREAM, libc::IPPROTO_TCP, tcp::CLOSE) => tcp::restore_closed(rec),
        (libc::SOCK_DGRAM, _, _) => udp::restore(rec),
        (t, p, s) => Err(Error::Restore(format!(
            "inet socket of type {t}, protocol {p}, state {s} cannot be restored"
        ))),
    }
}

/// Let a restored socket run (on any descriptor of it): an established connection
/// leaves repair mode and gets its unsent data queued. Nothing for other sockets.
pub fn finish(sock: BorrowedFd<'_>, rec: &InetRecord) -> Result<()> {
    match &rec.tcp {
        Some(c) if tcp::repairable(rec.state) => tcp::release(sock, rec, c),
        _ => Ok(()),
    }
}

/// Hold the flows of `recs` on this host while they are rebuilt, when no dump's lock
/// does (a migration target: the peers' segments reach this host as soon as the
/// service address moves, and must meet neither a reset nor an acknowledgement until
/// the sockets run). In this network namespace; remove it after [`finish`].
pub fn lock_records<'a>(
    recs: impl IntoIterator<Item = &'a InetRecord>,
) -> Result<Option<netlock::NetLock>> {
    let mut flows = Vec::new();
    for r in recs {
        if r.protocol != libc::IPPROTO_TCP {
            continue;
        }
        match (r.local, r.peer) {
            (Some(local), Some(peer)) => flows.push(netlock::Flow::Conn { local, peer }),
            (Some(local), None) if r.state == tcp::LISTEN => {
                flows.push(netlock::Flow::Listen { local })
            }
            _ => {}
        }
    }
    if flows.is_empty() {
        return Ok(None);
    }
    let me = std::process::id() as i32;
    netlock::NetLock::install(&netlock::unique_name(), &flows, me).map(Some)
}

/// Remove the lock tables the records name (once every socket is finished, or when
/// the restore failed). Tables not on this host are ignored.
pub fn unlock<'a>(recs: impl IntoIterator<Item = &'a InetRecord>) -> Result<()> {
    let tables: BTreeSet<&str> = recs
        .into_iter()
        .map(|r| r.netlock.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    let mut first = Ok(());
    for t in tables {
        if let Err(e) = netlock::remove_table(t) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}
