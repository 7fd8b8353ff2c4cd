//! Unix sockets: stream, datagram and seqpacket.
//!
//! Dump (the tree frozen; `sock` is a `pidfd_getfd` copy): type, state, name and the
//! socket file (path, mode, owner), peer and shutdown state come from sock_diag
//! (`diag.rs`); the data this socket has to read is peeked, not consumed
//! (`queue.rs`). A peer is in the tree (held by a process of it, or an embryo waiting
//! on a listener of the tree, whose client is then ours), or outside it: refused
//! unless the user said to connect again or to hand one over at restore.
//!
//! Restore (`create` and `connect_*`, run in the process that creates the socket, see
//! `tree.rs`): listeners bind their name again (a stale socket file at the path is
//! replaced, mode and owner set back) and listen; accepted connections are rebuilt by
//! connecting to the restored listener and accepting; queued clients connect to it;
//! other pairs are made with `socketpair` (or a datagram socket connects to its peer's
//! name); queues are refilled by sending from the peer end.

use crate::diag::UnixInfo;
use crate::model::{PeerKind, SockFile, Unix};
use crate::queue;
use crate::tree::DumpState;
use nix::sys::socket::{self as ns, AddressFamily, SockFlag, SockType, UnixAddr};
use serde_json::{json, Value};
use spirit_core::{Error, Result};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_LISTEN: u8 = 10;

pub fn type_name(ty: u8) -> &'static str {
    match ty as i32 {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "unknown-type",
    }
}

pub fn state_name(st: u8) -> &'static str {
    match st {
        TCP_ESTABLISHED => "connected",
        TCP_LISTEN => "listening",
        TCP_CLOSE => "unconnected",
        2 => "connecting",
        _ => "unknown-state",
    }
}

/// A name for messages: the path, `@name` for an abstract one, `unnamed`.
pub fn show_name(name: &[u8]) -> String {
    match name.first() {
        None => "unnamed".into(),
        Some(0) => format!("@{}", String::from_utf8_lossy(&name[1..])),
        Some(_) => String::from_utf8_lossy(name).into_owned(),
    }
}

fn dump_err(pid: i32, msg: String) -> Error {
    Error::Dump { pid, msg }
}

/// Whether a selector of `--ext-unix-reconnect`/`--ext-unix-inherit` picks this socket.
fn selected(sels: &[String], ino: u64, peer_name: &[u8]) -> bool {
    let ours = format!("socket:[{ino}]");
    let theirs = show_name(peer_name);
    sels.iter()
        .any(|s| s == "all" || *s == ours || (!peer_name.is_empty() && *s == theirs))
}

/// Who holds socket `ino` outside the tree, for messages (a scan of /proc, made only
/// when a checkpoint is refused).
fn holder_outside(ino: u64) -> Option<(i32, i32)> {
    let want = format!("socket:[{ino}]");
    let me = std::process::id() as i32;
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue; // our own copies, taken to read queues
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for f in fds.flatten() {
            if std::fs::read_link(f.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                let fd = f.file_name().to_str().and_then(|s| s.parse().ok())?;
                return Some((pid, fd));
            }
        }
    }
    None
}

/// Describe the peer outside the tree: its inode, name and, if found, its holder.
fn describe_outside(st: &DumpState, peer: u64) -> String {
    let info = st.unix.get(&peer);
    let name = info
        .map(|i| show_name(&i.name))
        .unwrap_or_else(|| "unnamed".into());
    let mut s = format!("socket:[{peer}] ({name})");
    match holder_outside(peer) {
        Some((pid, fd)) => s.push_str(&format!(" held by process {pid} (fd {fd})")),
        None => {
            if let Some(l) = st
                .unix
                .values()
                .find(|l| l.state == TCP_LISTEN && l.icons.contains(&peer))
            {
                s.push_str(&format!(
                    " waiting to be accepted on {}",
                    show_name(&l.name)
                ));
            } else if info.is_some_and(|i| i.state == TCP_ESTABLISHED) {
                s.push_str(" not yet accepted by its listener");
            }
        }
    }
    s
}

