//! What the kernel tells of every unix socket of this network namespace, by
//! `sock_diag` (NETLINK_SOCK_DIAG, `unix_diag`): type, state, name, the socket file
//! (VFS inode), the peer's inode, the clients queued on a listener (ICONS), queue
//! lengths and shutdown state. One dump request per checkpoint, parsed here (the
//! request and its answer are a few fixed structs and attributes).

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use spirit_core::{Error, Result};
use std::collections::HashMap;
use std::os::fd::AsRawFd;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_VFS: u32 = 2;
const UDIAG_SHOW_PEER: u32 = 4;
const UDIAG_SHOW_ICONS: u32 = 8;
const UDIAG_SHOW_RQLEN: u32 = 0x10;

const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// One unix socket as sock_diag reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixInfo {
    pub ino: u64,
    pub ty: u8,
    pub state: u8,
    /// The name as bound: a path (no trailing NUL) or `\0`+abstract name; empty if none.
    pub name: Vec<u8>,
    /// The socket file's inode and device (kernel encoding), for a path name.
    pub vfs: Option<(u64, u32)>,
    pub peer: u64,
    /// Listeners: the inodes of the clients whose connections wait to be accepted.
    pub icons: Vec<u64>,
    /// Listeners: (connections queued, backlog); others: (bytes or datagram to read,
    /// bytes sent not yet read by the peer).
    pub rqlen: (u32, u32),
    pub shutdown: u8,
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Dump {
        pid: 0,
        msg: format!(
            "listing unix sockets through sock_diag (NETLINK_SOCK_DIAG) failed: {what}: {e}; spirit needs CONFIG_UNIX_DIAG"
        ),
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
        .unwrap_or(0)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map(|x| u16::from_ne_bytes([x[0], x[1]]))
        .unwrap_or(0)
}

/// Every unix socket of this network namespace, by inode.
pub fn unix_sockets() -> Result<HashMap<u64, UnixInfo>> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(|e| err("socket", e))?;
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.push(libc::AF_UNIX as u8);
    req.push(0);
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // ino
    let show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // no cookie
    sendto(
        sock.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| err("send", e))?;
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|e| err("recv", e))?;
        if n == 0 {
            return Err(err("recv", "end of stream before NLMSG_DONE"));
        }
        let mut off = 0;
        while off + 16 <= n {
            let len = u32_at(&buf, off) as usize;
            let ty = u16_at(&buf, off + 4);
            if len < 16 || off + len > n {
                return Err(err("parse", "truncated message"));
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = u32_at(&buf, off + 16) as i32;
                    return Err(err("request", nix::errno::Errno::from_raw(-code)));
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(info) = parse_one(&buf[off + 16..off + len]) {
                        out.insert(info.ino, info);
                    }
                }
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
}

fn parse_one(m: &[u8]) -> Option<UnixInfo> {
    if m.len() < 16 {
        return None;
    }
    let mut info = UnixInfo {
        ty: m[1],
        state: m[2],
        ino: u32_at(m, 4) as u64,
        ..Default::default()
    };
    let mut off = 16;
    while off + 4 <= m.len() {
        let len = u16_at(m, off) as usize;
        let ty = u16_at(m, off + 2);
        if len < 4 || off + len > m.len() {
            break;
        }
        let p = &m[off + 4..off + len];
        match ty {
            UNIX_DIAG_NAME => {
                let mut name = p.to_vec();
                if name.first() != Some(&0) {
                    while name.last() == Some(&0) {
                        name.pop();
                    }
                }
                info.name = name;
            }
            UNIX_DIAG_VFS => info.vfs = Some((u32_at(p, 0) as u64, u32_at(p, 4))),
            UNIX_DIAG_PEER => info.peer = u32_at(p, 0) as u64,
            UNIX_DIAG_ICONS => {
                info.icons = p.chunks_exact(4).map(|c| u32_at(c, 0) as u64).collect()
            }
            UNIX_DIAG_RQLEN => info.rqlen = (u32_at(p, 0), u32_at(p, 4)),
            UNIX_DIAG_SHUTDOWN => info.shutdown = p.first().copied().unwrap_or(0),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn ino(fd: &impl AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[test]
    fn a_pair_a_listener_and_a_queued_client() {
        let (a, b) = UnixStream::pair().unwrap();
        let dir = std::env::temp_dir().join(format!("spirit-diag-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let l = UnixListener::bind(&dir).unwrap();
        let c = UnixStream::connect(&dir).unwrap();
        let all = unix_sockets().unwrap();
        let _ = std::fs::remove_file(&dir);
        let (ia, ib, il, ic) = (ino(&a), ino(&b), ino(&l), ino(&c));
        assert_eq!(all[&ia].peer, ib);
        assert_eq!(all[&ib].peer, ia);
        assert_eq!(all[&il].state, 10);
        assert_eq!(all[&il].icons, vec![ic]);
        assert_eq!(all[&il].name, dir.as_os_str().as_encoded_bytes());
        assert!(all[&il].vfs.is_some());
        // The client's peer is the embryo waiting in the listener's queue: it has no
        // inode yet.
        assert_eq!((all[&ic].peer, all[&ic].state), (0, 1));
    }
}
