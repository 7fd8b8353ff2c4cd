//! Socket calls the sockets plugin needs and nix does not wrap for every option: raw
//! `getsockopt`/`setsockopt` on byte buffers (any level and option: SO_PEEK_OFF,
//! SO_GET_FILTER, NETLINK_LIST_MEMBERSHIPS...), attaching a classic BPF filter (whose
//! `sock_fprog` holds a pointer), and the queue-size ioctls (SIOCINQ, SIOCOUTQ), and receiving with the descriptors a
//! message carries (SCM_RIGHTS), which must become owned descriptors.
//!
//! Errors name the call (task 0 = this process).

use crate::error::{check, Result};
use nix::sys::socket::{MsgFlags, SockFlag};
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
/// message (SCM_RIGHTS; with MSG_PEEK they are copies, the message keeps its own) and
/// the sender's name (datagram sockets; empty when unnamed or for a stream).
pub fn recv_with_fds(fd: BorrowedFd<'_>, buf: &mut [u8], flags: MsgFlags) -> Result<Received> {
    const FDS: usize = 253;
    // Room for one SCM_RIGHTS of 253 descriptors and one SCM_CREDENTIALS, aligned.
    let mut control = vec![0u64; (FDS * 4 + 64) / 8 + 8];
    // SAFETY: an all-zero sockaddr_un is a valid value.
    let mut name: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() * 8;
    // SAFETY: every pointer in `msg` points at live buffers of the sizes given.
    let ret = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            (flags | MsgFlags::MSG_CMSG_CLOEXEC).bits(),
        )
    };
    let len = check("recvmsg", 0, ret as i64)? as usize;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_controllen` bytes of `control` with well-formed
    // control messages; CMSG_FIRSTHDR/NXTHDR stay within it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..n {
                    // The kernel just installed this descriptor here for this message;
                    // nothing else owns it.
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let off = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let nlen = (msg.msg_namelen as usize)
        .saturating_sub(off)
        .min(name.sun_path.len());
    let mut from: Vec<u8> = name.sun_path[..nlen].iter().map(|&c| c as u8).collect();
    if from.first() != Some(&0) {
        while from.last() == Some(&0) {
            from.pop();
        }
    }
    Ok(Received {
        len,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
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