/// The socket file of a path name, as it is now (`cwd`: the process's, for a
/// relative name).
fn sock_file(pid: i32, d: &UnixInfo) -> Option<SockFile> {
    if d.name.is_empty() || d.name[0] == 0 {
        return None;
    }
    let name = String::from_utf8_lossy(&d.name).into_owned();
    let (path, base) = if name.starts_with('/') {
        (name.clone(), String::new())
    } else {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        let cwd = cwd.to_string_lossy().into_owned();
        (format!("{}/{name}", cwd.trim_end_matches('/')), cwd)
    };
    let mut f = SockFile {
        path,
        base,
        ..Default::default()
    };
    if let Ok(md) = std::fs::symlink_metadata(&f.path) {
        let ours = d.vfs.is_none_or(|(ino, _)| ino == md.ino());
        if md.file_type().is_socket_like() && ours {
            f.present = true;
            f.mode = md.mode();
            f.uid = md.uid();
            f.gid = md.gid();
        }
    }
    Some(f)
}

trait IsSocket {
    fn is_socket_like(&self) -> bool;
}

impl IsSocket for std::fs::FileType {
    fn is_socket_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_socket()
    }
}

/// Dump unix socket `ino`, fd `fd` of `pid` (`sock`: a copy of it; fd -1: a socket
/// only in flight). Also returns the unix sockets in flight in its queue.
pub fn dump(
    st: &DumpState,
    pid: i32,
    fd: i32,
    ino: u64,
    sock: &OwnedFd,
) -> Result<(Unix, queue::SocketsInFlight)> {
    let d = st.unix.get(&ino).ok_or_else(|| {
        dump_err(
            pid,
            format!("fd {fd}: unix socket socket:[{ino}] is not listed by sock_diag (is it in another network namespace?)"),
        )
    })?;
    let what = if fd < 0 {
        format!("unix {} socket socket:[{ino}] in flight", type_name(d.ty))
    } else {
        format!("fd {fd}: unix {} socket socket:[{ino}]", type_name(d.ty))
    };
    let mut u = Unix {
        ty: d.ty,
        state: d.state,
        name: d.name.clone(),
        peer: d.peer,
        shutdown: d.shutdown,
        ..Default::default()
    };
    if !d.name.is_empty() && d.state == TCP_ESTABLISHED {
        // An accepted socket shows its listener's name (and socket file).
        u.name_inherited = st
            .unix
            .values()
            .any(|l| l.ino != ino && l.state == TCP_LISTEN && l.name == d.name && l.vfs == d.vfs);
    }
    if !u.name_inherited {
        u.file = sock_file(pid, d);
    }
    if d.state == TCP_LISTEN {
        u.backlog = d.rqlen.1;
        u.pending = d.icons.clone();
        for c in &d.icons {
            if !st.holders.contains_key(c) {
                return Err(dump_err(pid, format!(
                    "{what}, listening on {}, has a connection not yet accepted from {}: a client outside the checkpointed tree cannot be connected again",
                    show_name(&d.name),
                    describe_outside(st, *c)
                )));
            }
        }
    }
    // A client whose connection waits to be accepted is connected to an embryo, which
    // has no inode yet: find the listener holding it.
    let waiting_on = (d.peer == 0 && d.state == TCP_ESTABLISHED)
        .then(|| {
            st.unix
                .values()
                .find(|l| l.state == TCP_LISTEN && l.icons.contains(&ino))
        })
        .flatten();
    if let Some(l) = waiting_on.filter(|l| st.holders.contains_key(&l.ino)) {
        // Data we sent sits in the embryo, where nothing can read it back.
        u.peer_kind = PeerKind::InTree;
        u.embryo = true;
        u.listener = l.ino;
        u.peer_name = l.name.clone();
        let outq = spirit_kmod::sockopt::ioctl_int(std::os::fd::AsFd::as_fd(sock), libc::TIOCOUTQ)
            .unwrap_or(0);
        if outq > 0 || d.rqlen.1 > 0 {
            return Err(dump_err(pid, format!(
                "{what} sent data to a connection its listener ({}) has not accepted yet: spirit cannot read it back without accepting it",
                show_name(&l.name)
            )));
        }
    } else if d.peer != 0 || waiting_on.is_some() {
        let peer_info = st.unix.get(&d.peer);
        u.peer_name = match waiting_on {
            Some(l) => l.name.clone(),
            None => peer_info.map(|p| p.name.clone()).unwrap_or_default(),
        };
        let outside = || match waiting_on {
            Some(l) => format!(
                "a connection not yet accepted by {} (socket:[{}]{})",
                show_name(&l.name),
                l.ino,
                holder_outside(l.ino)
                    .map(|(p, f)| format!(", held by process {p} fd {f}"))
                    .unwrap_or_default()
            ),
            None => describe_outside(st, d.peer),
        };
        if waiting_on.is_none()
            && (st.holders.contains_key(&d.peer) || st.in_flight.contains(&d.peer))
        {
            u.peer_kind = PeerKind::InTree;
        } else if selected(&st.opts.ext_unix_inherit, ino, &u.peer_name) {
            u.peer_kind = PeerKind::Inherit;
        } else if selected(&st.opts.ext_unix_reconnect, ino, &u.peer_name) {
            if u.peer_name.is_empty() {
                return Err(dump_err(pid, format!(
                    "{what} is connected to {} outside the checkpointed tree, which has no name to connect to again; dump with --ext-unix-inherit and give one at restore (--inherit-fd fd[N]:socket:[{ino}])",
                    outside()
                )));
            }
            u.peer_kind = PeerKind::Reconnect;
        } else {
            return Err(dump_err(pid, format!(
                "{what} is connected to {} outside the checkpointed tree; dump with --ext-unix-reconnect to connect to its name again at restore (safe for datagram logging sockets), or --ext-unix-inherit to give one at restore (--inherit-fd fd[N]:socket:[{ino}])",
                outside()
            )));
        }
    }
    let mut socks = Vec::new();
    if d.state != TCP_LISTEN && u.peer_kind != PeerKind::Inherit {
        (u.queue, socks) = queue::peek_all(sock, d.ty, pid, &what)?;
        if u.peer_kind == PeerKind::Reconnect && !u.queue.is_empty() {
            return Err(dump_err(pid, format!(
                "{what} has {} unread message(s) from {} outside the tree; they would be lost when it connects again: let the program read them first",
                u.queue.len(),
                show_name(&u.peer_name)
            )));
        }
    }
    Ok((u, socks))
}

