//! Datagram sockets through the inet module, in this one test process: UDP over IPv4
//! and IPv6, UDPLite and ICMP ping sockets are dumped, closed, restored from the
//! decoded record with their addresses and options, and exchange datagrams again;
//! corked data is refused.

mod inet_common;
use inet_common::*;

use spirit_kmod::sockopt;
use spirit_sockets::inet::{self, ipopts, udp};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

/// Dump `s` (this process standing for the tree), close it, restore it from the
/// decoded record.
fn dump_close_restore(s: OwnedFd) -> (inet::InetRecord, OwnedFd) {
    let t = tree(&[s.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    assert!(st.lock_table().is_none(), "datagram sockets need no lock");
    let rec = inet::dump(&mut st, me(), s.as_raw_fd(), s.as_fd()).unwrap();
    st.end(spirit_core::plugin::DumpOutcome::Killed);
    drop(s);
    let rec2 = inet::from_bytes(&inet::to_bytes(&rec)).unwrap();
    assert_eq!(rec2, rec);
    let n = inet::restore(&rec2).unwrap();
    inet::finish(n.as_fd(), &rec2).unwrap();
    (rec2, n)
}

/// Same, but the original is closed only after the restore: for sockets bound with
/// SO_REUSEPORT on a wildcard address, so no other program on the host can take the
/// port in between.
fn dump_restore_then_close(s: OwnedFd) -> (inet::InetRecord, OwnedFd) {
    let t = tree(&[s.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let rec = inet::dump(&mut st, me(), s.as_raw_fd(), s.as_fd()).unwrap();
    st.end(spirit_core::plugin::DumpOutcome::Killed);
    let rec2 = inet::from_bytes(&inet::to_bytes(&rec)).unwrap();
    let n = inet::restore(&rec2).unwrap();
    drop(s);
    (rec2, n)
}

/// A UDP socket bound to `addr` with SO_REUSEPORT.
fn reuseport_udp(addr: &str) -> OwnedFd {
    let a: SocketAddr = addr.parse().unwrap();
    let fam = if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let s = sockopt::socket(fam, libc::SOCK_DGRAM, 0).unwrap();
    set(&s, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
    nix::sys::socket::bind(s.as_raw_fd(), &nix::sys::socket::SockaddrStorage::from(a)).unwrap();
    s
}

fn udp_pair(bind: &str) -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind(bind).unwrap();
    let b = UdpSocket::bind(bind).unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (a, b)
}

fn set(s: &impl AsFd, level: i32, name: i32, v: i32) {
    sockopt::setsockopt_int(s.as_fd(), level, name, v).unwrap();
}

fn get(s: &impl AsFd, level: i32, name: i32) -> i32 {
    sockopt::getsockopt_int(s.as_fd(), level, name).unwrap()
}

fn ping_pong(restored: OwnedFd, peer: &UdpSocket, local: SocketAddr) {
    let a = UdpSocket::from(restored);
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(a.local_addr().unwrap(), local);
    assert_eq!(a.peer_addr().unwrap(), peer.local_addr().unwrap());
    peer.send(b"ping").unwrap();
    let mut buf = [0u8; 16];
    let n = a.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    a.send(b"pong").unwrap();
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"pong"[..], local));
}

#[test]
fn udp_ipv4_bound_connected_with_options() {
    let (a, b) = udp_pair("127.0.0.1:0");
    set(&a, libc::SOL_SOCKET, libc::SO_BROADCAST, 1);
    set(&a, libc::SOL_IP, libc::IP_TTL, 33);
    set(&a, libc::SOL_IP, libc::IP_TOS, 0x20);
    set(&a, libc::SOL_IP, libc::IP_RECVERR, 1);
    set(&a, libc::SOL_IP, libc::IP_MULTICAST_TTL, 4);
    set(&a, libc::SOL_IP, libc::IP_MULTICAST_LOOP, 0);
    let local = a.local_addr().unwrap();
    // A datagram waiting at dump time is dropped, and said so.
    b.send(b"lost in the freeze").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (rec, n) = dump_close_restore(OwnedFd::from(a));
    assert_eq!(rec.rcv_dropped, 18);
    let shown = inet::show(&rec);
    assert_eq!(shown["protocol"], "udp");
    assert_eq!(shown["options"]["IP_TTL"], 33);
    assert_eq!(shown["options"]["SO_BROADCAST"], 1);
    assert_eq!(shown["dropped_datagram_bytes"], 18);
    assert_eq!(get(&n, libc::SOL_IP, libc::IP_TTL), 33);
    assert_eq!(get(&n, libc::SOL_IP, libc::IP_TOS), 0x20);
    assert_eq!(get(&n, libc::SOL_SOCKET, libc::SO_BROADCAST), 1);
    assert_eq!(get(&n, libc::SOL_IP, libc::IP_MULTICAST_LOOP), 0);
    assert_eq!(
        ipopts::dump(n.as_fd(), rec.family, rec.sotype, rec.protocol),
        rec.opts
    );
    ping_pong(n, &b, local);
}

#[test]
fn udp_ipv6_with_v6only_and_hops() {
    let (a, b) = udp_pair("[::1]:0");
    set(&a, libc::SOL_IPV6, libc::IPV6_UNICAST_HOPS, 7);
    set(&a, libc::SOL_IPV6, libc::IPV6_MULTICAST_HOPS, 3);
    set(&a, libc::SOL_IPV6, libc::IPV6_RECVPKTINFO, 1);
    let local = a.local_addr().unwrap();
    let (rec, n) = dump_close_restore(OwnedFd::from(a));
    assert_eq!(rec.family, libc::AF_INET6);
    assert_eq!(get(&n, libc::SOL_IPV6, libc::IPV6_UNICAST_HOPS), 7);
    assert_eq!(get(&n, libc::SOL_IPV6, libc::IPV6_MULTICAST_HOPS), 3);
    assert_eq!(get(&n, libc::SOL_IPV6, libc::IPV6_RECVPKTINFO), 1);
    ping_pong(n, &b, local);
}

#[test]
fn unconnected_udp_keeps_its_port() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = a.local_addr().unwrap();
    let (rec, n) = dump_close_restore(OwnedFd::from(a));
    assert!(rec.peer.is_none());
    let a = UdpSocket::from(n);
    assert_eq!(a.local_addr().unwrap(), local);
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.send_to(b"hi", local).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4];
    let (len, from) = a.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..len], from), (&b"hi"[..], b.local_addr().unwrap()));
}

