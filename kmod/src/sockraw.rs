//! Raw socket options and socket ioctls that nix does not wrap: options read and
//! written as plain bytes (`TCP_INFO`, `TCP_REPAIR_WINDOW`, `TCP_REPAIR_OPTIONS`,
//! `TCP_CONGESTION`...) and the queue-size ioctls (`SIOCINQ`, `SIOCOUTQ`,
//! `SIOCOUTQNSD`). The sockets plugin builds its TCP repair and option handling on
//! these; each returns plain values or an error naming the call.

use crate::error::{check, Result};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `getsockopt(level, name)` into `buf`; returns the length the kernel wrote.
pub fn getsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    buf: &mut [u8],
) -> Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for `len` bytes and `len` is a live local the kernel
    // updates with the length written.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    check("getsockopt", 0, ret as i64)?;
    Ok((len as usize).min(buf.len()))
}

/// `setsockopt(level, name)` with `data` as the option value.
pub fn setsockopt_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, data: &[u8]) -> Result<()> {
    // SAFETY: the kernel reads `data.len()` bytes from a live slice.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            data.as_ptr().cast(),
            data.len() as libc::socklen_t,
        )
    };
    check("setsockopt", 0, ret as i64).map(|_| ())
}

/// An `int` option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> Result<i32> {
    let mut b = [0u8; 4];
    getsockopt_bytes(fd, level, name, &mut b)?;
    Ok(i32::from_ne_bytes(b))
}

/// Set an `int` option.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, v: i32) -> Result<()> {
    setsockopt_bytes(fd, level, name, &v.to_ne_bytes())
}

/// An ioctl that writes one `int` (`SIOCINQ`, `SIOCOUTQ`, `SIOCOUTQNSD`).
pub fn ioctl_get_int(fd: BorrowedFd<'_>, request: u64) -> Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: the ioctls accepted here write one int to the valid pointer given.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut n as *mut libc::c_int) };
    check("ioctl", 0, ret as i64)?;
    Ok(n)
}

/// `socket(domain, type, protocol)` with any protocol number (nix's `SockProtocol`
/// lacks UDPLite and ICMP ping), close-on-exec.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<std::os::fd::OwnedFd> {
    // SAFETY: integers only.
    let ret = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    let fd = check("socket", 0, ret as i64)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}
