//! TCP sockets: established connections through TCP_REPAIR, listening sockets, and
//! sockets that are only bound (or not even that).
//!
//! The repair sequence is the one measured in KERNEL-NOTES.md ("TCP repair"):
//! - dump (socket already in repair mode, its flow held by the network lock): receive
//!   queue (TCP_QUEUE_SEQ = rcv_nxt, SIOCINQ, peek), send queue (TCP_QUEUE_SEQ =
//!   write_seq, SIOCOUTQ, SIOCOUTQNSD for the unsent tail, peek), options from TCP_INFO
//!   and TCP_MAXSEG (getsockopt(TCP_REPAIR_OPTIONS) is ENOPROTOOPT), TCP_TIMESTAMP,
//!   TCP_REPAIR_WINDOW;
//! - restore: socket, repair on, bind, both queue sequence numbers (only before
//!   connect), connect (ESTABLISHED at once, no SYN), TCP_REPAIR_OPTIONS, TCP_TIMESTAMP,
//!   the receive queue, TCP_REPAIR_WINDOW (only once the receive queue is refilled),
//!   the sent-but-unacknowledged part of the send queue; [`release`] later turns repair
//!   off (a window probe) and queues the unsent tail with a normal send.
//!
//! States: ESTABLISHED, LISTEN and CLOSE are restored, and the half-closed and closing
//! ones, rebuilt as ESTABLISHED without their FINs: FIN_WAIT1/FIN_WAIT2 (the program
//! shut down writing) get theirs sent again after the data by [`release`]
//! (`shutdown(SHUT_WR)`; the peer takes it for a retransmission); CLOSE_WAIT (the peer
//! did) gets the peer's FIN replayed (fin.rs); LAST_ACK and CLOSING get both, in the
//! order they came. A listener's accept queue (connections the kernel completed but
//! the program did not accept) cannot be rebuilt and is refused; SYN_SENT and
//! SYN_RECV are refused naming the state.

use super::{bind_to, InetRecord};
use serde_json::{json, Value};
use spirit_core::{Error, Result};
use spirit_kmod::sockopt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

pub const ESTABLISHED: u8 = 1;
pub const FIN_WAIT1: u8 = 4;
pub const FIN_WAIT2: u8 = 5;
pub const CLOSE_WAIT: u8 = 8;
pub const LAST_ACK: u8 = 9;
pub const CLOSING: u8 = 11;
pub const CLOSE: u8 = 7;
pub const LISTEN: u8 = 10;

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const NO_QUEUE: i32 = 0;
const RECV_QUEUE: i32 = 1;
const SEND_QUEUE: i32 = 2;
const SIOCINQ: u64 = 0x541B;
const SIOCOUTQ: u64 = 0x5411;
const SIOCOUTQNSD: u64 = 0x894B;
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
const TCPOPT_MSS: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
/// Queues are refilled in chunks of this size.
const CHUNK: usize = 64 * 1024;

/// The kernel's name of a TCP state.
pub fn state_name(s: u8) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// What TCP_INFO says that matters here.
#[derive(Clone, Copy, Debug, Default)]
pub struct Info {
    pub state: u8,
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// LISTEN: connections waiting in the accept queue.
    pub unacked: u32,
    /// LISTEN: the backlog.
    pub sacked: u32,
}

fn sys(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Restore(format!("{what}: {e}"))
}

pub fn info(fd: BorrowedFd<'_>) -> Result<Info> {
    let mut b = [0u8; 104];
    let n = sockopt::getsockopt_raw(fd, libc::SOL_TCP, libc::TCP_INFO, &mut b)
        .map(|n| n.min(b.len()))
        .map_err(|e| sys("getsockopt(TCP_INFO)", e))?;
    if n < 32 {
        return Err(sys("getsockopt(TCP_INFO)", format!("only {n} bytes")));
    }
    let u32at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    Ok(Info {
        state: b[0],
        options: b[5],
        snd_wscale: b[6] & 0xf,
        rcv_wscale: b[6] >> 4,
        unacked: u32at(24),
        sacked: u32at(28),
    })
}

