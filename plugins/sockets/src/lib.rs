//! spirit's sockets plugin: every socket descriptor of a tree — unix (stream, datagram,
//! seqpacket), netlink, and TCP/UDP through the `inet` module — with the generic
//! SOL_SOCKET options of each in one place (`opts.rs`).
//!
//! Dump, the tree frozen: `dump_tree` lists every socket the tree holds and asks the
//! kernel (sock_diag, `diag.rs`) about every unix socket once (`tree.rs`); then per
//! process each socket fd is claimed and recorded from a `pidfd_getfd` copy: the common
//! record (fd, status flags, close-on-exec, inode, options) and the family's payload
//! (`unix.rs` with its queued data from `queue.rs`, `netlink.rs`, `inet`). A socket
//! held by several processes is recorded in full once, the others name its inode; a
//! unix socket no process holds but that is in flight (SCM_RIGHTS) in a queue is
//! recorded in full in the section of the process whose queue carries it.
//! Packet and raw sockets, and unix sockets connected outside the tree (unless the user
//! said how to treat them), are refused naming the process, the fd and both ends.
//!
//! Restore: `plan_restore` groups the sockets that must be made together (both ends of a
//! pair, a listener with its accepted and queued connections) and gives each group to
//! the lowest common ancestor of its holders (`tree.rs`); that process builds them
//! before forking its children and parks them at numbers from core's `Parking`
//! (`create.rs`); each holder `dup3`s them into place in `restore_in_child`. A failed
//! restore removes the socket files it bound. TCP connections come back in repair
//! mode; `restore_remote` lets each out (`inet::finish`, on a `pidfd_getfd` copy while
//! the process is still stopped, so the unsent data goes before anything the program
//! writes), and `restore_end` removes the network lock (`inet::unlock`), also when the
//! restore failed. The inet module's own doc (`inet/mod.rs`) tells the dump side: the
//! lock is installed in `dump_tree` before any connection enters repair mode, and
//! `dump_end` removes it or keeps it for the restore.

#[allow(clippy::all, clippy::pedantic)]
mod sockets_capnp {
    include!(concat!(env!("OUT_DIR"), "/sockets_capnp.rs"));
}
#[allow(clippy::all, clippy::pedantic)]
mod inet_capnp {
    include!(concat!(env!("OUT_DIR"), "/inet_capnp.rs"));
}

mod create;
mod diag;
pub mod inet;
mod model;
mod netlink;
mod opts;
mod plan;
mod queue;
mod tree;
mod unix;

use model::{Payload, Section, Socket};
use serde_json::{json, Value};
use spirit_core::plugin::{
    state_mut, state_ref, DumpCtx, DumpOutcome, FdKind, Parking, Plugin, RestoreCtx, TreeState,
    TreeView,
};
use spirit_core::{Error, Result};

pub(crate) const NAME: &str = "sockets";
const VERSION: u32 = 1;

/// The sockets plugin.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketsPlugin;

fn domain_name(d: i32) -> String {
    match d {
        libc::AF_PACKET => "a packet socket".into(),
        libc::AF_INET | libc::AF_INET6 => "an inet socket".into(),
        libc::AF_NETLINK => "a netlink socket".into(),
        libc::AF_VSOCK => "a vsock socket".into(),
        libc::AF_BLUETOOTH => "a bluetooth socket".into(),
        libc::AF_ALG => "a crypto (AF_ALG) socket".into(),
        d => format!("a socket of address family {d}"),
    }
}

