//! IP, IPv6, TCP, UDP and UDPLite-level socket options (and the two SOL_SOCKET ones
//! that only matter to inet sockets before `bind`: SO_REUSEPORT, and SO_BROADCAST).
//! The generic SOL_SOCKET options (buffers, SO_LINGER, SO_MARK...) are the common
//! record's, not these.
//!
//! Dump: every option of [`KNOWN`] that applies to the socket is read with getsockopt
//! and compared with a fresh socket of the same family, type and protocol; only those
//! that differ are recorded (so a restore on a host with other defaults keeps that
//! host's defaults for what the program never set, and `spirit show` lists what the
//! program chose). Restore: each recorded option is set on the new socket before
//! `bind` (V6ONLY, FREEBIND, TRANSPARENT and REUSEPORT must be; the others may).
//!
//! Multicast group memberships are not options one can read back: mcast.rs.

use serde_json::{json, Value};
use spirit_core::{Error, Result};
use spirit_kmod::sockopt;
use std::os::fd::{AsFd, BorrowedFd};

/// One recorded option: level, name, and the bytes getsockopt gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opt {
    pub level: i32,
    pub name: i32,
    pub value: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Applies {
    V4,
    V6,
    /// Multicast options: datagram sockets only (an accepted TCP socket inherits the
    /// incoming packet's TTL and interface in these fields, meaningless to it).
    V4Dgram,
    V6Dgram,
    Tcp,
    Udp,
    UdpLite,
    Any,
}

const SOL_UDPLITE: i32 = 136;

/// (level, name, label, applies to).
const KNOWN: &[(i32, i32, &str, Applies)] = &[
    (
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        "SO_REUSEPORT",
        Applies::Any,
    ),
    (
        libc::SOL_SOCKET,
        libc::SO_BROADCAST,
        "SO_BROADCAST",
        Applies::Any,
    ),
    (libc::SOL_IP, libc::IP_TOS, "IP_TOS", Applies::V4),
    (libc::SOL_IP, libc::IP_TTL, "IP_TTL", Applies::V4),
    (libc::SOL_IP, libc::IP_FREEBIND, "IP_FREEBIND", Applies::V4),
    (
        libc::SOL_IP,
        libc::IP_TRANSPARENT,
        "IP_TRANSPARENT",
        Applies::V4,
    ),
    (
        libc::SOL_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        "IP_BIND_ADDRESS_NO_PORT",
        Applies::V4,
    ),
    (
        libc::SOL_IP,
        libc::IP_MTU_DISCOVER,
        "IP_MTU_DISCOVER",
        Applies::V4,
    ),
    (libc::SOL_IP, libc::IP_RECVERR, "IP_RECVERR", Applies::V4),
    (libc::SOL_IP, libc::IP_PKTINFO, "IP_PKTINFO", Applies::V4),
    (libc::SOL_IP, libc::IP_RECVTTL, "IP_RECVTTL", Applies::V4),
    (libc::SOL_IP, libc::IP_RECVTOS, "IP_RECVTOS", Applies::V4),
    (
        libc::SOL_IP,
        libc::IP_RECVORIGDSTADDR,
        "IP_RECVORIGDSTADDR",
        Applies::V4,
    ),
    (
        libc::SOL_IP,
        libc::IP_MULTICAST_IF,
        "IP_MULTICAST_IF",
        Applies::V4Dgram,
    ),
    (
        libc::SOL_IP,
        libc::IP_MULTICAST_TTL,
        "IP_MULTICAST_TTL",
        Applies::V4Dgram,
    ),
    (
        libc::SOL_IP,
        libc::IP_MULTICAST_LOOP,
        "IP_MULTICAST_LOOP",
        Applies::V4Dgram,
    ),
    (
        libc::SOL_IP,
        libc::IP_MULTICAST_ALL,
        "IP_MULTICAST_ALL",
        Applies::V4Dgram,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_V6ONLY,
        "IPV6_V6ONLY",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_UNICAST_HOPS,
        "IPV6_UNICAST_HOPS",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_TCLASS,
        "IPV6_TCLASS",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_FREEBIND,
        "IPV6_FREEBIND",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_TRANSPARENT,
        "IPV6_TRANSPARENT",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_MTU_DISCOVER,
        "IPV6_MTU_DISCOVER",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_RECVERR,
        "IPV6_RECVERR",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_RECVPKTINFO,
        "IPV6_RECVPKTINFO",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_RECVTCLASS,
        "IPV6_RECVTCLASS",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_RECVHOPLIMIT,
        "IPV6_RECVHOPLIMIT",
        Applies::V6,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_MULTICAST_IF,
        "IPV6_MULTICAST_IF",
        Applies::V6Dgram,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_MULTICAST_HOPS,
        "IPV6_MULTICAST_HOPS",
        Applies::V6Dgram,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_MULTICAST_LOOP,
        "IPV6_MULTICAST_LOOP",
        Applies::V6Dgram,
    ),
    (
        libc::SOL_IPV6,
        libc::IPV6_MULTICAST_ALL,
        "IPV6_MULTICAST_ALL",
        Applies::V6Dgram,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_NODELAY,
        "TCP_NODELAY",
        Applies::Tcp,
    ),
    (libc::SOL_TCP, libc::TCP_CORK, "TCP_CORK", Applies::Tcp),
    (
        libc::SOL_TCP,
        libc::TCP_KEEPIDLE,
        "TCP_KEEPIDLE",
        Applies::Tcp,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_KEEPINTVL,
        "TCP_KEEPINTVL",
        Applies::Tcp,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_KEEPCNT,
        "TCP_KEEPCNT",
        Applies::Tcp,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_USER_TIMEOUT,
        "TCP_USER_TIMEOUT",
        Applies::Tcp,
    ),
    (libc::SOL_TCP, libc::TCP_SYNCNT, "TCP_SYNCNT", Applies::Tcp),
    (
        libc::SOL_TCP,
        libc::TCP_LINGER2,
        "TCP_LINGER2",
        Applies::Tcp,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_DEFER_ACCEPT,
        "TCP_DEFER_ACCEPT",
        Applies::Tcp,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_NOTSENT_LOWAT,
        "TCP_NOTSENT_LOWAT",
        Applies::Tcp,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_THIN_LINEAR_TIMEOUTS,
        "TCP_THIN_LINEAR_TIMEOUTS",
        Applies::Tcp,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_FASTOPEN,
        "TCP_FASTOPEN",
        Applies::Tcp,
    ),
    (
        libc::SOL_TCP,
        libc::TCP_CONGESTION,
        "TCP_CONGESTION",
        Applies::Tcp,
    ),
    (libc::SOL_UDP, libc::UDP_CORK, "UDP_CORK", Applies::Udp),
    (
        libc::SOL_UDP,
        libc::UDP_SEGMENT,
        "UDP_SEGMENT",
        Applies::Udp,
    ),
    (libc::SOL_UDP, libc::UDP_GRO, "UDP_GRO", Applies::Udp),
    (SOL_UDPLITE, 10, "UDPLITE_SEND_CSCOV", Applies::UdpLite),
    (SOL_UDPLITE, 11, "UDPLITE_RECV_CSCOV", Applies::UdpLite),
];