/// Turn repair mode on or off (acts on the socket: any descriptor of it will do).
pub fn set_repair(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    sockopt::setsockopt_int(fd, libc::SOL_TCP, TCP_REPAIR, on as i32).map_err(|e| {
        sys(
            if on {
                "TCP_REPAIR on"
            } else {
                "TCP_REPAIR off"
            },
            e,
        )
    })
}

fn select_queue(fd: BorrowedFd<'_>, q: i32) -> Result<()> {
    sockopt::setsockopt_int(fd, libc::SOL_TCP, TCP_REPAIR_QUEUE, q)
        .map_err(|e| sys("TCP_REPAIR_QUEUE", e))
}

fn ioctl(fd: BorrowedFd<'_>, req: u64, what: &str) -> Result<usize> {
    let n = sockopt::ioctl_int(fd, req).map_err(|e| sys(what, e))?;
    Ok(n.max(0) as usize)
}

fn peek(fd: BorrowedFd<'_>, len: usize, what: &str) -> Result<Vec<u8>> {
    use nix::sys::socket::{recv, MsgFlags};
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    let n = recv(
        fd.as_raw_fd(),
        &mut buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(|e| sys(what, e))?;
    if n != len {
        return Err(sys(what, format!("peeked {n} of {len} queued bytes")));
    }
    Ok(buf)
}

/// An established connection's repair state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpConn {
    pub snd_seq: u32,
    pub rcv_seq: u32,
    pub send_queue: Vec<u8>,
    pub unsent: u32,
    pub recv_queue: Vec<u8>,
    pub mss: u32,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub opt_wscale: bool,
    pub opt_sack: bool,
    pub opt_timestamps: bool,
    pub timestamp: u32,
    /// snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup.
    pub window: [u32; 5],
    /// Writing was shut down (FIN_WAIT1/2, LAST_ACK, CLOSING): our FIN is not in
    /// `snd_seq` nor the queues.
    pub fin_sent: bool,
    /// The peer's FIN had arrived (CLOSE_WAIT, LAST_ACK, CLOSING): `rcv_seq` is its
    /// sequence number (it is replayed at restore).
    pub fin_received: bool,
}

/// Whether a connection in `state` is dumped through repair mode.
pub fn repairable(state: u8) -> bool {
    matches!(
        state,
        ESTABLISHED | FIN_WAIT1 | FIN_WAIT2 | CLOSE_WAIT | LAST_ACK | CLOSING
    )
}