fn dump_process(st: &mut tree::DumpState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
    let pid = ctx.remote.pid;
    let mut sec = Section::default();
    let mut pidfd = None;
    let mut in_flight = Vec::new();
    for e in ctx.fds.iter_mut().filter(|e| e.kind == FdKind::Socket) {
        let common = |payload| Socket {
            fd: e.fd,
            flags: e.flags & !(libc::O_CLOEXEC as u32),
            cloexec: e.flags & libc::O_CLOEXEC as u32 != 0,
            inode: e.ino,
            dup_of: None,
            opts: Default::default(),
            payload,
        };
        if let Some(first) = sec.sockets.iter().find(|s| s.inode == e.ino) {
            let mut s = common(Payload::Dup);
            s.dup_of = Some(first.fd);
            sec.sockets.push(s);
            e.claimed = true;
            continue;
        }
        if st.recorded.contains(&e.ino) {
            sec.sockets.push(common(Payload::Dup));
            e.claimed = true;
            continue;
        }
        if pidfd.is_none() {
            pidfd = Some(spirit_kmod::fd::pidfd_open(pid).map_err(|err| Error::Dump {
                pid,
                msg: format!("pidfd_open to read its sockets: {err}"),
            })?);
        }
        let copy = spirit_kmod::fd::pidfd_getfd(pidfd.as_ref().expect("opened above"), e.fd)
            .map_err(|err| Error::Dump {
                pid,
                msg: format!(
                    "fd {}: taking a copy of the socket (pidfd_getfd): {err}",
                    e.fd
                ),
            })?;
        let fdb = std::os::fd::AsFd::as_fd(&copy);
        let domain = spirit_kmod::sockopt::getsockopt_int(fdb, libc::SOL_SOCKET, libc::SO_DOMAIN)
            .map_err(|err| Error::Dump {
            pid,
            msg: format!("fd {}: SO_DOMAIN: {err}", e.fd),
        })?;
        let payload = match domain {
            libc::AF_UNIX => {
                let (u, socks) = unix::dump(st, pid, e.fd, e.ino, &copy)?;
                in_flight.extend(socks);
                Payload::Unix(u)
            }
            libc::AF_INET | libc::AF_INET6 => Payload::Inet(inet::dump(
                &mut st.inet,
                pid,
                e.fd,
                std::os::fd::AsFd::as_fd(&copy),
            )?),
            libc::AF_NETLINK => Payload::Netlink(netlink::dump(&copy, pid, e.fd)?),
            d => {
                return Err(Error::UnsupportedFd {
                    pid,
                    fd: e.fd,
                    kind: domain_name(d),
                    target: e.target.clone(),
                })
            }
        };
        let mut s = common(payload);
        // Read only now: the inet module put TCP connections in repair mode in
        // `dump_tree`, where SO_REUSEADDR reads 2; it kept the program's value.
        s.opts = opts::dump(&copy);
        if let Payload::Inet(rec) = &s.payload {
            s.opts.reuse_addr = rec.reuse_addr;
        }
        st.recorded.insert(e.ino);
        sec.sockets.push(s);
        e.claimed = true;
    }
    // Sockets in flight that no process of the tree holds: recorded in full here (and
    // those in flight in their own queues, in turn).
    while let Some((ino, copy)) = in_flight.pop() {
        if st.holders.contains_key(&ino) || !st.recorded.insert(ino) {
            continue;
        }
        let (u, socks) = unix::dump(st, pid, -1, ino, &copy)?;
        in_flight.extend(socks);
        sec.inflight.push(Socket {
            fd: -1,
            flags: nix::fcntl::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&copy),
                nix::fcntl::FcntlArg::F_GETFL,
            )
            .unwrap_or(libc::O_RDWR) as u32,
            cloexec: false,
            inode: ino,
            dup_of: None,
            opts: opts::dump(&copy),
            payload: Payload::Unix(u),
        });
    }
    Ok((!sec.sockets.is_empty()).then(|| sec.encode()))
}

