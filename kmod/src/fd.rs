//! Descriptor syscalls the files plugin needs and libc/nix do not wrap safely: comparing
//! open file descriptions across processes (`kcmp`), taking a copy of another process's
//! descriptor (`pidfd_open` + `pidfd_getfd`), peeking into a pipe (`tee`), and creating
//! the anonymous-inode files a restore rebuilds (memfd, eventfd, timerfd, signalfd,
//! epoll, inotify), resolving a file handle (`open_by_handle_at`) and taking locks.
//!
//! Every function returns an owned descriptor (closed on drop) or plain values; errors
//! name the call (task 0 = this process).

use crate::error::{check, Error, Result};
use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const KCMP_FILE: i64 = 0;

fn owned(call: &'static str, ret: i64) -> Result<OwnedFd> {
    let fd = check(call, 0, ret)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor of this process that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn cstr(call: &'static str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Unexpected {
        tid: 0,
        msg: format!("{call}: path {s:?} contains a NUL byte"),
    })
}

/// Whether fd `fd1` of `pid1` and fd `fd2` of `pid2` are the same open file description
/// (`kcmp(KCMP_FILE)`, needs ptrace read access to both).
pub fn kcmp_same_file(pid1: i32, fd1: i32, pid2: i32, fd2: i32) -> Result<bool> {
    // SAFETY: kcmp takes integers only.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) };
    Ok(check("kcmp", pid1, ret)? == 0)
}

/// A pidfd for process `pid`.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: integers only; the result is a new descriptor.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned("pidfd_open", ret).map_err(|e| retag(e, pid))
}

/// A copy, in this process, of descriptor `fd` of the process behind `pidfd` (same open
/// file description; needs ptrace attach rights on it).
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> Result<OwnedFd> {
    // SAFETY: integers only; the result is a new descriptor.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    owned("pidfd_getfd", ret)
}

fn retag(e: Error, tid: i32) -> Error {
    match e {
        Error::Sys { call, errno, .. } => Error::Sys { call, tid, errno },
        other => other,
    }
}

/// Duplicate up to `len` bytes from pipe `from` into pipe `to` without consuming them
/// (`tee(2)`, non-blocking). Returns the number of bytes duplicated (0: `from` is empty).
pub fn tee(from: &OwnedFd, to: &OwnedFd, len: usize) -> Result<usize> {
    // SAFETY: integers only.
    let ret = unsafe {
        libc::tee(
            from.as_raw_fd(),
            to.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    if ret < 0 && Errno::last() == Errno::EAGAIN {
        return Ok(0);
    }
    Ok(check("tee", 0, ret as i64)? as usize)
}

/// Bytes waiting to be read in a pipe (`FIONREAD`).
pub fn pipe_pending(fd: &OwnedFd) -> Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the valid pointer given.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    check("ioctl(FIONREAD)", 0, ret as i64)?;
    Ok(n.max(0) as usize)
}

/// The events pending on `fd` right now (`poll` with a zero timeout): `POLLHUP` on a
/// pipe's read end without writers, `POLLERR` on a write end without readers.
pub fn poll_now(fd: &OwnedFd, events: i16) -> Result<i16> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its count 1.
    let ret = unsafe { libc::poll(&mut p, 1, 0) };
    check("poll", 0, ret as i64)?;
    Ok(p.revents)
}

/// `struct f_owner_ex` and the fcntl commands on it (`linux/fcntl.h`; not in libc for
/// every target).
#[repr(C)]
struct FOwnerEx {
    kind: i32,
    pid: i32,
}
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;

/// Who gets SIGIO/SIGURG for the open file description of `fd` (`F_GETOWN_EX`: type
/// `F_OWNER_TID`/`PID`/`PGRP` and id; id 0: nobody) and which signal (`F_GETSIG`, 0:
/// SIGIO).
pub fn owner(fd: &OwnedFd) -> Result<(i32, i32, i32)> {
    let mut o = FOwnerEx { kind: 0, pid: 0 };
    // SAFETY: F_GETOWN_EX writes one f_owner_ex to the valid pointer given.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut o as *mut _) };
    check("fcntl(F_GETOWN_EX)", 0, ret as i64)?;
    // SAFETY: integers only.
    let sig = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    let sig = check("fcntl(F_GETSIG)", 0, sig as i64)?;
    Ok((o.kind, o.pid, sig as i32))
}