#[test]
fn udplite_with_checksum_coverage() {
    let s = sockopt::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE).unwrap();
    set(&s, 136, 10, 20); // UDPLITE_SEND_CSCOV
    set(&s, 136, 11, 20); // UDPLITE_RECV_CSCOV
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    nix::sys::socket::bind(s.as_raw_fd(), &nix::sys::socket::SockaddrStorage::from(any)).unwrap();
    let (rec, n) = dump_close_restore(s);
    assert_eq!(rec.protocol, libc::IPPROTO_UDPLITE);
    assert_eq!(inet::show(&rec)["protocol"], "udplite");
    assert_eq!(get(&n, 136, 10), 20);
    assert_eq!(get(&n, 136, 11), 20);
    assert_eq!(
        rec.local.unwrap().port(),
        UdpSocket::from(n).local_addr().unwrap().port()
    );
}

#[test]
fn corked_udp_data_is_refused() {
    let (a, _b) = udp_pair("127.0.0.1:0");
    set(&a, libc::SOL_UDP, libc::UDP_CORK, 1);
    a.send(b"half a datagram").unwrap();
    let t = tree(&[a.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let e = inet::dump(&mut st, me(), a.as_raw_fd(), a.as_fd())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("corked") && e.contains(&format!("fd {}", a.as_raw_fd())),
        "{e}"
    );
}

#[test]
fn icmp_ping_socket_in_a_private_netns() {
    // Ping sockets need net.ipv4.ping_group_range to include our group; change it only
    // in a network namespace of this test's own thread (nothing system-wide).
    let r = std::thread::spawn(|| {
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            println!("SKIPPED: cannot make a network namespace");
            return;
        }
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        if !matches!(up, Ok(s) if s.success()) {
            println!("SKIPPED: cannot bring lo up in the test namespace");
            return;
        }
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0").unwrap();
        let s = sockopt::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP).unwrap();
        let lo: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let ss = nix::sys::socket::SockaddrStorage::from(lo);
        nix::sys::socket::bind(s.as_raw_fd(), &ss).unwrap();
        let dst: SocketAddr = "127.0.0.1:0".parse().unwrap();
        nix::sys::socket::connect(s.as_raw_fd(), &nix::sys::socket::SockaddrStorage::from(dst))
            .unwrap();
        set(&s, libc::SOL_IP, libc::IP_TTL, 17);
        // getpeername cannot tell where a ping socket is connected: /proc can.
        let ino = nix::sys::stat::fstat(s.as_raw_fd()).unwrap().st_ino;
        let peer = udp::ping_peer("/proc/thread-self/net", libc::AF_INET, ino);
        assert_eq!(peer, Some("127.0.0.1:0".parse().unwrap()));
        // The tree (this process) is in another namespace than this thread: keep the
        // socket unconnected for the round trip and connect the restored one.
        drop(s);
        let s = sockopt::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP).unwrap();
        nix::sys::socket::bind(s.as_raw_fd(), &ss).unwrap();
        set(&s, libc::SOL_IP, libc::IP_TTL, 17);
        let (rec, n) = dump_close_restore(s);
        nix::sys::socket::connect(n.as_raw_fd(), &nix::sys::socket::SockaddrStorage::from(dst))
            .unwrap();
        assert_eq!(inet::show(&rec)["protocol"], "icmp");
        assert_eq!(rec.local.unwrap().port(), 4242);
        assert_eq!(get(&n, libc::SOL_IP, libc::IP_TTL), 17);
        // An echo request (type 8) through the restored socket gets its reply.
        let req = [8u8, 0, 0, 0, 0, 0, 0, 1, b'h', b'i'];
        nix::sys::socket::send(n.as_raw_fd(), &req, nix::sys::socket::MsgFlags::empty()).unwrap();
        let u = UdpSocket::from(n);
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let len = u.recv(&mut buf).unwrap();
        assert_eq!(buf[0], 0, "echo reply");
        assert_eq!(
            u16::from_be_bytes([buf[4], buf[5]]),
            4242,
            "the restored identifier"
        );
        assert_eq!(&buf[8..len], b"hi");
    });
    r.join().unwrap();
}

