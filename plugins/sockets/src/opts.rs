//! Every generic SOL_SOCKET option spirit keeps, in one place, for every family: read
//! from a `pidfd_getfd` copy of the socket at checkpoint, set on the new socket at
//! restore (after its queues are refilled: a filter must not drop what is put back, and
//! the buffer sizes must not stop it). Buffer sizes are kept as the user set them: the
//! kernel reports SO_SNDBUF/SO_RCVBUF doubled, so half is stored and setting it again
//! gives the same value. Options left at their defaults are not set again (some need
//! privileges even to be set to what they already are).

use crate::model::Options;
use spirit_core::{Error, Result};
use spirit_kmod::sockopt::{
    attach_filter, getsockopt_int, getsockopt_raw, setsockopt_int, setsockopt_raw,
};
use std::os::fd::{AsFd, BorrowedFd};

const SOL: i32 = libc::SOL_SOCKET;

/// The int-valued boolean options: (name for messages, option, field).
type BoolField = fn(&mut Options) -> &mut bool;
const BOOLS: [(&str, i32, BoolField); 8] = [
    ("SO_REUSEADDR", libc::SO_REUSEADDR, |o| &mut o.reuse_addr),
    ("SO_REUSEPORT", libc::SO_REUSEPORT, |o| &mut o.reuse_port),
    ("SO_KEEPALIVE", libc::SO_KEEPALIVE, |o| &mut o.keep_alive),
    ("SO_PASSCRED", libc::SO_PASSCRED, |o| &mut o.pass_cred),
    ("SO_PASSSEC", libc::SO_PASSSEC, |o| &mut o.pass_sec),
    ("SO_BROADCAST", libc::SO_BROADCAST, |o| &mut o.broadcast),
    ("SO_OOBINLINE", libc::SO_OOBINLINE, |o| &mut o.oob_inline),
    ("SO_TIMESTAMP", libc::SO_TIMESTAMP, |o| &mut o.timestamp),
];

fn timeo(fd: BorrowedFd<'_>, name: i32) -> i64 {
    let mut b = [0u8; 16];
    match getsockopt_raw(fd, SOL, name, &mut b) {
        Ok(16) => {
            let sec = i64::from_ne_bytes(b[..8].try_into().unwrap_or_default());
            let usec = i64::from_ne_bytes(b[8..].try_into().unwrap_or_default());
            sec * 1_000_000 + usec
        }
        _ => 0,
    }
}

/// Read every option of `sock` (an option the family does not have reads as default).
pub fn dump(sock: &impl AsFd) -> Options {
    let fd = sock.as_fd();
    let int = |name| getsockopt_int(fd, SOL, name).ok();
    let mut o = Options {
        peek_off: -1,
        ..Default::default()
    };
    for (_, name, field) in BOOLS {
        *field(&mut o) = int(name).unwrap_or(0) != 0;
    }
    o.snd_buf = (int(libc::SO_SNDBUF).unwrap_or(0).max(0) / 2) as u32;
    o.rcv_buf = (int(libc::SO_RCVBUF).unwrap_or(0).max(0) / 2) as u32;
    let mut l = [0u8; 8];
    if let Ok(8) = getsockopt_raw(fd, SOL, libc::SO_LINGER, &mut l) {
        if i32::from_ne_bytes([l[0], l[1], l[2], l[3]]) != 0 {
            o.linger = Some(i32::from_ne_bytes([l[4], l[5], l[6], l[7]]));
        }
    }
    o.priority = int(libc::SO_PRIORITY).unwrap_or(0);
    o.mark = int(libc::SO_MARK).unwrap_or(0) as u32;
    let mut dev = [0u8; 16];
    if let Ok(n) = getsockopt_raw(fd, SOL, libc::SO_BINDTODEVICE, &mut dev) {
        let n = n.min(16);
        o.bind_to_device = String::from_utf8_lossy(&dev[..n])
            .trim_end_matches('\0')
            .to_string();
    }
    o.rcv_lowat = int(libc::SO_RCVLOWAT).unwrap_or(1);
    o.rcv_timeo_us = timeo(fd, libc::SO_RCVTIMEO);
    o.snd_timeo_us = timeo(fd, libc::SO_SNDTIMEO);
    // SO_GET_FILTER with an empty buffer reports the instruction count.
    if let Ok(n) = getsockopt_raw(fd, SOL, libc::SO_GET_FILTER, &mut []) {
        if n > 0 {
            let mut f = vec![0u8; n * 8];
            if getsockopt_raw(fd, SOL, libc::SO_GET_FILTER, &mut f).is_ok() {
                o.filter = f;
            }
        }
    }
    o.filter_locked = int(libc::SO_LOCK_FILTER).unwrap_or(0) != 0;
    o.peek_off = int(libc::SO_PEEK_OFF).unwrap_or(-1);
    o
}

fn set_timeo(
    fd: BorrowedFd<'_>,
    name: i32,
    us: i64,
) -> std::result::Result<(), spirit_kmod::Error> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(us / 1_000_000).to_ne_bytes());
    b[8..].copy_from_slice(&(us % 1_000_000).to_ne_bytes());
    setsockopt_raw(fd, SOL, name, &b)
}