/// Set what [`owner`] reads: the signal, then the owner.
pub fn set_owner(fd: RawFd, kind: i32, id: i32, sig: i32) -> Result<()> {
    // SAFETY: integers only.
    let ret = unsafe { libc::fcntl(fd, F_SETSIG, sig) };
    check("fcntl(F_SETSIG)", 0, ret as i64)?;
    let o = FOwnerEx { kind, pid: id };
    // SAFETY: F_SETOWN_EX reads one f_owner_ex from the valid pointer given.
    let ret = unsafe { libc::fcntl(fd, F_SETOWN_EX, &o as *const _) };
    check("fcntl(F_SETOWN_EX)", 0, ret as i64)?;
    Ok(())
}

/// The lease held through `fd` (`F_GETLEASE`: `F_RDLCK`, `F_WRLCK` or `F_UNLCK`).
pub fn lease(fd: &OwnedFd) -> Result<i32> {
    // SAFETY: integers only.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLEASE) };
    Ok(check("fcntl(F_GETLEASE)", 0, ret as i64)? as i32)
}

/// Take a lease of type `kind` through `fd` (`F_SETLEASE`).
pub fn set_lease(fd: RawFd, kind: i32) -> Result<()> {
    // SAFETY: integers only.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETLEASE, kind) };
    check("fcntl(F_SETLEASE)", 0, ret as i64).map(|_| ())
}

/// `memfd_create(name, flags)`.
pub fn memfd_create(name: &str, flags: u32) -> Result<OwnedFd> {
    let c = cstr("memfd_create", name)?;
    let flags = nix::sys::memfd::MemFdCreateFlag::from_bits_retain(flags as libc::c_uint);
    nix::sys::memfd::memfd_create(&c, flags).map_err(|errno| Error::Sys {
        call: "memfd_create",
        tid: 0,
        errno,
    })
}

/// `eventfd(0, flags)` then the counter set to `count` (which may exceed 32 bits).
pub fn eventfd(count: u64, flags: i32) -> Result<OwnedFd> {
    // SAFETY: integers only.
    let ret = unsafe { libc::eventfd(0, flags | libc::EFD_NONBLOCK) };
    let fd = owned("eventfd", ret as i64)?;
    if count > 0 {
        nix::unistd::write(&fd, &count.to_ne_bytes()).map_err(|errno| Error::Sys {
            call: "write(eventfd)",
            tid: 0,
            errno,
        })?;
    }
    if flags & libc::EFD_NONBLOCK == 0 {
        set_status_flags(&fd, 0)?;
    }
    Ok(fd)
}

/// Set the file status flags (`F_SETFL`: O_NONBLOCK, O_APPEND, O_ASYNC, O_DIRECT,
/// O_NOATIME) of `fd`.
pub fn set_status_flags(fd: &OwnedFd, flags: i32) -> Result<()> {
    let flags = nix::fcntl::OFlag::from_bits_retain(flags);
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))
        .map(|_| ())
        .map_err(|errno| Error::Sys {
            call: "fcntl(F_SETFL)",
            tid: 0,
            errno,
        })
}

/// `timerfd_create(clock, flags)`.
pub fn timerfd_create(clock: i32, flags: i32) -> Result<OwnedFd> {
    // SAFETY: integers only.
    let ret = unsafe { libc::timerfd_create(clock, flags) };
    owned("timerfd_create", ret as i64)
}

fn ts(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// Arm `fd` relative to now: first expiry in `value_ns` (0 disarms), then every
/// `interval_ns`.
pub fn timerfd_settime(fd: &OwnedFd, value_ns: u64, interval_ns: u64) -> Result<()> {
    let spec = libc::itimerspec {
        it_interval: ts(interval_ns),
        it_value: ts(value_ns),
    };
    // SAFETY: `spec` is valid for the call; the old-value pointer may be null.
    let ret = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    check("timerfd_settime", 0, ret as i64).map(|_| ())
}

/// Set the count of expirations not yet read (`TFD_IOC_SET_TICKS`).
pub fn timerfd_set_ticks(fd: &OwnedFd, ticks: u64) -> Result<()> {
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400; // _IOW('T', 0, u64)
                                                          // SAFETY: the ioctl reads one u64 from the valid pointer given.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) };
    check("ioctl(TFD_IOC_SET_TICKS)", 0, ret as i64).map(|_| ())
}

/// A new signalfd for the signals in `mask` (bit N-1 = signal N).
pub fn signalfd(mask: u64, flags: i32) -> Result<OwnedFd> {
    // SAFETY: the kernel reads 8 bytes of sigset from the valid pointer given.
    let ret = unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, flags) };
    owned("signalfd4", ret)
}