// ---------------------------------------------------------------------------------
// Restore

pub fn restore_err(what: &str, step: &str, e: impl std::fmt::Display) -> Error {
    Error::Restore(format!("{what}: {step}: {e}"))
}

fn sock_type(ty: u8) -> Result<SockType> {
    match ty as i32 {
        libc::SOCK_STREAM => Ok(SockType::Stream),
        libc::SOCK_DGRAM => Ok(SockType::Datagram),
        libc::SOCK_SEQPACKET => Ok(SockType::SeqPacket),
        t => Err(crate::model::bad(format!("unix socket of type {t}"))),
    }
}

/// A new unix socket of `u`'s type.
pub fn new_socket(u: &Unix, what: &str) -> Result<OwnedFd> {
    ns::socket(
        AddressFamily::Unix,
        sock_type(u.ty)?,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| restore_err(what, "socket", e))
}

/// Both ends of a new socketpair of `u`'s type.
pub fn new_pair(u: &Unix, what: &str) -> Result<(OwnedFd, OwnedFd)> {
    ns::socketpair(
        AddressFamily::Unix,
        sock_type(u.ty)?,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| restore_err(what, "socketpair", e))
}

/// The address of a name as recorded (a path, or a leading NUL: abstract).
pub fn addr_of(name: &[u8], what: &str) -> Result<UnixAddr> {
    match name.first() {
        Some(0) => UnixAddr::new_abstract(&name[1..]),
        _ => UnixAddr::new(name),
    }
    .map_err(|e| restore_err(what, "socket name", e))
}

