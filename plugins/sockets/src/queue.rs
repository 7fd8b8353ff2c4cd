//! The data a unix socket has to read: peeked at checkpoint, sent again at restore.
//!
//! Data queued for reading by a socket sits in its own receive queue. It is read
//! without being consumed: `SO_PEEK_OFF` (set on the copy, put back as it was after)
//! makes each `MSG_PEEK` read continue where the last one ended, one datagram or one
//! run of stream data at a time, with the descriptors in flight (SCM_RIGHTS) each
//! message carries. Those are kept when they can be opened again by path (regular
//! files, directories, devices) or are unix sockets (of the tree, or only in flight:
//! then recorded in full too), else the checkpoint is refused naming them.
//! At restore the messages are sent again, in order, from the peer end, or for a
//! datagram socket that is not connected, from the socket of the tree whose name the
//! datagram came from (else from an unnamed socket).

use crate::model::{InFlight, Message};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use spirit_core::{Error, Result};
use spirit_kmod::sockopt::{getsockopt_int, recv_with_fds, setsockopt_int};
use std::collections::HashMap;
use std::io::{IoSlice, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

const MAX_MESSAGES: usize = 1 << 16;

/// Unix sockets found in flight: (inode, a copy of it).
pub type SocketsInFlight = Vec<(u64, OwnedFd)>;

/// Every message `sock` has to read (left in place), and the sockets in flight in them.
pub fn peek_all(
    sock: &OwnedFd,
    ty: u8,
    pid: i32,
    what: &str,
) -> Result<(Vec<Message>, SocketsInFlight)> {
    let fd = sock.as_fd();
    let fail = |step: &str, e: &dyn std::fmt::Display| Error::Dump {
        pid,
        msg: format!("{what}: reading its queued data ({step}): {e}"),
    };
    let orig = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).unwrap_or(-1);
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .map_err(|e| fail("SO_PEEK_OFF", &e))?;
    let got = peek_loop(sock, ty, pid, what);
    let back = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, orig);
    let got = got?;
    back.map_err(|e| fail("putting SO_PEEK_OFF back", &e))?;
    Ok(got)
}

fn peek_loop(
    sock: &OwnedFd,
    ty: u8,
    pid: i32,
    what: &str,
) -> Result<(Vec<Message>, SocketsInFlight)> {
    let fail = |msg: String| Error::Dump {
        pid,
        msg: format!("{what}: {msg}"),
    };
    let stream = ty as i32 == libc::SOCK_STREAM;
    let mut buf = vec![0u8; 4 << 20];
    let mut out = Vec::new();
    let mut socks = Vec::new();
    loop {
        let r = match recv_with_fds(
            sock.as_fd(),
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(r) => r,
            Err(e) if e.errno() == Some(nix::errno::Errno::EAGAIN) => break,
            Err(e) => return Err(fail(format!("reading its queued data: {e}"))),
        };
        if r.truncated {
            return Err(fail("a queued datagram is larger than 4 MiB".into()));
        }
        if r.len == 0 && r.fds.is_empty() {
            if stream {
                break; // end of stream: the peer is gone or shut its side
            }
            return Err(fail(
                "an empty datagram is queued, which spirit cannot read past without consuming it"
                    .into(),
            ));
        }
        let mut files = Vec::new();
        for f in r.fds {
            let rec = in_flight(&f).map_err(fail)?;
            if rec.socket != 0 {
                socks.push((rec.socket, f));
            }
            files.push(rec);
        }
        out.push(Message {
            data: buf[..r.len].to_vec(),
            files,
            from: if stream { Vec::new() } else { r.from },
        });
        if out.len() > MAX_MESSAGES {
            return Err(fail(format!(
                "more than {MAX_MESSAGES} messages are queued"
            )));
        }
    }
    Ok((out, socks))
}

