//! Replaying the peer's FIN into a restored connection (CLOSE_WAIT, LAST_ACK, CLOSING):
//! repair mode cannot mark a FIN as received, so the connection is rebuilt without it
//! and the FIN is delivered as the peer sent it: one TCP segment (FIN|ACK, the FIN's
//! sequence number, acknowledging what the peer had acknowledged) written with a raw
//! socket (IP_HDRINCL / IPV6_HDRINCL) to the socket's own address, so it never leaves
//! the host. It carries [`MARK`], which the network lock lets through. CRIU's libsoccr
//! does the same.
//!
//! The segment has no timestamp option: a made-up tsval would become the connection's
//! `ts_recent` and could make it reject the real peer's next segments (PAWS).

use spirit_core::{Error, Result};
use spirit_kmod::sockopt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

/// The packet mark of replayed segments (accepted by the lock's input chain).
pub const MARK: u32 = 0x5350_4952;
const IPV6_HDRINCL: i32 = 36;

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn v4(ip: IpAddr) -> Option<[u8; 4]> {
    match ip {
        IpAddr::V4(a) => Some(a.octets()),
        IpAddr::V6(a) => a.to_ipv4_mapped().map(|a| a.octets()),
    }
}

/// The segment `from` → `to` (FIN|ACK, no payload), with its IP header.
fn packet(from: SocketAddr, to: SocketAddr, seq: u32, ack: u32, window: u16) -> Option<Vec<u8>> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&from.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&to.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x11; // FIN | ACK
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    if let (Some(s), Some(d)) = (v4(from.ip()), v4(to.ip())) {
        let mut pseudo = Vec::with_capacity(12);
        pseudo.extend_from_slice(&s);
        pseudo.extend_from_slice(&d);
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        let c = fold(sum16(&tcp, sum16(&pseudo, 0)));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&s);
        ip.extend_from_slice(&d);
        let c = fold(sum16(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&tcp);
        return Some(ip);
    }
    let (IpAddr::V6(s), IpAddr::V6(d)) = (from.ip(), to.ip()) else {
        return None;
    };
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&s.octets());
    pseudo.extend_from_slice(&d.octets());
    pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
    let c = fold(sum16(&tcp, sum16(&pseudo, 0)));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
    ip.extend_from_slice(&s.octets());
    ip.extend_from_slice(&d.octets());
    ip.extend_from_slice(&tcp);
    Some(ip)
}

/// Deliver the peer's FIN (`peer` → `local`, sequence number `seq`, acknowledging
/// `ack`, advertising `window` as the peer last did, unscaled).
pub fn replay(local: SocketAddr, peer: SocketAddr, seq: u32, ack: u32, window: u16) -> Result<()> {
    let err = |e: String| Error::Restore(format!("replaying the FIN of {peer} to {local}: {e}"));
    let pkt = packet(peer, local, seq, ack, window)
        .ok_or_else(|| err("mixed address families".into()))?;
    let is4 = pkt[0] >> 4 == 4;
    let (fam, dst) = if is4 {
        let d = v4(local.ip()).unwrap_or_default();
        (libc::AF_INET, SocketAddr::new(IpAddr::from(d), 0))
    } else {
        (libc::AF_INET6, SocketAddr::new(local.ip(), 0))
    };
    let s =
        sockopt::socket(fam, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| err(e.to_string()))?;
    if !is4 {
        sockopt::setsockopt_int(s.as_fd(), libc::SOL_IPV6, IPV6_HDRINCL, 1)
            .map_err(|e| err(format!("IPV6_HDRINCL: {e}")))?;
    }
    sockopt::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, MARK as i32)
        .map_err(|e| err(format!("SO_MARK: {e}")))?;
    let to = nix::sys::socket::SockaddrStorage::from(dst);
    use std::os::fd::AsRawFd;
    nix::sys::socket::sendto(
        s.as_raw_fd(),
        &pkt,
        &to,
        nix::sys::socket::MsgFlags::empty(),
    )
    .map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let p = packet(
            "127.0.0.2:80".parse().unwrap(),
            "127.0.0.1:4000".parse().unwrap(),
            7,
            9,
            512,
        )
        .unwrap();
        assert_eq!(fold(sum16(&p[..20], 0)), 0, "IPv4 header checksum");
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        assert_eq!(fold(sum16(&p[20..], sum16(&pseudo, 0))), 0, "TCP checksum");
        let p = packet(
            "[::1]:80".parse().unwrap(),
            "[::1]:4000".parse().unwrap(),
            7,
            9,
            512,
        )
        .unwrap();
        assert_eq!(p.len(), 60);
        let mut pseudo = p[8..40].to_vec();
        pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
        assert_eq!(fold(sum16(&p[40..], sum16(&pseudo, 0))), 0);
    }
}