/// Read a connection already in repair mode (its flow locked): ESTABLISHED, or
/// FIN_WAIT1/2 (the program shut down writing: its FIN takes a sequence number, and
/// counts in SIOCOUTQ/SIOCOUTQNSD while unacknowledged/unsent, but has no byte).
pub fn dump_conn(fd: BorrowedFd<'_>, state: u8) -> Result<TcpConn> {
    let fin = matches!(state, FIN_WAIT1 | FIN_WAIT2 | LAST_ACK | CLOSING);
    let fin_unacked = matches!(state, FIN_WAIT1 | LAST_ACK | CLOSING);
    let fin_received = matches!(state, CLOSE_WAIT | LAST_ACK | CLOSING);
    let int =
        |name, what| sockopt::getsockopt_int(fd, libc::SOL_TCP, name).map_err(|e| sys(what, e));
    select_queue(fd, RECV_QUEUE)?;
    let mut rcv_seq = int(TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ (receive)")? as u32;
    if fin_received {
        // rcv_nxt counts the FIN; SIOCINQ does not.
        rcv_seq = rcv_seq.wrapping_sub(1);
    }
    let inq = ioctl(fd, SIOCINQ, "SIOCINQ")?;
    let recv_queue = peek(fd, inq, "peeking the receive queue")?;
    select_queue(fd, SEND_QUEUE)?;
    let mut snd_seq = int(TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ (send)")? as u32;
    let mut outq = ioctl(fd, SIOCOUTQ, "SIOCOUTQ")?;
    let mut unsent = ioctl(fd, SIOCOUTQNSD, "SIOCOUTQNSD")?.min(outq);
    if fin {
        snd_seq = snd_seq.wrapping_sub(1);
        if fin_unacked {
            outq = outq.saturating_sub(1);
            unsent = unsent.saturating_sub(1);
        }
    }
    let send_queue = peek(fd, outq, "peeking the send queue")?;
    select_queue(fd, NO_QUEUE)?;
    let i = info(fd)?;
    let mss = int(libc::TCP_MAXSEG, "TCP_MAXSEG")? as u32;
    let timestamp = int(TCP_TIMESTAMP, "TCP_TIMESTAMP")? as u32;
    let mut w = [0u8; 20];
    sockopt::getsockopt_raw(fd, libc::SOL_TCP, TCP_REPAIR_WINDOW, &mut w)
        .map_err(|e| sys("TCP_REPAIR_WINDOW", e))?;
    let mut window = [0u32; 5];
    for (k, v) in window.iter_mut().enumerate() {
        *v = u32::from_ne_bytes([w[4 * k], w[4 * k + 1], w[4 * k + 2], w[4 * k + 3]]);
    }
    Ok(TcpConn {
        snd_seq,
        rcv_seq,
        send_queue,
        unsent: unsent as u32,
        recv_queue,
        mss,
        snd_wscale: i.snd_wscale,
        rcv_wscale: i.rcv_wscale,
        opt_wscale: i.options & TCPI_OPT_WSCALE != 0,
        opt_sack: i.options & TCPI_OPT_SACK != 0,
        opt_timestamps: i.options & TCPI_OPT_TIMESTAMPS != 0,
        timestamp,
        window,
        fin_sent: fin,
        fin_received,
    })
}

fn set_int(fd: BorrowedFd<'_>, level: i32, name: i32, v: i32, what: &str) -> Result<()> {
    sockopt::setsockopt_int(fd, level, name, v).map_err(|e| sys(what, e))
}

/// Make room for `bytes` of queued data in the send or receive buffer (SO_SNDBUFFORCE /
/// SO_RCVBUFFORCE: the original's may have grown past `wmem_max` by autotuning). Only
/// done when the fresh socket's buffer is too small; this fixes the size from then on.
fn room(fd: BorrowedFd<'_>, send: bool, bytes: usize) -> Result<()> {
    let (get, force) = if send {
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE)
    } else {
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE)
    };
    let need = bytes.saturating_mul(2).saturating_add(4 * CHUNK);
    let have = sockopt::getsockopt_int(fd, libc::SOL_SOCKET, get)
        .unwrap_or(0)
        .max(0) as usize;
    if have < need {
        let v = i32::try_from(need / 2 + CHUNK).unwrap_or(i32::MAX);
        set_int(fd, libc::SOL_SOCKET, force, v, "growing the socket buffer")?;
    }
    Ok(())
}

/// Queue `data` with non-blocking sends (into whichever queue repair mode selected).
fn push(fd: BorrowedFd<'_>, data: &[u8], what: &str) -> Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    let mut off = 0;
    while off < data.len() {
        let end = (off + CHUNK).min(data.len());
        let n = send(fd.as_raw_fd(), &data[off..end], MsgFlags::MSG_DONTWAIT)
            .map_err(|e| sys(what, format!("{e} after {off} of {} bytes", data.len())))?;
        if n == 0 {
            return Err(sys(what, format!("no progress after {off} bytes")));
        }
        off += n;
    }
    Ok(())
}

