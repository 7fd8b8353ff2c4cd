//! Frozen time added per established TCP connection: N loopback connections with a
//! little data queued each way are locked, put in repair mode and read
//! (`DumpTree::new` + `dump`), and the end resumed; prints the fixed cost (the nft
//! transaction) and the cost per connection. Run by hand: `cargo bench -p
//! spirit-sockets --bench inet_freeze` (root).

use spirit_core::plugin::{DumpOutcome, DumpTree, FrozenProcess};
use spirit_sockets::inet;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

fn tree(fds: &[i32]) -> DumpTree {
    let pid = std::process::id() as i32;
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

fn run(n: usize) -> (f64, f64) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut pairs = Vec::new();
    for _ in 0..n {
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(&[1u8; 4096]).unwrap();
        s.write_all(&[2u8; 4096]).unwrap();
        pairs.push((c, s));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let fds: Vec<i32> = pairs.iter().map(|(_, s)| s.as_raw_fd()).collect();
    let t = tree(&fds);
    let t0 = Instant::now();
    let mut st = inet::DumpTree::new(&t).unwrap();
    let t1 = Instant::now();
    for (_, s) in &pairs {
        inet::dump(&mut st, std::process::id() as i32, s.as_raw_fd(), s.as_fd()).unwrap();
    }
    let t2 = Instant::now();
    st.end(DumpOutcome::Resumed);
    let t3 = Instant::now();
    (
        (t1 - t0 + (t3 - t2)).as_secs_f64() * 1e3,
        (t2 - t1).as_secs_f64() * 1e3,
    )
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: needs root (TCP_REPAIR, nft)");
        return;
    }
    for n in [1usize, 16, 64, 256] {
        let (lock_ms, dump_ms) = run(n);
        println!(
            "{n:4} connections: lock+repair on+end {lock_ms:8.2} ms, dump {dump_ms:8.2} ms ({:.3} ms per connection)",
            dump_ms / n as f64
        );
    }
}
