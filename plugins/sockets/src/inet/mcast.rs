//! Multicast group memberships of datagram sockets.
//!
//! The kernel has no call that lists a socket's memberships (IP_ADD_MEMBERSHIP and
//! friends are write-only; /proc/PID/net/igmp and igmp6 list the groups joined on each
//! interface by anyone in the namespace). So the dump asks the socket about each group
//! that /proc lists, by trying to join it (`MCAST_JOIN_GROUP`): EADDRINUSE means the
//! socket is already a member; a successful probe is undone at once
//! (`MCAST_LEAVE_GROUP`). The group is joined on that interface by someone already, so
//! the probe sends no IGMP/MLD report. A member's source filter (mode and sources, for
//! IP_ADD_SOURCE_MEMBERSHIP / MCAST_BLOCK_SOURCE) is read with `MCAST_MSFILTER`.
//!
//! Restore joins again: any-source (`MCAST_JOIN_GROUP`, then `MCAST_BLOCK_SOURCE` per
//! excluded source) or source-specific (`MCAST_JOIN_SOURCE_GROUP` per included
//! source), on the same interface index (same host; a migration target must have the
//! interface at that index).

use serde_json::{json, Value};
use spirit_core::{Error, Result};
use spirit_kmod::sockopt;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;

/// One membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub ifindex: u32,
    pub group: IpAddr,
    /// EXCLUDE mode (any source but `sources`); INCLUDE mode otherwise (only `sources`).
    pub exclude: bool,
    pub sources: Vec<IpAddr>,
}

const SS: usize = 128;

fn storage(ip: IpAddr) -> [u8; SS] {
    let mut b = [0u8; SS];
    match ip {
        IpAddr::V4(a) => {
            b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[8..24].copy_from_slice(&a.octets());
        }
    }
    b
}

fn from_storage(b: &[u8]) -> Option<IpAddr> {
    let fam = u16::from_ne_bytes([b[0], b[1]]) as i32;
    match fam {
        libc::AF_INET => Some(IpAddr::from(<[u8; 4]>::try_from(&b[4..8]).ok()?)),
        libc::AF_INET6 => Some(IpAddr::from(<[u8; 16]>::try_from(&b[8..24]).ok()?)),
        _ => None,
    }
}

/// `struct group_req`: interface, then the group at offset 8.
fn group_req(ifindex: u32, group: IpAddr) -> Vec<u8> {
    let mut b = vec![0u8; 8 + SS];
    b[..4].copy_from_slice(&ifindex.to_ne_bytes());
    b[8..].copy_from_slice(&storage(group));
    b
}

fn level(family: i32) -> i32 {
    if family == libc::AF_INET6 {
        libc::SOL_IPV6
    } else {
        libc::SOL_IP
    }
}

/// The groups joined on each interface of the namespace of `pid`, for `family`.
fn joined_groups(net_dir: &str, family: i32) -> Vec<(u32, IpAddr)> {
    let mut out = Vec::new();
    if family == libc::AF_INET {
        let Ok(t) = std::fs::read_to_string(format!("{net_dir}/igmp")) else {
            return out;
        };
        let mut idx = None;
        for line in t.lines().skip(1) {
            if !line.starts_with('\t') {
                idx = line.split_whitespace().next().and_then(|s| s.parse().ok());
                continue;
            }
            let (Some(i), Some(g)) = (idx, line.split_whitespace().next()) else {
                continue;
            };
            if let Ok(v) = u32::from_str_radix(g, 16) {
                out.push((i, IpAddr::from(v.to_ne_bytes())));
            }
        }
    } else {
        let Ok(t) = std::fs::read_to_string(format!("{net_dir}/igmp6")) else {
            return out;
        };
        for line in t.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 3 || f[2].len() != 32 {
                continue;
            }
            let (Ok(i), mut b) = (f[0].parse::<u32>(), [0u8; 16]) else {
                continue;
            };
            if (0..16).all(|k| {
                u8::from_str_radix(&f[2][2 * k..2 * k + 2], 16)
                    .map(|v| b[k] = v)
                    .is_ok()
            }) {
                out.push((i, IpAddr::from(b)));
            }
        }
    }
    out
}

/// The memberships of `sock` (a datagram socket of `family`) among the groups joined
/// in the namespace whose /proc net directory is `net_dir`.
pub fn dump(sock: BorrowedFd<'_>, family: i32, net_dir: &str) -> Vec<Membership> {
    let lv = level(family);
    let mut out = Vec::new();
    for (ifindex, group) in joined_groups(net_dir, family) {
        let req = group_req(ifindex, group);
        match sockopt::setsockopt_raw(sock, lv, libc::MCAST_JOIN_GROUP, &req) {
            Ok(()) => {
                let _ = sockopt::setsockopt_raw(sock, lv, libc::MCAST_LEAVE_GROUP, &req);
                continue;
            }
            Err(e) if e.errno() == Some(nix::errno::Errno::EADDRINUSE) => {}
            Err(_) => continue,
        }
        // struct group_filter: interface, group @8, fmode @136, numsrc @140, slist @144.
        let mut b = vec![0u8; 144 + 64 * SS];
        b[..8 + SS].copy_from_slice(&req);
        b[140..144].copy_from_slice(&64u32.to_ne_bytes());
        let (exclude, sources) =
            match sockopt::getsockopt_raw(sock, lv, libc::MCAST_MSFILTER, &mut b) {
                Ok(_) => {
                    let mode = u32::from_ne_bytes([b[136], b[137], b[138], b[139]]);
                    let n = u32::from_ne_bytes([b[140], b[141], b[142], b[143]]).min(64) as usize;
                    let srcs = (0..n)
                        .filter_map(|k| from_storage(&b[144 + k * SS..144 + (k + 1) * SS]))
                        .collect();
                    (mode == libc::MCAST_EXCLUDE as u32, srcs)
                }
                Err(_) => (true, Vec::new()),
            };
        out.push(Membership {
            ifindex,
            group,
            exclude,
            sources,
        });
    }
    out
}

/// Join the groups again on a new socket of `family`.
pub fn restore(sock: BorrowedFd<'_>, family: i32, ms: &[Membership]) -> Result<()> {
    let lv = level(family);
    let err = |m: &Membership, e: spirit_kmod::Error| {
        Error::Restore(format!(
            "joining multicast group {} on interface {}: {e}",
            m.group, m.ifindex
        ))
    };
    for m in ms {
        let req = group_req(m.ifindex, m.group);
        if m.exclude {
            sockopt::setsockopt_raw(sock, lv, libc::MCAST_JOIN_GROUP, &req)
                .map_err(|e| err(m, e))?;
        }
        for s in &m.sources {
            let mut b = req.clone();
            b.extend_from_slice(&storage(*s));
            let opt = if m.exclude {
                libc::MCAST_BLOCK_SOURCE
            } else {
                libc::MCAST_JOIN_SOURCE_GROUP
            };
            sockopt::setsockopt_raw(sock, lv, opt, &b).map_err(|e| err(m, e))?;
        }
    }
    Ok(())
}

pub fn show(ms: &[Membership]) -> Value {
    ms.iter()
        .map(|m| {
            json!({
                "ifindex": m.ifindex,
                "group": m.group.to_string(),
                "mode": if m.exclude { "exclude" } else { "include" },
                "sources": m.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect()
}
