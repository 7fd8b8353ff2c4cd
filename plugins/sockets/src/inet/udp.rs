//! Datagram sockets: UDP, UDPLite and ICMP "ping" sockets (SOCK_DGRAM with
//! IPPROTO_ICMP / IPPROTO_ICMPV6; their "port" is the echo identifier), IPv4 and IPv6.
//!
//! Kept: the bound address and port, the connected peer, the options (ipopts.rs, with
//! SO_BROADCAST). Restore: socket, pre-bind options, bind, the other options, connect.
//!
//! Not kept, by decision:
//! - datagrams waiting in the receive queue are dropped (their size is recorded and
//!   shown): putting a datagram back would need a socket bound to its sender's address
//!   on this host, and UDP promises no delivery, so a program must already cope with a
//!   lost datagram;
//! - corked data (UDP_CORK on with a datagram being built) cannot be read back: such a
//!   socket is refused, naming pid and fd;
//!
//! Multicast memberships are kept (found by probing, see mcast.rs).

use super::{bind_to, InetRecord};
use spirit_core::{Error, Result};
use spirit_kmod::sockopt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

const SIOCINQ: u64 = 0x541B;
const SIOCOUTQ: u64 = 0x5411;

/// The datagram-specific part of a dump: the size of the first waiting datagram
/// (dropped), or a refusal for corked data.
pub fn dump(sock: BorrowedFd<'_>, pid: i32, fd: i32) -> Result<u32> {
    let corked = sockopt::getsockopt_int(sock, libc::SOL_UDP, libc::UDP_CORK).unwrap_or(0) != 0;
    let outq = sockopt::ioctl_int(sock, SIOCOUTQ).unwrap_or(0);
    if corked && outq > 0 {
        return Err(Error::Dump {
            pid,
            msg: format!(
                "fd {fd} is a corked UDP socket with {outq} bytes of a datagram not yet sent, which spirit cannot read back; uncork it (UDP_CORK 0) before the checkpoint"
            ),
        });
    }
    Ok(sockopt::ioctl_int(sock, SIOCINQ).unwrap_or(0).max(0) as u32)
}

pub fn restore(rec: &InetRecord) -> Result<OwnedFd> {
    let s = super::new_socket(rec.family, libc::SOCK_DGRAM, rec.protocol)?;
    let fd = s.as_fd();
    super::ipopts::restore(fd, &rec.opts, true)?;
    if rec.reuse_addr {
        sockopt::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
            .map_err(|e| Error::Restore(format!("SO_REUSEADDR: {e}")))?;
    }
    if let Some(local) = rec
        .local
        .filter(|a| a.port() != 0 || !a.ip().is_unspecified())
    {
        bind_to(fd, local)?;
    }
    super::ipopts::restore(fd, &rec.opts, false)?;
    super::mcast::restore(fd, rec.family, &rec.mcast)?;
    if let Some(peer) = rec.peer {
        let ss = nix::sys::socket::SockaddrStorage::from(peer);
        nix::sys::socket::connect(fd.as_raw_fd(), &ss)
            .map_err(|e| Error::Restore(format!("connect to {peer}: {e}")))?;
    }
    Ok(s)
}

/// The destination a ping socket is connected to, from `/proc/PID/net/icmp` (or
/// `icmp6`) by inode: getpeername says ENOTCONN for them (their "port" is 0).
pub fn ping_peer(net_dir: &str, family: i32, ino: u64) -> Option<std::net::SocketAddr> {
    let file = if family == libc::AF_INET6 {
        "icmp6"
    } else {
        "icmp"
    };
    let text = std::fs::read_to_string(format!("{net_dir}/{file}")).ok()?;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[9].parse::<u64>().ok()? != ino {
            continue;
        }
        let (ip, _) = f[2].split_once(':')?;
        let addr: std::net::IpAddr = match ip.len() {
            8 => std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes()).into(),
            32 => {
                let mut b = [0u8; 16];
                for k in 0..4 {
                    let w = u32::from_str_radix(&ip[8 * k..8 * k + 8], 16).ok()?;
                    b[4 * k..4 * k + 4].copy_from_slice(&w.to_ne_bytes());
                }
                std::net::Ipv6Addr::from(b).into()
            }
            _ => return None,
        };
        return (!addr.is_unspecified()).then(|| std::net::SocketAddr::new(addr, 0));
    }
    None
}
