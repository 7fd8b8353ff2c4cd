//! Terminal ioctls the tty plugin needs and nix does not wrap safely: the pty master's
//! own calls (`TIOCGPTN`, `TIOCGPTLCK`/`TIOCSPTLCK`, `TIOCGPTPEER`, `TIOCGPKT`/`TIOCPKT`),
//! the exclusive mode (`TIOCGEXCL`, `TIOCEXCL`/`TIOCNXCL`), the window size
//! (`TIOCGWINSZ`/`TIOCSWINSZ`), the controlling terminal (`TIOCSCTTY`), the session
//! (`TIOCGSID`) and the bytes waiting to be read (`FIONREAD`).
//!
//! Each call acts on a descriptor of this process; errors name the call (task 0 = this
//! process). Termios are read and set with nix (`tcgetattr`/`tcsetattr`).

use crate::error::{check, Result};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const TIOCGPTPEER: libc::c_ulong = 0x5441;

fn raw(fd: BorrowedFd<'_>) -> RawFd {
    fd.as_raw_fd()
}

fn get_int(fd: BorrowedFd<'_>, req: libc::c_ulong, call: &'static str) -> Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int to the valid pointer given.
    let ret = unsafe { libc::ioctl(raw(fd), req, &mut v as *mut libc::c_int) };
    check(call, 0, ret as i64)?;
    Ok(v)
}

fn set_int(fd: BorrowedFd<'_>, req: libc::c_ulong, v: i32, call: &'static str) -> Result<()> {
    let v: libc::c_int = v;
    // SAFETY: the request reads one int from the valid pointer given.
    let ret = unsafe { libc::ioctl(raw(fd), req, &v as *const libc::c_int) };
    check(call, 0, ret as i64).map(|_| ())
}

/// The pty index of a master (`TIOCGPTN`).
pub fn pty_index(master: impl AsFd) -> Result<u32> {
    Ok(get_int(master.as_fd(), libc::TIOCGPTN, "ioctl(TIOCGPTN)")? as u32)
}

/// Whether the pty's slave is locked (`TIOCGPTLCK`, on the master).
pub fn pty_locked(master: impl AsFd) -> Result<bool> {
    Ok(get_int(master.as_fd(), libc::TIOCGPTLCK, "ioctl(TIOCGPTLCK)")? != 0)
}

/// Lock or unlock the pty's slave (`TIOCSPTLCK`, on the master).
pub fn set_pty_locked(master: impl AsFd, locked: bool) -> Result<()> {
    set_int(
        master.as_fd(),
        libc::TIOCSPTLCK,
        i32::from(locked),
        "ioctl(TIOCSPTLCK)",
    )
}

/// Open the slave of a master without a path (`TIOCGPTPEER`); `flags` are open flags
/// (O_RDWR, O_NOCTTY, O_NONBLOCK, O_CLOEXEC).
pub fn open_peer(master: impl AsFd, flags: i32) -> Result<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes an integer argument and returns a new descriptor.
    let ret = unsafe { libc::ioctl(raw(master.as_fd()), TIOCGPTPEER, flags as libc::c_ulong) };
    let fd = check("ioctl(TIOCGPTPEER)", 0, ret as i64)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether packet mode is on (`TIOCGPKT`, on the master).
pub fn packet_mode(master: impl AsFd) -> Result<bool> {
    Ok(get_int(master.as_fd(), libc::TIOCGPKT, "ioctl(TIOCGPKT)")? != 0)
}

/// Turn packet mode on or off (`TIOCPKT`, on the master).
pub fn set_packet_mode(master: impl AsFd, on: bool) -> Result<()> {
    set_int(
        master.as_fd(),
        libc::TIOCPKT,
        i32::from(on),
        "ioctl(TIOCPKT)",
    )
}

/// Whether the terminal behind `fd` is in exclusive mode (`TIOCGEXCL`).
pub fn exclusive(fd: impl AsFd) -> Result<bool> {
    Ok(get_int(fd.as_fd(), libc::TIOCGEXCL, "ioctl(TIOCGEXCL)")? != 0)
}

/// Exclusive mode on (`TIOCEXCL`) or off (`TIOCNXCL`).
pub fn set_exclusive(fd: impl AsFd, on: bool) -> Result<()> {
    let (req, call) = if on {
        (libc::TIOCEXCL, "ioctl(TIOCEXCL)")
    } else {
        (libc::TIOCNXCL, "ioctl(TIOCNXCL)")
    };
    // SAFETY: TIOCEXCL/TIOCNXCL take no argument.
    let ret = unsafe { libc::ioctl(raw(fd.as_fd()), req) };
    check(call, 0, ret as i64).map(|_| ())
}

/// Window size: (rows, cols, xpixel, ypixel) (`TIOCGWINSZ`).
pub fn window_size(fd: impl AsFd) -> Result<[u16; 4]> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize to the valid pointer given.
    let ret = unsafe { libc::ioctl(raw(fd.as_fd()), libc::TIOCGWINSZ, &mut ws as *mut _) };
    check("ioctl(TIOCGWINSZ)", 0, ret as i64)?;
    Ok([ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel])
}

/// Set the window size (`TIOCSWINSZ`).
pub fn set_window_size(fd: impl AsFd, ws: [u16; 4]) -> Result<()> {
    let ws = libc::winsize {
        ws_row: ws[0],
        ws_col: ws[1],
        ws_xpixel: ws[2],
        ws_ypixel: ws[3],
    };
    // SAFETY: TIOCSWINSZ reads one struct winsize from the valid pointer given.
    let ret = unsafe { libc::ioctl(raw(fd.as_fd()), libc::TIOCSWINSZ, &ws as *const _) };
    check("ioctl(TIOCSWINSZ)", 0, ret as i64).map(|_| ())
}

/// Make the terminal behind `fd` the controlling terminal of this process's session
/// (`TIOCSCTTY`, this process must lead a session that has none; `steal` takes it from
/// another session and needs CAP_SYS_ADMIN).
pub fn set_controlling(fd: impl AsFd, steal: bool) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    let ret = unsafe { libc::ioctl(raw(fd.as_fd()), libc::TIOCSCTTY, libc::c_int::from(steal)) };
    check("ioctl(TIOCSCTTY)", 0, ret as i64).map(|_| ())
}

/// The session whose controlling terminal `fd` is (`TIOCGSID`).
pub fn session_of(fd: impl AsFd) -> Result<i32> {
    get_int(fd.as_fd(), libc::TIOCGSID, "ioctl(TIOCGSID)")
}

/// Bytes that a read of `fd` would return now (`FIONREAD`; on a slave in canonical mode
/// only complete lines count).
pub fn readable(fd: impl AsFd) -> Result<usize> {
    Ok(get_int(fd.as_fd(), libc::FIONREAD, "ioctl(FIONREAD)")?.max(0) as usize)
}

/// A new descriptor (close-on-exec) on what this process's descriptor number `fd`
/// refers to (`F_DUPFD_CLOEXEC`): an owned handle on a number parked by a restore.
pub fn dup_of(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: integers only; the result is a new descriptor.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    let new = check("fcntl(F_DUPFD_CLOEXEC)", 0, ret as i64)?;
    // SAFETY: the kernel just returned `new` as a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new as RawFd) })
}

/// The line discipline of the terminal behind `fd` (`TIOCGETD`; 0 is N_TTY).
pub fn line_discipline(fd: impl AsFd) -> Result<i32> {
    get_int(fd.as_fd(), libc::TIOCGETD, "ioctl(TIOCGETD)")
}