/// A buffer size as it was: TCP autotuning may have grown it past `wmem_max`/`rmem_max`,
/// which only the FORCE option (CAP_NET_ADMIN) sets again; without the capability, as
/// close as SO_SNDBUF/SO_RCVBUF allow.
fn set_buf(
    fd: BorrowedFd<'_>,
    opt: i32,
    force: i32,
    v: u32,
) -> std::result::Result<(), spirit_kmod::Error> {
    let v = v.min(i32::MAX as u32) as i32;
    setsockopt_int(fd, SOL, force, v).or_else(|_| setsockopt_int(fd, SOL, opt, v))
}

/// `o` without the buffer sizes `sock` already has or exceeds: a restored TCP
/// connection's queues were refilled into buffers grown to hold them, which must not
/// shrink under the data.
pub fn not_shrinking(sock: &impl AsFd, o: &Options) -> Options {
    let cur = |opt| getsockopt_int(sock.as_fd(), SOL, opt).unwrap_or(0).max(0) as u32 / 2;
    let mut o = o.clone();
    if cur(libc::SO_SNDBUF) >= o.snd_buf {
        o.snd_buf = 0;
    }
    if cur(libc::SO_RCVBUF) >= o.rcv_buf {
        o.rcv_buf = 0;
    }
    o
}

/// Set `o` on `sock`; `what` names the socket in messages (process, fd, kind).
pub fn restore(sock: &impl AsFd, o: &Options, what: &str) -> Result<()> {
    let fd = sock.as_fd();
    let fail = |opt: &str, e: spirit_kmod::Error| {
        Error::Restore(format!("{what}: setting {opt} again failed: {e}"))
    };
    let mut o2 = o.clone();
    for (name, opt, field) in BOOLS {
        if *field(&mut o2) {
            setsockopt_int(fd, SOL, opt, 1).map_err(|e| fail(name, e))?;
        }
    }
    if o.snd_buf > 0 {
        set_buf(fd, libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, o.snd_buf)
            .map_err(|e| fail("SO_SNDBUF", e))?;
    }
    if o.rcv_buf > 0 {
        set_buf(fd, libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, o.rcv_buf)
            .map_err(|e| fail("SO_RCVBUF", e))?;
    }
    if let Some(secs) = o.linger {
        let mut l = [0u8; 8];
        l[..4].copy_from_slice(&1i32.to_ne_bytes());
        l[4..].copy_from_slice(&secs.to_ne_bytes());
        setsockopt_raw(fd, SOL, libc::SO_LINGER, &l).map_err(|e| fail("SO_LINGER", e))?;
    }
    if o.priority != 0 {
        setsockopt_int(fd, SOL, libc::SO_PRIORITY, o.priority)
            .map_err(|e| fail("SO_PRIORITY", e))?;
    }
    if o.mark != 0 {
        setsockopt_int(fd, SOL, libc::SO_MARK, o.mark as i32).map_err(|e| fail("SO_MARK", e))?;
    }
    if !o.bind_to_device.is_empty() {
        setsockopt_raw(fd, SOL, libc::SO_BINDTODEVICE, o.bind_to_device.as_bytes())
            .map_err(|e| fail("SO_BINDTODEVICE", e))?;
    }
    if o.rcv_lowat > 1 {
        setsockopt_int(fd, SOL, libc::SO_RCVLOWAT, o.rcv_lowat)
            .map_err(|e| fail("SO_RCVLOWAT", e))?;
    }
    if o.rcv_timeo_us != 0 {
        set_timeo(fd, libc::SO_RCVTIMEO, o.rcv_timeo_us).map_err(|e| fail("SO_RCVTIMEO", e))?;
    }
    if o.snd_timeo_us != 0 {
        set_timeo(fd, libc::SO_SNDTIMEO, o.snd_timeo_us).map_err(|e| fail("SO_SNDTIMEO", e))?;
    }
    if !o.filter.is_empty() {
        attach_filter(fd, &o.filter).map_err(|e| fail("SO_ATTACH_FILTER", e))?;
        if o.filter_locked {
            setsockopt_int(fd, SOL, libc::SO_LOCK_FILTER, 1)
                .map_err(|e| fail("SO_LOCK_FILTER", e))?;
        }
    }
    if o.peek_off >= 0 {
        setsockopt_int(fd, SOL, libc::SO_PEEK_OFF, o.peek_off)
            .map_err(|e| fail("SO_PEEK_OFF", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn options_survive_a_round_trip() {
        let (a, _b) = UnixDatagram::pair().unwrap();
        let fd = a.as_fd();
        setsockopt_int(fd, SOL, libc::SO_SNDBUF, 50000).unwrap();
        setsockopt_int(fd, SOL, libc::SO_PASSCRED, 1).unwrap();
        setsockopt_int(fd, SOL, libc::SO_PRIORITY, 3).unwrap();
        setsockopt_int(fd, SOL, libc::SO_PEEK_OFF, 0).unwrap();
        set_timeo(fd, libc::SO_RCVTIMEO, 1_500_000).unwrap();
        // ret #0xffff: accept everything.
        attach_filter(fd, &[6, 0, 0, 0, 0xff, 0xff, 0, 0]).unwrap();
        let o = dump(&a);
        assert_eq!(o.snd_buf, 50000);
        assert!(o.pass_cred && !o.reuse_addr);
        assert_eq!((o.priority, o.peek_off, o.rcv_timeo_us), (3, 0, 1_500_000));
        assert_eq!(o.filter.len(), 8);
        let (c, _d) = UnixDatagram::pair().unwrap();
        restore(&c, &o, "test socket").unwrap();
        assert_eq!(dump(&c), o);
    }
}
