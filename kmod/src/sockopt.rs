//! Socket calls the sockets plugin needs and nix does not wrap for every option: raw
//! `getsockopt`/`setsockopt` on byte buffers (any level and option: SO_PEEK_OFF,
//! SO_GET_FILTER, NETLINK_LIST_MEMBERSHIPS...), attaching a classic BPF filter (whose
//! `sock_fprog` holds a pointer), and the queue-size ioctls (SIOCINQ, SIOCOUTQ), and receiving with the descriptors a
//! message carries (SCM_RIGHTS), which must become owned descriptors.
//!
//! Errors name the call (task 0 = this process).

use crate::error::{check, Result};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockFlag, UnixAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `getsockopt(fd, level, name)` into `buf`; returns the length the kernel reported
/// (which may exceed `buf.len()` for options that report a needed size, as SO_GET_FILTER
/// does with an empty buffer: the instruction count).
pub fn getsockopt_raw(fd: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes to `buf` (valid for `buf.len()`)
    // and updates `len`, a live local.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len as *mut libc::socklen_t,
        )
    };
    check("getsockopt", 0, ret as i64)?;
    Ok(len as usize)
}

/// `setsockopt(fd, level, name, bytes)`.
pub fn setsockopt_raw(fd: BorrowedFd<'_>, level: i32, name: i32, bytes: &[u8]) -> Result<()> {
    // SAFETY: the kernel reads `bytes.len()` bytes from a valid slice.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    check("setsockopt", 0, ret as i64).map(|_| ())
}

/// An `int` option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> Result<i32> {
    let mut b = [0u8; 4];
    getsockopt_raw(fd, level, name, &mut b)?;
    Ok(i32::from_ne_bytes(b))
}

/// Set an `int` option.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, v: i32) -> Result<()> {
    setsockopt_raw(fd, level, name, &v.to_ne_bytes())
}

/// Attach the classic BPF program `insns` (8-byte `sock_filter` entries) with
/// `SO_ATTACH_FILTER`.
pub fn attach_filter(fd: BorrowedFd<'_>, insns: &[u8]) -> Result<()> {
    let n = insns.len() / 8;
    let filters: Vec<libc::sock_filter> = insns
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: n as u16,
        filter: filters.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filters`, alive for the call; the kernel copies both.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    check("setsockopt(SO_ATTACH_FILTER)", 0, ret as i64).map(|_| ())
}

/// An ioctl that writes one `int` (SIOCINQ, SIOCOUTQ, FIONREAD).
pub fn ioctl_int(fd: BorrowedFd<'_>, req: u64) -> Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: the request writes one int to the valid pointer given.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, &mut n as *mut libc::c_int) };
    check("ioctl", 0, ret as i64)?;
    Ok(n)
}

/// One message received by [`recv_with_fds`].
#[derive(Debug)]
pub struct Received {
    pub len: usize,
    /// Descriptors that came with it (SCM_RIGHTS), now this process's (close-on-exec).
    pub fds: Vec<OwnedFd>,
    /// The message was longer than the buffer (MSG_TRUNC).
    pub truncated: bool,
    /// A unix sender's name (a path, or a leading NUL and an abstract name; empty if
    /// unnamed or not given).
    pub from: Vec<u8>,
}

/// `recvmsg(fd, buf, flags | MSG_CMSG_CLOEXEC)` taking the descriptors passed with the
/// message (SCM_RIGHTS; with MSG_PEEK they are copies, the message keeps its own).
/// `want_from`: ask for the sender's name (datagram sockets; a stream socket gives none).
pub fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: MsgFlags,
    want_from: bool,
) -> Result<Received> {
    if !want_from {
        return recv_inner::<()>(fd, buf, flags);
    }
    recv_inner::<UnixAddr>(fd, buf, flags)
}

trait FromName {
    fn name_bytes(&self) -> Vec<u8>;
}

impl FromName for () {
    fn name_bytes(&self) -> Vec<u8> {
        Vec::new()
    }
}

impl FromName for UnixAddr {
    fn name_bytes(&self) -> Vec<u8> {
        match (self.path(), self.as_abstract()) {
            (Some(p), _) => p.as_os_str().as_encoded_bytes().to_vec(),
            (None, Some(n)) => {
                let mut v = vec![0u8];
                v.extend_from_slice(n);
                v
            }
            _ => Vec::new(),
        }
    }
}

fn recv_inner<S: nix::sys::socket::SockaddrLike + FromName>(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: MsgFlags,
) -> Result<Received> {
    let mut cmsg = nix::cmsg_space!([RawFd; 253]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<S>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|errno| crate::Error::Sys {
        call: "recvmsg",
        tid: 0,
        errno,
    })?;
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(v) = c {
                for raw in v {
                    // SAFETY: the kernel just installed `raw` in this process for this
                    // message; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
    }
    let from = msg.address.map(|a| a.name_bytes()).unwrap_or_default();
    Ok(Received {
        len: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        fds,
        from,
    })
}

/// `accept4(fd, SOCK_CLOEXEC)`.
pub fn accept_cloexec(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    let raw =
        nix::sys::socket::accept4(fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC).map_err(|errno| {
            crate::Error::Sys {
                call: "accept4",
                tid: 0,
                errno,
            }
        })?;
    // SAFETY: accept4 just returned `raw` as a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `socket(domain, ty | SOCK_CLOEXEC, protocol)` for any protocol number (nix names
/// only some netlink protocols).
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd> {
    // SAFETY: integers only.
    let ret = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    let fd = check("socket", 0, ret as i64)?;
    // SAFETY: socket just returned `fd` as a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A new descriptor (numbered `min` or above, close-on-exec) for whatever descriptor
/// number `fd` of this process is (one handed to it by number, like `--inherit-fd`).
pub fn dup_number(fd: RawFd, min: i32) -> Result<OwnedFd> {
    // SAFETY: integers only; `fd` is not taken over, only duplicated.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    let new = check("fcntl(F_DUPFD_CLOEXEC)", 0, ret as i64)?;
    // SAFETY: fcntl just returned `new` as a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new as RawFd) })
}