fn group_req(ifindex: u32, group: std::net::IpAddr, source: Option<std::net::IpAddr>) -> Vec<u8> {
    fn ss(ip: std::net::IpAddr) -> [u8; 128] {
        let mut b = [0u8; 128];
        match ip {
            std::net::IpAddr::V4(a) => {
                b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                b[4..8].copy_from_slice(&a.octets());
            }
            std::net::IpAddr::V6(a) => {
                b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                b[8..24].copy_from_slice(&a.octets());
            }
        }
        b
    }
    let mut b = vec![0u8; 8];
    b[..4].copy_from_slice(&ifindex.to_ne_bytes());
    b.extend_from_slice(&ss(group));
    if let Some(s) = source {
        b.extend_from_slice(&ss(s));
    }
    b
}

#[test]
fn multicast_memberships_are_found_and_joined_again() {
    use spirit_sockets::inet::mcast::Membership;
    let lo = nix::net::if_::if_nametoindex("lo").unwrap();
    // IPv4: one any-source group with a blocked source, one source-specific group.
    let a = reuseport_udp("0.0.0.0:0");
    let (g1, g2, src): (std::net::IpAddr, std::net::IpAddr, std::net::IpAddr) = (
        "239.77.1.2".parse().unwrap(),
        "232.77.1.3".parse().unwrap(),
        "127.0.0.9".parse().unwrap(),
    );
    let lv = libc::SOL_IP;
    sockopt::setsockopt_raw(
        a.as_fd(),
        lv,
        libc::MCAST_JOIN_GROUP,
        &group_req(lo, g1, None),
    )
    .unwrap();
    sockopt::setsockopt_raw(
        a.as_fd(),
        lv,
        libc::MCAST_BLOCK_SOURCE,
        &group_req(lo, g1, Some(src)),
    )
    .unwrap();
    sockopt::setsockopt_raw(
        a.as_fd(),
        lv,
        libc::MCAST_JOIN_SOURCE_GROUP,
        &group_req(lo, g2, Some(src)),
    )
    .unwrap();
    // Another socket of this process in one more group: not ours, must not show up.
    let other = UdpSocket::bind("0.0.0.0:0").unwrap();
    let g3: std::net::IpAddr = "239.77.1.4".parse().unwrap();
    sockopt::setsockopt_raw(
        other.as_fd(),
        lv,
        libc::MCAST_JOIN_GROUP,
        &group_req(lo, g3, None),
    )
    .unwrap();
    let (rec, n) = dump_restore_then_close(a);
    let mut got = rec.mcast.clone();
    got.sort_by_key(|m| m.group);
    assert_eq!(
        got,
        vec![
            Membership {
                ifindex: lo,
                group: g2,
                exclude: false,
                sources: vec![src]
            },
            Membership {
                ifindex: lo,
                group: g1,
                exclude: true,
                sources: vec![src]
            },
        ]
    );
    let mut again = inet::mcast::dump(n.as_fd(), libc::AF_INET, "/proc/self/net");
    again.sort_by_key(|m| m.group);
    assert_eq!(again, got, "the restored socket is in the same groups");
    assert_eq!(inet::show(&rec)["multicast"].as_array().unwrap().len(), 2);

    // IPv6.
    let b = reuseport_udp("[::]:0");
    let g6: std::net::IpAddr = "ff15::7:1234".parse().unwrap();
    sockopt::setsockopt_raw(
        b.as_fd(),
        libc::SOL_IPV6,
        libc::MCAST_JOIN_GROUP,
        &group_req(lo, g6, None),
    )
    .unwrap();
    let (rec, n) = dump_restore_then_close(b);
    assert_eq!(
        rec.mcast,
        vec![Membership {
            ifindex: lo,
            group: g6,
            exclude: true,
            sources: vec![]
        }]
    );
    assert_eq!(
        inet::mcast::dump(n.as_fd(), libc::AF_INET6, "/proc/self/net"),
        rec.mcast
    );
    drop(other);
}
