//! Helpers for the inet tests: a one-process "tree" made of this test process and the
//! sockets it names, byte patterns that reveal any lost, repeated or reordered byte.
#![allow(dead_code)]

use spirit_core::plugin::{DumpTree, FrozenProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub fn me() -> i32 {
    std::process::id() as i32
}

/// This process as a frozen tree holding `fds`.
pub fn tree(fds: &[i32]) -> DumpTree {
    let pid = me();
    DumpTree {
        procs: vec![FrozenProcess {
            pid,
            ppid: 1,
            pgid: pid,
            sid: pid,
            fds: fds
                .iter()
                .map(|&fd| spirit_core::fdclass::classify(pid, fd).unwrap().unwrap())
                .collect(),
        }],
        opts: Default::default(),
    }
}

/// Byte `i` of stream `seed`: never periodic over a socket buffer's length.
pub fn pat(seed: u64, i: u64) -> u8 {
    ((i.wrapping_add(seed).wrapping_mul(2654435761)) >> 11) as u8 ^ (i >> 16) as u8
}

/// Write the stream from `from` until the socket would block; returns the new offset.
pub fn fill(s: &mut TcpStream, seed: u64, mut from: u64) -> u64 {
    s.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        for (k, b) in buf.iter_mut().enumerate() {
            *b = pat(seed, from + k as u64);
        }
        match s.write(&buf) {
            Ok(n) => from += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    from
}

/// Write the stream from `from` to `to`, blocking.
pub fn write_range(s: &mut TcpStream, seed: u64, from: u64, to: u64) {
    let mut off = from;
    while off < to {
        let n = ((to - off) as usize).min(65536);
        let buf: Vec<u8> = (0..n as u64).map(|k| pat(seed, off + k)).collect();
        s.write_all(&buf).unwrap();
        off += n as u64;
    }
}

/// Read exactly `to - from` bytes and check each against the stream (within `limit`).
pub fn expect_range(s: &mut TcpStream, seed: u64, from: u64, to: u64, limit: Duration) {
    s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut off = from;
    let mut buf = vec![0u8; 65536];
    while off < to {
        let want = ((to - off) as usize).min(buf.len());
        let n = s
            .read(&mut buf[..want])
            .unwrap_or_else(|e| panic!("reading at byte {off} of {to}: {e}"));
        assert!(n > 0, "peer closed at byte {off} of {to}");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                pat(seed, off + k as u64),
                "byte {} of stream {seed}",
                off + k as u64
            );
        }
        off += n as u64;
        assert!(start.elapsed() < limit, "too slow: {off} of {to}");
    }
}

/// Nothing more to read right now (no stray byte, no EOF, no reset).
pub fn expect_quiet(s: &TcpStream) {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    match (&*s).read(&mut b) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("expected nothing to read, got {other:?}"),
    }
    s.set_nonblocking(false).unwrap();
}

/// Removes a lock table when the test ends, also when it fails.
pub struct LockGuard(pub Option<String>);

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = spirit_sockets::inet::netlock::remove_table(t);
        }
    }
}