/// A descriptor in flight, as what can open it again.
fn in_flight(f: &OwnedFd) -> std::result::Result<InFlight, String> {
    let link = format!("/proc/self/fd/{}", f.as_raw_fd());
    let target = std::fs::read_link(&link)
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    let md = std::fs::metadata(&link).map_err(|e| format!("a descriptor in flight: {e}"))?;
    let ft = md.file_type();
    if ft.is_socket() {
        use std::os::unix::fs::MetadataExt;
        let domain = getsockopt_int(f.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(-1);
        if domain != libc::AF_UNIX {
            return Err(format!(
                "carries a socket in flight (SCM_RIGHTS) that is not a unix socket: {target}; let the program receive it first"
            ));
        }
        return Ok(InFlight {
            socket: md.ino(),
            ..Default::default()
        });
    }
    let by_path = (ft.is_file() || ft.is_dir() || ft.is_char_device())
        && target.starts_with('/')
        && !target.ends_with(" (deleted)")
        && !target.starts_with("/proc/")
        && !target.starts_with("/memfd:");
    if !by_path {
        return Err(format!(
            "carries a descriptor in flight (SCM_RIGHTS) that spirit cannot restore: {target}; only files, directories and devices opened by path can be in flight at a checkpoint (let the program receive it first)"
        ));
    }
    let flags = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| format!("reading the flags of {target} in flight: {e}"))?;
    let pos = if ft.is_file() {
        nix::unistd::lseek(f.as_raw_fd(), 0, nix::unistd::Whence::SeekCur).unwrap_or(0) as u64
    } else {
        0
    };
    Ok(InFlight {
        path: target,
        flags: flags as u32,
        pos,
        socket: 0,
    })
}

fn reopen(f: &InFlight, what: &str, sockets: &HashMap<u64, OwnedFd>) -> Result<OwnedFd> {
    if f.socket != 0 {
        let s = sockets.get(&f.socket).ok_or_else(|| {
            Error::Restore(format!(
                "{what}: socket:[{}] in flight was not made again",
                f.socket
            ))
        })?;
        return s
            .try_clone()
            .map_err(|e| Error::Restore(format!("{what}: socket:[{}] in flight: {e}", f.socket)));
    }
    let acc = f.flags as i32 & libc::O_ACCMODE;
    let keep =
        f.flags as i32 & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECTORY | libc::O_NOATIME);
    let mut file = std::fs::OpenOptions::new()
        .read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .custom_flags(keep | libc::O_NOCTTY)
        .open(&f.path)
        .map_err(|e| Error::Restore(format!("{what}: reopening {} (in flight): {e}", f.path)))?;
    if f.pos > 0 {
        file.seek(SeekFrom::Start(f.pos))
            .map_err(|e| Error::Restore(format!("{what}: seeking {} (in flight): {e}", f.path)))?;
    }
    Ok(file.into())
}

/// Send `queue` from `from` (to its peer, or to `to` by name), in order, with the
/// descriptors in flight opened again (sockets in flight taken from `sockets`).
pub fn refill(
    from: &OwnedFd,
    to: Option<&UnixAddr>,
    queue: &[Message],
    what: &str,
    sockets: &HashMap<u64, OwnedFd>,
) -> Result<()> {
    for m in queue {
        let files = m
            .files
            .iter()
            .map(|f| reopen(f, what, sockets))
            .collect::<Result<Vec<_>>>()?;
        let raws: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
        let mut sent = 0;
        let mut tries = 0;
        loop {
            let cmsg = [ControlMessage::ScmRights(&raws)];
            let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raws.is_empty() {
                &cmsg
            } else {
                &[]
            };
            let iov = [IoSlice::new(&m.data[sent..])];
            match sendmsg(
                from.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                to,
            ) {
                Ok(n) => {
                    sent += n;
                    if sent >= m.data.len() {
                        break;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) if tries < 8 => {
                    // The sender's buffer holds what its peer has not read: make room.
                    tries += 1;
                    let cur = getsockopt_int(from.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF)
                        .unwrap_or(1 << 16);
                    setsockopt_int(
                        from.as_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_SNDBUFFORCE,
                        cur.saturating_mul(2),
                    )
                    .map_err(|e| {
                        Error::Restore(format!(
                            "{what}: making room to queue its data again (SO_SNDBUFFORCE): {e}"
                        ))
                    })?;
                }
                Err(e) => {
                    return Err(Error::Restore(format!(
                        "{what}: queueing its {} unread bytes again: {e}",
                        m.data.len()
                    )))
                }
            }
        }
    }
    Ok(())
}