/// `epoll_create1(flags)`.
pub fn epoll_create(flags: i32) -> Result<OwnedFd> {
    // SAFETY: integers only.
    let ret = unsafe { libc::epoll_create1(flags) };
    owned("epoll_create1", ret as i64)
}

/// Watch descriptor `fd` (a number of this process) from epoll `ep`.
pub fn epoll_add(ep: &OwnedFd, fd: RawFd, events: u32, data: u64) -> Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is valid for the call.
    let ret = unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    check("epoll_ctl(EPOLL_CTL_ADD)", 0, ret as i64).map(|_| ())
}

/// `inotify_init1(flags)`.
pub fn inotify_init(flags: i32) -> Result<OwnedFd> {
    // SAFETY: integers only.
    let ret = unsafe { libc::inotify_init1(flags) };
    owned("inotify_init1", ret as i64)
}

/// Add a watch; returns its watch descriptor.
pub fn inotify_add_watch(fd: &OwnedFd, path: &str, mask: u32) -> Result<i32> {
    let c = cstr("inotify_add_watch", path)?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let ret = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    check("inotify_add_watch", 0, ret as i64).map(|w| w as i32)
}

/// Remove watch `wd`.
pub fn inotify_rm_watch(fd: &OwnedFd, wd: i32) -> Result<()> {
    // SAFETY: integers only.
    let ret = unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
    check("inotify_rm_watch", 0, ret as i64).map(|_| ())
}

/// Open the file a file handle names (`open_by_handle_at`, needs CAP_DAC_READ_SEARCH),
/// with `mount` any descriptor on its filesystem.
pub fn open_by_handle(
    mount: &OwnedFd,
    handle_type: i32,
    handle: &[u8],
    flags: i32,
) -> Result<OwnedFd> {
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle_type.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: `buf` holds a complete struct file_handle of the length it declares.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            buf.as_mut_ptr(),
            flags,
        )
    };
    owned("open_by_handle_at", ret)
}

/// `flock(fd, op)` (LOCK_SH / LOCK_EX, with LOCK_NB).
pub fn flock(fd: RawFd, op: i32) -> Result<()> {
    // SAFETY: integers only.
    let ret = unsafe { libc::flock(fd, op) };
    check("flock", 0, ret as i64).map(|_| ())
}

/// A byte-range lock on `fd` (`cmd` F_SETLK or F_OFD_SETLK; `len` 0 = to end of file).
pub fn range_lock(fd: RawFd, cmd: i32, write: bool, start: u64, len: u64) -> Result<()> {
    // SAFETY: an all-zero flock is a valid value (the OFD commands need l_pid 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: `fl` is valid for the call.
    let ret = unsafe { libc::fcntl(fd, cmd, &fl as *const libc::flock) };
    check("fcntl(lock)", 0, ret as i64).map(|_| ())
}

/// A duplicate of `fd` numbered `min` or above (`F_DUPFD_CLOEXEC`).
pub fn dup_above(fd: &OwnedFd, min: i32) -> Result<OwnedFd> {
    // SAFETY: integers only; the result is a new descriptor.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    owned("fcntl(F_DUPFD_CLOEXEC)", ret as i64)
}

/// Whether the file epoll instance `epfd` of `pid` watches under number `tfd` is the
/// file now open as `tfd` in that process (`kcmp(KCMP_EPOLL_TFD)`): false when `tfd`
/// was closed, or reused for another file, after it was added.
pub fn epoll_target_is_current(pid: i32, epfd: i32, tfd: i32) -> Result<bool> {
    const KCMP_EPOLL_TFD: i64 = 7;
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff: 0,
    };
    // SAFETY: the kernel reads one kcmp_epoll_slot from the valid pointer given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_EPOLL_TFD,
            tfd,
            &slot as *const Slot,
        )
    };
    Ok(check("kcmp(KCMP_EPOLL_TFD)", pid, ret)? == 0)
}

/// A POSIX message queue descriptor taking ownership of `fd` (on Linux an `mqd_t` is
/// the queue's file descriptor), for nix's `mq_*` calls on a queue received as a plain
/// descriptor (e.g. over D-Bus).
pub fn mqd_from(fd: OwnedFd) -> nix::mqueue::MqdT {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the descriptor is owned and handed over (into_raw_fd), so the MqdT is its
    // only owner and closes it once.
    unsafe { nix::mqueue::MqdT::from_raw_fd(fd.into_raw_fd()) }
}