/// Rebuild an established connection: the new socket is returned in repair mode with
/// both queues refilled (except the unsent tail, see [`release`]).
pub fn restore_conn(rec: &InetRecord, c: &TcpConn) -> Result<OwnedFd> {
    let (Some(local), Some(peer)) = (rec.local, rec.peer) else {
        return Err(Error::Restore(
            "established TCP socket without both addresses in the image".into(),
        ));
    };
    let unsent = (c.unsent as usize).min(c.send_queue.len());
    let s = super::new_socket(rec.family, libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
    let fd = s.as_fd();
    super::ipopts::restore(fd, &rec.opts, true)?;
    set_repair(fd, true)?;
    super::ipopts::restore(fd, &rec.opts, false)?;
    bind_to(fd, local)?;
    select_queue(fd, SEND_QUEUE)?;
    let seq = c.snd_seq.wrapping_sub(c.send_queue.len() as u32);
    set_int(
        fd,
        libc::SOL_TCP,
        TCP_QUEUE_SEQ,
        seq as i32,
        "TCP_QUEUE_SEQ (send)",
    )?;
    select_queue(fd, RECV_QUEUE)?;
    let seq = c.rcv_seq.wrapping_sub(c.recv_queue.len() as u32);
    set_int(
        fd,
        libc::SOL_TCP,
        TCP_QUEUE_SEQ,
        seq as i32,
        "TCP_QUEUE_SEQ (receive)",
    )?;
    let peer_ss = nix::sys::socket::SockaddrStorage::from(peer);
    nix::sys::socket::connect(fd.as_raw_fd(), &peer_ss)
        .map_err(|e| sys(&format!("connect to {peer} in repair mode"), e))?;
    let mut opts: Vec<[u32; 2]> = vec![[TCPOPT_MSS, c.mss]];
    if c.opt_wscale {
        opts.push([
            TCPOPT_WINDOW,
            c.snd_wscale as u32 | (c.rcv_wscale as u32) << 16,
        ]);
    }
    if c.opt_sack {
        opts.push([TCPOPT_SACK_PERM, 0]);
    }
    if c.opt_timestamps {
        opts.push([TCPOPT_TIMESTAMP, 0]);
    }
    let bytes: Vec<u8> = opts
        .iter()
        .flatten()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    sockopt::setsockopt_raw(fd, libc::SOL_TCP, TCP_REPAIR_OPTIONS, &bytes)
        .map_err(|e| sys("TCP_REPAIR_OPTIONS", e))?;
    if c.opt_timestamps {
        set_int(
            fd,
            libc::SOL_TCP,
            TCP_TIMESTAMP,
            c.timestamp as i32,
            "TCP_TIMESTAMP",
        )?;
    }
    if !c.recv_queue.is_empty() {
        room(fd, false, c.recv_queue.len())?;
        push(fd, &c.recv_queue, "refilling the receive queue")?;
    }
    let mut window = c.window;
    // rcv_wup may not be past rcv_nxt, which lacks the peer's FIN until it is replayed.
    if (window[4].wrapping_sub(c.rcv_seq) as i32) > 0 {
        window[4] = c.rcv_seq;
    }
    let w: Vec<u8> = window.iter().flat_map(|v| v.to_ne_bytes()).collect();
    sockopt::setsockopt_raw(fd, libc::SOL_TCP, TCP_REPAIR_WINDOW, &w)
        .map_err(|e| sys("TCP_REPAIR_WINDOW", e))?;
    select_queue(fd, SEND_QUEUE)?;
    if !c.send_queue.is_empty() {
        room(fd, true, c.send_queue.len())?;
        push(
            fd,
            &c.send_queue[..c.send_queue.len() - unsent],
            "refilling the send queue",
        )?;
    }
    select_queue(fd, NO_QUEUE)?;
    Ok(s)
}

/// Bring a restored connection back to life (on any descriptor of it): repair off (the
/// kernel sends a window probe), SO_REUSEADDR as the program had it (repair off clears
/// it), then the unsent tail of the send queue queued by a normal non-blocking send.
/// Must run before the program writes to the socket again, or its new bytes would
/// overtake the old tail.
pub fn release(fd: BorrowedFd<'_>, rec: &InetRecord, c: &TcpConn) -> Result<()> {
    set_repair(fd, false)?;
    if rec.reuse_addr {
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
    }
    let unsent = (c.unsent as usize).min(c.send_queue.len());
    push(
        fd,
        &c.send_queue[c.send_queue.len() - unsent..],
        "queueing the unsent data",
    )?;
    // Our FIN again, after the data, at the sequence number it had; the peer's FIN
    // replayed; in the order they came (CLOSING: ours first).
    let shut = || {
        nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Write)
            .map_err(|e| sys("shutdown(SHUT_WR)", e))
    };
    if c.fin_sent && rec.state == CLOSING {
        shut()?;
    }
    if c.fin_received {
        replay_fin(fd, rec, c)?;
    }
    if c.fin_sent && rec.state != CLOSING {
        shut()?;
    }
    Ok(())
}

