//! End to end through the CLI: a TCP echo server
//! with a live client outside the tree is checkpointed and restored on the same host
//! while bytes are in flight both ways (more than the socket buffers hold); the client
//! sees no error and gets back every byte it sent, once and in order. The restored
//! listener accepts a client that connected while the server was frozen, and new ones.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TOTAL: u64 = 16 << 20;

fn pat(i: u64) -> u8 {
    ((i.wrapping_mul(2654435761)) >> 11) as u8 ^ (i >> 16) as u8
}

fn echo_round_trip(addr: &str, name: &str, restore_args: &[&str]) {
    if !nix::unistd::geteuid().is_root() {
        skip(name, "TCP_REPAIR and nft need root");
        return;
    }
    let dir = TestDir::new(name);
    let prog = build_c("tcp_echo.c", &[]);
    let portfile = dir.join("port");
    let mut server = Proc::spawn(&prog, &[addr, &dir.s("port")], &dir, "echo");
    wait_until("the echo server's port", TIMEOUT, || portfile.exists());
    let port: u16 = std::fs::read_to_string(&portfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let sa = SocketAddr::new(addr.parse().unwrap(), port);
    let client = TcpStream::connect(sa).unwrap();
    // Writer: TOTAL bytes; it blocks while the server is frozen and its queues are full.
    let mut w = client.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut off = 0u64;
        while off < TOTAL {
            let buf: Vec<u8> = (off..off + 65536).map(pat).collect();
            w.write_all(&buf).expect("client write");
            off += 65536;
        }
    });
    // Read only a little before the checkpoint, so data piles up in both directions.
    let mut r = client.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; 65536];
    while got < 100_000 {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0);
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pat(got + k as u64), "echoed byte {}", got + k as u64);
        }
        got += n as u64;
    }
    std::thread::sleep(Duration::from_millis(500));

    let img = dir.join("echo.spirit");
    dump(server.pid, &img, &[]).ok("dump the echo server");
    server.reap();
    // A client connecting while the server is gone: held by the network lock, it
    // connects once the restored listener is there.
    let late = std::thread::spawn(move || {
        let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(30)).expect("late client");
        s.write_all(b"late\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // Served after the first client is done (the server is sequential).
        s
    });
    let shown = spirit(&["show", &img.to_string_lossy(), "--json"]);
    shown.ok("show");
    assert!(shown.stdout.contains("ESTABLISHED") && shown.stdout.contains("LISTEN"));
    let lock = LockGuard::of(&img);
    let table = lock.0.clone().expect("the lock table named in the image");
    let restored = restore_ok(&img, restore_args);
    if restore_args.contains(&"--new-pid") {
        assert_ne!(restored.pid, server.pid, "--new-pid gives a new pid");
    }

    // Everything comes back, once, in order.
    while got < TOTAL {
        let n = r.read(&mut buf).expect("client read after restore");
        assert!(n > 0, "EOF at {got}");
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pat(got + k as u64), "echoed byte {}", got + k as u64);
        }
        got += n as u64;
    }
    writer.join().unwrap();
    assert!(client.take_error().unwrap().is_none());
    drop(r);
    drop(client);
    let mut late = late.join().unwrap();
    let mut b = [0u8; 5];
    late.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"late\n");
    drop(late);
    let mut fresh = TcpStream::connect(sa).unwrap();
    fresh.write_all(b"fresh").unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    fresh.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"fresh");
    let mut restored = restored;
    restored.kill();
    // No lock table left behind.
    let listed = sh(&format!("nft list table inet {table}"));
    assert_ne!(listed.code, 0, "lock table {table} still there");
}

#[test]
fn tcp_echo_server_keeps_its_client_ipv4() {
    echo_round_trip("127.0.0.1", "sockets_tcp_v4", &[]);
}

/// IPv6, restored with a new pid (the connection leaves repair mode through the
/// restored process's real pid).
#[test]
fn tcp_echo_server_keeps_its_client_ipv6_new_pid() {
    echo_round_trip("::1", "sockets_tcp_v6", &["--new-pid"]);
}

/// `dump --leave-running`: the server goes on with the same connection (repair mode
/// off again, SO_REUSEADDR as the program set it) and the lock is gone; its listener
/// still accepts.
#[test]
fn leave_running_lets_the_connection_go_on() {
    let name = "sockets_tcp_leave";
    if !nix::unistd::geteuid().is_root() {
        skip(name, "TCP_REPAIR and nft need root");
        return;
    }
    let dir = TestDir::new(name);
    let prog = build_c("tcp_echo.c", &[]);
    let portfile = dir.join("port");
    let mut server = Proc::spawn(&prog, &["127.0.0.1", &dir.s("port")], &dir, "echo");
    wait_until("the echo server's port", TIMEOUT, || portfile.exists());
    let port: u16 = std::fs::read_to_string(&portfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 6];
    c.write_all(b"before").unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"before");
    let img = dir.join("echo.spirit");
    dump(server.pid, &img, &["--leave-running"]).ok("dump --leave-running");
    let lock = LockGuard::of(&img);
    let table = lock.0.clone().expect("the lock table named in the image");
    assert_ne!(
        sh(&format!("nft list table inet {table}")).code,
        0,
        "lock table {table} still there after --leave-running"
    );
    assert!(server.alive());
    c.write_all(b"after!").unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"after!");
    assert!(c.take_error().unwrap().is_none());
    // The server's sockets are out of repair mode and keep SO_REUSEADDR.
    let pidfd = spirit_kmod::fd::pidfd_open(server.pid).unwrap();
    for fd in [3, 4] {
        let s = spirit_kmod::fd::pidfd_getfd(&pidfd, fd).unwrap();
        use std::os::fd::AsFd;
        let v =
            spirit_kmod::sockopt::getsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR)
                .unwrap();
        assert_eq!(v, 1, "fd {fd}: SO_REUSEADDR");
    }
    server.kill();
}

/// Both ends of a loopback connection in the tree (a parent echoing to its child):
/// both are rebuilt through repair mode and the child's counter goes on with no gap.
#[test]
fn both_ends_of_a_loopback_connection_in_the_tree() {
    let name = "sockets_tcp_pair";
    if !nix::unistd::geteuid().is_root() {
        skip(name, "TCP_REPAIR and nft need root");
        return;
    }
    let dir = TestDir::new(name);
    let prog = build_c("tcp_pair.c", &[]);
    let mut parent = Proc::spawn(&prog, &[], &dir, "pair");
    let pids = read_pids(&dir);
    let child = pids[1];
    let log = dir.join("pair.log");
    wait_lines(&log, 50);
    let img = dir.join("pair.spirit");
    dump(parent.pid, &img, &[]).ok("dump the pair");
    let lock = LockGuard::of(&img);
    assert!(lock.0.is_some(), "the image names its network lock");
    parent.reap();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    wait_until("the child gone", TIMEOUT, || !pid_exists(child));
    let before = log_lines(&log).len();
    let mut restored = restore_ok(&img, &[]);
    let mut kid = Proc::adopt(child);
    wait_lines(&log, before + 100);
    assert!(assert_consecutive(&log) >= before + 100);
    assert!(kid.alive() && restored.alive());
    kid.kill();
    restored.kill();
    let t = lock.0.clone().unwrap_or_default();
    assert_ne!(
        sh(&format!("nft list table inet {t}")).code,
        0,
        "lock table {t} left"
    );
}