/// Bind `sock` to its recorded name: a path's stale socket file (left by the original)
/// is replaced, then the file gets its mode and owner back (or is removed again if it
/// was gone at checkpoint). Returns the path of a socket file it created.
pub fn bind(sock: &OwnedFd, u: &Unix, what: &str) -> Result<Option<String>> {
    let Some(f) = &u.file else {
        let addr = addr_of(&u.name, what)?;
        ns::bind(sock.as_raw_fd(), &addr).map_err(|e| restore_err(what, "bind", e))?;
        return Ok(None);
    };
    if let Ok(md) = std::fs::symlink_metadata(&f.path) {
        if !f.present {
            // Its file was unlinked or replaced after it bound: whatever is at the path
            // now is someone else's; the socket comes back without its name.
            return Ok(None);
        }
        if md.file_type().is_socket_like() {
            // The file the original left behind (it does not remove it on exit).
            std::fs::remove_file(&f.path).map_err(|e| {
                restore_err(
                    what,
                    &format!("removing the stale socket file {}", f.path),
                    e,
                )
            })?;
        } else {
            return Err(Error::Restore(format!(
                "{what}: {} exists and is not a socket; spirit does not replace it",
                f.path
            )));
        }
    }
    // A relative name is bound relative to the directory it was relative to.
    let bound = if f.base.is_empty() {
        ns::bind(sock.as_raw_fd(), &addr_of(f.path.as_bytes(), what)?)
    } else {
        let back = std::env::current_dir().ok();
        nix::unistd::chdir(f.base.as_str())
            .map_err(|e| restore_err(what, &format!("chdir {}", f.base), e))?;
        let r = ns::bind(sock.as_raw_fd(), &addr_of(&u.name, what)?);
        if let Some(b) = back {
            let _ = nix::unistd::chdir(&b);
        }
        r
    };
    bound.map_err(|e| restore_err(what, &format!("bind {}", f.path), e))?;
    if !f.present {
        let _ = std::fs::remove_file(&f.path);
        return Ok(None);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(f.mode & 0o7777))
        .map_err(|e| restore_err(what, &format!("chmod {}", f.path), e))?;
    std::os::unix::fs::lchown(&f.path, Some(f.uid), Some(f.gid))
        .map_err(|e| restore_err(what, &format!("chown {}", f.path), e))?;
    Ok(Some(f.path.clone()))
}

/// Connect `sock` to `name` (a listener's or a datagram peer's).
/// Non-blocking: a listener whose backlog is full is an error, never a hang (the
/// socket's own status flags are set at the end).
pub fn connect(sock: &OwnedFd, name: &[u8], what: &str) -> Result<()> {
    let addr = addr_of(name, what)?;
    spirit_kmod::fd::set_status_flags(sock, libc::O_NONBLOCK)
        .map_err(|e| restore_err(what, "O_NONBLOCK", e))?;
    ns::connect(sock.as_raw_fd(), &addr)
        .map_err(|e| restore_err(what, &format!("connect to {}", show_name(name)), e))
}

pub fn listen(sock: &OwnedFd, backlog: u32, what: &str) -> Result<()> {
    let b = ns::Backlog::new(backlog.min(i32::MAX as u32) as i32).unwrap_or(ns::Backlog::MAXCONN);
    ns::listen(sock, b).map_err(|e| restore_err(what, "listen", e))
}

pub fn accept(listener: &OwnedFd, what: &str) -> Result<OwnedFd> {
    spirit_kmod::sockopt::accept_cloexec(std::os::fd::AsFd::as_fd(listener))
        .map_err(|e| restore_err(what, "accept", e))
}

/// Shut down the sides of `sock` recorded as shut.
pub fn shutdown(sock: &OwnedFd, mask: u8, what: &str) -> Result<()> {
    let how = match mask & 3 {
        0 => return Ok(()),
        1 => ns::Shutdown::Read,
        2 => ns::Shutdown::Write,
        _ => ns::Shutdown::Both,
    };
    ns::shutdown(sock.as_raw_fd(), how).map_err(|e| restore_err(what, "shutdown", e))
}

// ---------------------------------------------------------------------------------
// Show

pub fn show(u: &Unix) -> Value {
    let mut v = json!({
        "family": "unix",
        "type": type_name(u.ty),
        "state": state_name(u.state),
        "name": show_name(&u.name),
        "peer": u.peer,
        "peer_kind": u.peer_kind,
        "queued": u.queue.len(),
        "queued_bytes": u.queue.iter().map(|m| m.data.len()).sum::<usize>(),
        "queued_files": u.queue.iter().map(|m| m.files.len()).sum::<usize>(),
        "shutdown": u.shutdown,
    });
    if u.name_inherited {
        v["name_from_listener"] = json!(true);
    }
    if let Some(f) = &u.file {
        v["file"] = serde_json::to_value(f).unwrap_or(Value::Null);
    }
    if !u.peer_name.is_empty() {
        v["peer_name"] = json!(show_name(&u.peer_name));
    }
    if u.state == TCP_LISTEN {
        v["backlog"] = json!(u.backlog);
        v["pending"] = json!(u.pending);
    }
    if u.embryo {
        v["waiting_on_listener"] = json!(u.listener);
    }
    if !u.queue.is_empty() {
        v["messages"] = json!(u
            .queue
            .iter()
            .map(|m| json!({
                "bytes": m.data.len(),
                "files": m.files,
                "from": if m.from.is_empty() { Value::Null } else { json!(show_name(&m.from)) },
            }))
            .collect::<Vec<_>>());
    }
    v
}