fn replay_fin(fd: BorrowedFd<'_>, rec: &InetRecord, c: &TcpConn) -> Result<()> {
    let (Some(local), Some(peer)) = (rec.local, rec.peer) else {
        return Err(Error::Restore("connection without addresses".into()));
    };
    let before = info(fd)?.state;
    let snd_una = c.snd_seq.wrapping_sub(c.send_queue.len() as u32);
    let shift = if c.opt_wscale {
        c.snd_wscale.min(14)
    } else {
        0
    };
    let window = (c.window[1] >> shift).min(0xffff) as u16;
    super::fin::replay(local, peer, c.rcv_seq, snd_una, window)?;
    let start = std::time::Instant::now();
    while info(fd)?.state == before {
        if start.elapsed() > std::time::Duration::from_secs(2) {
            return Err(Error::Restore(format!(
                "the replayed FIN of {peer} was not taken by the connection to {local} (still {})",
                state_name(before)
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}

/// A listening socket: bound in repair mode (so established connections already
/// restored on the same port do not make the bind fail), then listening with the
/// backlog it had.
pub fn restore_listen(rec: &InetRecord) -> Result<OwnedFd> {
    let s = restore_closed(rec)?;
    let backlog = match i32::try_from(rec.backlog) {
        Ok(b) => {
            nix::sys::socket::Backlog::new(b).unwrap_or(nix::sys::socket::Backlog::MAXALLOWABLE)
        }
        Err(_) => nix::sys::socket::Backlog::MAXALLOWABLE,
    };
    nix::sys::socket::listen(&s, backlog).map_err(|e| {
        sys(
            &format!(
                "listen on {}",
                rec.local.map(|a| a.to_string()).unwrap_or_default()
            ),
            e,
        )
    })?;
    Ok(s)
}

/// A socket that is bound (or not) and neither connected nor listening.
pub fn restore_closed(rec: &InetRecord) -> Result<OwnedFd> {
    let s = super::new_socket(rec.family, libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
    let fd = s.as_fd();
    super::ipopts::restore(fd, &rec.opts, true)?;
    if let Some(local) = rec.local.filter(|a| a.port() != 0) {
        set_repair(fd, true)?;
        bind_to(fd, local)?;
        set_repair(fd, false)?;
    }
    if rec.reuse_addr {
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
    }
    super::ipopts::restore(fd, &rec.opts, false)?;
    Ok(s)
}

/// The connection's repair state as JSON (queue sizes, not their bytes).
pub fn show(c: &TcpConn) -> Value {
    json!({
        "snd_seq": c.snd_seq,
        "rcv_seq": c.rcv_seq,
        "send_queue": c.send_queue.len(),
        "unsent": c.unsent,
        "recv_queue": c.recv_queue.len(),
        "mss": c.mss,
        "wscale": if c.opt_wscale { json!([c.snd_wscale, c.rcv_wscale]) } else { Value::Null },
        "sack": c.opt_sack,
        "timestamps": c.opt_timestamps,
        "window": {
            "snd_wl1": c.window[0], "snd_wnd": c.window[1], "max_window": c.window[2],
            "rcv_wnd": c.window[3], "rcv_wup": c.window[4],
        },
    })
}