fn applies(a: Applies, family: i32, sotype: i32, protocol: i32) -> bool {
    match a {
        Applies::Any => true,
        Applies::V4 => family == libc::AF_INET,
        Applies::V6 => family == libc::AF_INET6,
        Applies::V4Dgram => family == libc::AF_INET && sotype == libc::SOCK_DGRAM,
        Applies::V6Dgram => family == libc::AF_INET6 && sotype == libc::SOCK_DGRAM,
        Applies::Tcp => protocol == libc::IPPROTO_TCP,
        // UDPLite is UDP with a partial checksum: the UDP options apply too.
        Applies::Udp => protocol == libc::IPPROTO_UDP || protocol == libc::IPPROTO_UDPLITE,
        Applies::UdpLite => protocol == libc::IPPROTO_UDPLITE,
    }
}

/// The options that must be set before `bind` to take effect.
fn pre_bind(level: i32, name: i32) -> bool {
    matches!(
        (level, name),
        (libc::SOL_SOCKET, libc::SO_REUSEPORT)
            | (libc::SOL_IPV6, libc::IPV6_V6ONLY)
            | (libc::SOL_IP, libc::IP_FREEBIND)
            | (libc::SOL_IP, libc::IP_TRANSPARENT)
            | (libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT)
            | (libc::SOL_IPV6, libc::IPV6_FREEBIND)
            | (libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
    )
}

fn read(fd: BorrowedFd<'_>, level: i32, name: i32) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    let n = sockopt::getsockopt_raw(fd, level, name, &mut buf)
        .ok()?
        .min(buf.len());
    Some(buf[..n].to_vec())
}

/// The options of `sock` (family, type, protocol as given) that differ from a fresh
/// socket's. An option the kernel does not let us read is skipped.
pub fn dump(sock: BorrowedFd<'_>, family: i32, sotype: i32, protocol: i32) -> Vec<Opt> {
    let fresh = super::new_socket(family, sotype, protocol).ok();
    let mut out = Vec::new();
    for &(level, name, _, a) in KNOWN {
        if !applies(a, family, sotype, protocol) {
            continue;
        }
        let Some(v) = read(sock, level, name) else {
            continue;
        };
        let default = fresh.as_ref().and_then(|f| read(f.as_fd(), level, name));
        if default.as_ref() != Some(&v) {
            out.push(Opt {
                level,
                name,
                value: v,
            });
        }
    }
    out
}

/// Set the recorded options on a new socket: those that matter before `bind` when
/// `before_bind`, the others otherwise.
pub fn restore(sock: BorrowedFd<'_>, opts: &[Opt], before_bind: bool) -> Result<()> {
    for o in opts
        .iter()
        .filter(|o| pre_bind(o.level, o.name) == before_bind)
    {
        // TCP_CONGESTION comes back NUL-padded from getsockopt: set the name only.
        let v: &[u8] = if (o.level, o.name) == (libc::SOL_TCP, libc::TCP_CONGESTION) {
            let end = o
                .value
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(o.value.len());
            &o.value[..end]
        } else {
            &o.value
        };
        sockopt::setsockopt_raw(sock, o.level, o.name, v).map_err(|e| {
            Error::Restore(format!(
                "setting socket option {}: {e}",
                label(o.level, o.name)
            ))
        })?;
    }
    Ok(())
}

/// The option's name (`SOL_x/N` for one this build does not know).
pub fn label(level: i32, name: i32) -> String {
    KNOWN
        .iter()
        .find(|k| k.0 == level && k.1 == name)
        .map(|k| k.2.to_string())
        .unwrap_or_else(|| format!("level {level} option {name}"))
}

/// Options as a JSON object: name → integer (or string for TCP_CONGESTION).
pub fn show(opts: &[Opt]) -> Value {
    let mut m = serde_json::Map::new();
    for o in opts {
        let v = if o.value.len() == 4 {
            json!(i32::from_ne_bytes([
                o.value[0], o.value[1], o.value[2], o.value[3]
            ]))
        } else {
            let end = o
                .value
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(o.value.len());
            json!(String::from_utf8_lossy(&o.value[..end]))
        };
        m.insert(label(o.level, o.name), v);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn changed_options_round_trip() {
        let s =
            super::super::new_socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP).unwrap();
        let fd = s.as_fd();
        sockopt::setsockopt_int(fd, libc::SOL_TCP, libc::TCP_NODELAY, 1).unwrap();
        sockopt::setsockopt_int(fd, libc::SOL_TCP, libc::TCP_KEEPIDLE, 77).unwrap();
        sockopt::setsockopt_int(fd, libc::SOL_IP, libc::IP_TOS, 0x10).unwrap();
        sockopt::setsockopt_int(fd, libc::SOL_IP, libc::IP_TTL, 9).unwrap();
        sockopt::setsockopt_int(fd, libc::SOL_IP, libc::IP_FREEBIND, 1).unwrap();
        let opts = dump(fd, libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP);
        let names: Vec<String> = opts.iter().map(|o| label(o.level, o.name)).collect();
        assert_eq!(
            names,
            [
                "IP_TOS",
                "IP_TTL",
                "IP_FREEBIND",
                "TCP_NODELAY",
                "TCP_KEEPIDLE"
            ]
        );
        let n =
            super::super::new_socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP).unwrap();
        restore(n.as_fd(), &opts, true).unwrap();
        restore(n.as_fd(), &opts, false).unwrap();
        assert_eq!(
            dump(
                n.as_fd(),
                libc::AF_INET,
                libc::SOCK_STREAM,
                libc::IPPROTO_TCP
            ),
            opts
        );
        assert_eq!(show(&opts)["IP_TTL"], json!(9));
    }

    #[test]
    fn v6only_and_congestion() {
        let s =
            super::super::new_socket(libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP).unwrap();
        let fd = s.as_fd();
        let v6only = sockopt::getsockopt_int(fd, libc::SOL_IPV6, libc::IPV6_V6ONLY).unwrap();
        sockopt::setsockopt_int(fd, libc::SOL_IPV6, libc::IPV6_V6ONLY, 1 - v6only).unwrap();
        sockopt::setsockopt_raw(fd, libc::SOL_TCP, libc::TCP_CONGESTION, b"reno").unwrap();
        let opts = dump(fd, libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP);
        let n =
            super::super::new_socket(libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP).unwrap();
        restore(n.as_fd(), &opts, true).unwrap();
        restore(n.as_fd(), &opts, false).unwrap();
        assert_eq!(
            sockopt::getsockopt_int(n.as_fd(), libc::SOL_IPV6, libc::IPV6_V6ONLY).unwrap(),
            1 - v6only
        );
        assert_eq!(show(&opts)["TCP_CONGESTION"], json!("reno"));
    }
}