impl Plugin for SocketsPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn dump_tree(&self, tree: &spirit_core::plugin::DumpTree) -> Result<TreeState> {
        Ok(Box::new(tree::DumpState::new(tree)?))
    }

    fn dump(&self, state: &mut TreeState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
        dump_process(state_mut::<tree::DumpState>(state)?, ctx)
    }

    fn dump_end(&self, state: &mut TreeState, outcome: DumpOutcome) {
        if let Ok(st) = state_mut::<tree::DumpState>(state) {
            st.inet.end(outcome);
        }
    }

    fn plan_restore(&self, tree: &TreeView<'_>, park: &mut Parking) -> Result<TreeState> {
        Ok(Box::new(plan::plan(tree, park)?))
    }

    fn restore_before_fork(&self, state: &TreeState, _tree: &TreeView<'_>, pid: i32) -> Result<()> {
        create::before_fork(state_ref(state)?, pid)
    }

    fn restore_in_child(
        &self,
        state: &TreeState,
        _tree: &TreeView<'_>,
        _process: &spirit_core::model::ProcessImage,
        section: &[u8],
    ) -> Result<Vec<i32>> {
        create::in_child(state_ref(state)?, &Section::decode(section)?)
    }

    fn restore_remote(
        &self,
        state: &mut TreeState,
        ctx: &mut RestoreCtx<'_>,
        section: &[u8],
    ) -> Result<()> {
        finish_inet(
            state_mut::<plan::Plan>(state)?,
            ctx.remote.pid,
            &Section::decode(section)?,
        )
    }

    fn restore_end(&self, state: &mut TreeState, ok: bool) {
        if let Ok(plan) = state_mut::<plan::Plan>(state) {
            // The network lock goes once every connection is out of repair mode, and
            // also when the restore failed (its connections are gone then).
            let recs = plan.objs.values().filter_map(|o| match &o.rec.payload {
                Payload::Inet(r) => Some(r),
                _ => None,
            });
            if let Err(e) = inet::unlock(recs) {
                eprintln!("spirit: removing the network lock of the restored sockets: {e}");
            }
            if !ok {
                plan::clean_files(plan);
            }
        }
    }

    fn show(&self, section: &[u8]) -> Result<Value> {
        let sec = Section::decode(section)?;
        let mut v = json!({ "sockets": sec.sockets.iter().map(show_socket).collect::<Vec<_>>() });
        if !sec.inflight.is_empty() {
            v["in_flight"] = json!(sec.inflight.iter().map(show_socket).collect::<Vec<_>>());
        }
        Ok(v)
    }
}

/// While process `pid` (real pid) is still stopped, its memory in place: every TCP
/// connection it holds leaves repair mode (through a `pidfd_getfd` copy) and gets its
/// unsent data queued, before the program can write to it. A connection shared by
/// several processes is let go once.
fn finish_inet(plan: &mut plan::Plan, pid: i32, sec: &Section) -> Result<()> {
    let mut pidfd = None;
    for s in &sec.sockets {
        let Some(Payload::Inet(rec)) = plan.objs.get(&s.inode).map(|o| &o.rec.payload) else {
            continue;
        };
        if rec.tcp.is_none() || plan.inet_done.contains(&s.inode) {
            continue;
        }
        let fail = |msg: String| Error::Restore(format!("pid {pid} fd {}: {msg}", s.fd));
        if pidfd.is_none() {
            pidfd = Some(
                spirit_kmod::fd::pidfd_open(pid).map_err(|e| fail(format!("pidfd_open: {e}")))?,
            );
        }
        let copy = spirit_kmod::fd::pidfd_getfd(pidfd.as_ref().expect("opened above"), s.fd)
            .map_err(|e| fail(format!("taking a copy of the socket: {e}")))?;
        inet::finish(std::os::fd::AsFd::as_fd(&copy), rec).map_err(|e| match e {
            Error::Restore(m) => fail(m),
            e => e,
        })?;
        plan.inet_done.insert(s.inode);
    }
    Ok(())
}

fn show_socket(s: &Socket) -> Value {
    let mut v = match &s.payload {
        Payload::Dup => json!({ "family": "same as another fd" }),
        Payload::Unix(u) => unix::show(u),
        Payload::Inet(r) => inet::show(r),
        Payload::Netlink(n) => netlink::show(n),
    };
    v["fd"] = json!(s.fd);
    v["inode"] = json!(s.inode);
    v["flags"] = json!(s.flags);
    v["nonblock"] = json!(s.flags as i32 & libc::O_NONBLOCK != 0);
    v["cloexec"] = json!(s.cloexec);
    if let Some(d) = s.dup_of {
        v["dup_of"] = json!(d);
    }
    if !matches!(s.payload, Payload::Dup) {
        v["options"] = serde_json::to_value(&s.opts).unwrap_or(Value::Null);
    }
    v
}
