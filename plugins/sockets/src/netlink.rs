//! Netlink sockets (NETLINK_ROUTE, generic netlink, audit, uevents...): protocol, type,
//! the bound port id and every multicast group joined, and the destination a socket
//! connected to. Messages waiting to be read are dropped: they are answers to requests
//! and event notifications about a host the restored process may no longer be on, and
//! a program must re-read state after a netlink overrun anyway (ENOBUFS is the same
//! contract). A port id taken at restore (the original still runs, or another program
//! took it) fails the restore naming the socket.

use crate::model::Netlink;
use nix::sys::socket::{getpeername, getsockname, NetlinkAddr, SockaddrLike};
use serde_json::{json, Value};
use spirit_core::{Error, Result};
use spirit_kmod::sockopt::{getsockopt_int, getsockopt_raw, setsockopt_int, socket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_LIST_MEMBERSHIPS: i32 = 9;

pub fn dump(sock: &OwnedFd, pid: i32, fd: i32) -> Result<Netlink> {
    let err = |e: &dyn std::fmt::Display| Error::Dump {
        pid,
        msg: format!("fd {fd}: netlink socket: {e}"),
    };
    let me: NetlinkAddr = getsockname(sock.as_raw_fd()).map_err(|e| err(&e))?;
    let mut n = Netlink {
        protocol: getsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL)
            .map_err(|e| err(&e))?,
        ty: getsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| err(&e))?
            as u8,
        portid: me.pid(),
        ..Default::default()
    };
    let mut buf = vec![0u8; 1024];
    let len = getsockopt_raw(
        sock.as_fd(),
        SOL_NETLINK,
        NETLINK_LIST_MEMBERSHIPS,
        &mut buf,
    )
    .unwrap_or(0);
    for (w, c) in buf[..len.min(buf.len())].chunks_exact(4).enumerate() {
        let word = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
        for bit in 0..32 {
            if word & (1 << bit) != 0 {
                n.groups.push(w as u32 * 32 + bit + 1);
            }
        }
    }
    if let Ok(peer) = getpeername::<NetlinkAddr>(sock.as_raw_fd()) {
        if peer.len() > 0 {
            n.dst_portid = peer.pid();
            n.dst_group = peer.groups();
        }
    }
    Ok(n)
}

pub fn restore(n: &Netlink, what: &str) -> Result<OwnedFd> {
    let fail =
        |step: &str, e: &dyn std::fmt::Display| Error::Restore(format!("{what}: {step}: {e}"));
    let s = socket(libc::AF_NETLINK, n.ty as i32, n.protocol).map_err(|e| fail("socket", &e))?;
    if n.portid != 0 {
        nix::sys::socket::bind(s.as_raw_fd(), &NetlinkAddr::new(n.portid, 0))
            .map_err(|e| fail(&format!("bind to port id {}", n.portid), &e))?;
    }
    for g in &n.groups {
        setsockopt_int(s.as_fd(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, *g as i32)
            .map_err(|e| fail(&format!("joining group {g}"), &e))?;
    }
    if n.dst_portid != 0 || n.dst_group != 0 {
        nix::sys::socket::connect(s.as_raw_fd(), &NetlinkAddr::new(n.dst_portid, n.dst_group))
            .map_err(|e| fail("connect", &e))?;
    }
    Ok(s)
}

pub fn show(n: &Netlink) -> Value {
    json!({
        "family": "netlink",
        "protocol": n.protocol,
        "type": n.ty,
        "portid": n.portid,
        "groups": n.groups,
        "dst_portid": n.dst_portid,
        "dst_group": n.dst_group,
    })
}
