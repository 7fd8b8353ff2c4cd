//! TCP through the inet module, in this one test process standing for the frozen tree:
//! a connection is dumped from one end (the network lock on), that end is closed in
//! repair mode, rebuilt from the decoded record, and both sides carry on with no error
//! and no byte lost, repeated or reordered — with both queues fuller than the socket
//! buffers hold (unsent data included). Needs root (TCP_REPAIR, nft).

mod inet_common;
use inet_common::*;

use spirit_core::plugin::DumpOutcome;
use spirit_sockets::inet::{self, netlock, tcp};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

fn can_repair() -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: TCP_REPAIR and nft need root");
        return false;
    }
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: nft is not installed (package nftables)");
        return false;
    }
    true
}

/// Dump `server` (its end of the connection to `client`) with both queues overfull,
/// kill it, restore it, and check both directions end to end.
fn round_trip(bind: &str) {
    if !can_repair() {
        return;
    }
    let l = TcpListener::bind(bind).unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut server, _) = l.accept().unwrap();
    drop(l);
    // Both directions overfull: client→server fills the server's receive queue and the
    // client's send queue; server→client leaves unsent bytes in the server's.
    let c_sent = fill(&mut client, 1, 0);
    let s_sent = fill(&mut server, 2, 0);
    assert!(c_sent > 0 && s_sent > 0);

    let t = tree(&[server.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let table = st
        .lock_table()
        .expect("a lock for the connection")
        .to_string();
    let _guard = LockGuard(Some(table.clone()));
    assert!(netlock::table_exists(&table));
    let rec = inet::dump(&mut st, me(), server.as_raw_fd(), server.as_fd()).unwrap();
    let c = rec.tcp.as_ref().unwrap();
    assert_eq!(rec.state, tcp::ESTABLISHED);
    assert_eq!(rec.netlock, table);
    assert!(!c.recv_queue.is_empty() && (c.recv_queue.len() as u64) < c_sent);
    assert!(c.unsent > 0, "the server has unsent data");
    let bytes = inet::to_bytes(&rec);
    let show = inet::show(&rec);
    assert_eq!(show["state"], "ESTABLISHED");
    assert_eq!(show["tcp"]["recv_queue"], c.recv_queue.len());

    // The tree is killed: its sockets close in repair mode, the lock stays.
    st.end(DumpOutcome::Killed);
    drop(server);
    assert!(
        netlock::table_exists(&table),
        "the lock outlives the killed tree"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        tcp::info(client.as_fd()).unwrap().state,
        tcp::ESTABLISHED,
        "no FIN, no RST"
    );
    assert!(client.take_error().unwrap().is_none());

    // The client keeps writing meanwhile (blocks until the restored end reads).
    let mut cw = client.try_clone().unwrap();
    let writer = std::thread::spawn(move || write_range(&mut cw, 1, c_sent, c_sent + 300_000));

    let rec2 = inet::from_bytes(&bytes).unwrap();
    assert_eq!(rec2, rec);
    let fd = inet::restore(&rec2).unwrap();
    inet::finish(fd.as_fd(), &rec2).unwrap();
    inet::unlock([&rec2]).unwrap();
    assert!(!netlock::table_exists(&table));
    let mut restored = TcpStream::from(fd);

    let reader = {
        let mut r = restored.try_clone().unwrap();
        std::thread::spawn(move || {
            expect_range(&mut r, 1, 0, c_sent + 300_000, Duration::from_secs(30))
        })
    };
    expect_range(&mut client, 2, 0, s_sent, Duration::from_secs(30));
    reader.join().unwrap();
    writer.join().unwrap();
    // New data both ways after the restore.
    write_range(&mut restored, 2, s_sent, s_sent + 1000);
    expect_range(
        &mut client,
        2,
        s_sent,
        s_sent + 1000,
        Duration::from_secs(10),
    );
    write_range(&mut client, 1, c_sent + 300_000, c_sent + 301_000);
    expect_range(
        &mut restored,
        1,
        c_sent + 300_000,
        c_sent + 301_000,
        Duration::from_secs(10),
    );
    expect_quiet(&client);
    expect_quiet(&restored);
    assert!(client.take_error().unwrap().is_none());
    assert!(restored.take_error().unwrap().is_none());
}

#[test]
fn established_ipv4_survives_kill_and_restore() {
    round_trip("127.0.0.1:0");
}

#[test]
fn established_ipv6_survives_kill_and_restore() {
    round_trip("[::1]:0");
}

#[test]
fn established_v4_mapped_survives_kill_and_restore() {
    if !can_repair() {
        return;
    }
    // A dual-stack listener: the accepted socket is AF_INET6 with v4-mapped addresses.
    let l = TcpListener::bind("[::]:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (server, peer) = l.accept().unwrap();
    drop(l);
    assert!(peer.to_string().starts_with("[::ffff:127.0.0.1]"));
    let c_sent = fill(&mut client, 3, 0);
    let t = tree(&[server.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let _guard = LockGuard(st.lock_table().map(String::from));
    let rec = inet::dump(&mut st, me(), server.as_raw_fd(), server.as_fd()).unwrap();
    assert_eq!(rec.family, libc::AF_INET6);
    st.end(DumpOutcome::Killed);
    drop(server);
    let fd = inet::restore(&rec).unwrap();
    inet::finish(fd.as_fd(), &rec).unwrap();
    inet::unlock([&rec]).unwrap();
    let mut restored = TcpStream::from(fd);
    expect_range(&mut restored, 3, 0, c_sent, Duration::from_secs(20));
    write_range(&mut restored, 4, 0, 5000);
    expect_range(&mut client, 4, 0, 5000, Duration::from_secs(20));
    assert!(client.take_error().unwrap().is_none());
}

#[test]
fn resumed_dump_leaves_the_connection_untouched() {
    if !can_repair() {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut server, _) = l.accept().unwrap();
    let c_sent = fill(&mut client, 5, 0);
    let s_sent = fill(&mut server, 6, 0);
    let t = tree(&[server.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let table = st.lock_table().unwrap().to_string();
    inet::dump(&mut st, me(), server.as_raw_fd(), server.as_fd()).unwrap();
    st.end(DumpOutcome::Resumed);
    assert!(
        !netlock::table_exists(&table),
        "the lock is gone once the tree runs on"
    );
    let mut r = server.try_clone().unwrap();
    let reader =
        std::thread::spawn(move || expect_range(&mut r, 5, 0, c_sent, Duration::from_secs(20)));
    expect_range(&mut client, 6, 0, s_sent, Duration::from_secs(20));
    reader.join().unwrap();
    write_range(&mut server, 6, s_sent, s_sent + 10);
    expect_range(&mut client, 6, s_sent, s_sent + 10, Duration::from_secs(5));
    // A failed dump (the state dropped without an end) also lets go.
    let t = tree(&[server.as_raw_fd()]);
    let st = inet::DumpTree::new(&t).unwrap();
    let table = st.lock_table().unwrap().to_string();
    drop(st);
    assert!(!netlock::table_exists(&table));
    write_range(&mut server, 6, s_sent + 10, s_sent + 20);
    expect_range(
        &mut client,
        6,
        s_sent + 10,
        s_sent + 20,
        Duration::from_secs(5),
    );
}

#[test]
fn listener_keeps_accepting_including_a_client_that_came_while_frozen() {
    if !can_repair() {
        return;
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // Re-listen with a known backlog and a TCP-level option.
    nix::sys::socket::listen(&l, nix::sys::socket::Backlog::new(7).unwrap()).unwrap();
    spirit_kmod::sockopt::setsockopt_int(l.as_fd(), libc::SOL_TCP, libc::TCP_DEFER_ACCEPT, 3)
        .unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    let (server, _) = l.accept().unwrap();
    let t = tree(&[l.as_raw_fd(), server.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let _guard = LockGuard(st.lock_table().map(String::from));
    let lrec = inet::dump(&mut st, me(), l.as_raw_fd(), l.as_fd()).unwrap();
    let srec = inet::dump(&mut st, me(), server.as_raw_fd(), server.as_fd()).unwrap();
    assert_eq!(lrec.state, tcp::LISTEN);
    assert_eq!(lrec.backlog, 7);
    assert_eq!(
        inet::show(&lrec)["options"]["TCP_DEFER_ACCEPT"],
        serde_json::json!(3)
    );
    st.end(DumpOutcome::Killed);
    drop(l);
    drop(server);
    // A client connecting now: its SYN is held by the lock, and retried.
    let late = std::thread::spawn(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(20)).unwrap();
        write_range(&mut s, 9, 0, 100);
        s
    });
    std::thread::sleep(Duration::from_millis(300));
    // The connection first (as a restore of several processes may), then the listener
    // on the same port.
    let sfd = inet::restore(&srec).unwrap();
    let lfd = inet::restore(&lrec).unwrap();
    inet::finish(sfd.as_fd(), &srec).unwrap();
    inet::finish(lfd.as_fd(), &lrec).unwrap();
    inet::unlock([&srec, &lrec]).unwrap();
    let l2 = TcpListener::from(lfd);
    let mut server2 = TcpStream::from(sfd);
    assert_eq!(l2.local_addr().unwrap(), addr);
    let (mut a, _) = l2.accept().unwrap();
    expect_range(&mut a, 9, 0, 100, Duration::from_secs(10));
    let _late = late.join().unwrap();
    let mut fresh = TcpStream::connect(addr).unwrap();
    write_range(&mut fresh, 10, 0, 50);
    let (mut b, _) = l2.accept().unwrap();
    expect_range(&mut b, 10, 0, 50, Duration::from_secs(10));
    write_range(&mut server2, 11, 0, 10);
    expect_range(&mut client, 11, 0, 10, Duration::from_secs(10));
}

#[test]
fn refusals_name_the_state() {
    if !can_repair() {
        return;
    }
    // Not yet accepted.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let _waiting = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let _guard0: LockGuard;
    std::thread::sleep(Duration::from_millis(50));
    let t = tree(&[l.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let e = inet::dump(&mut st, me(), l.as_raw_fd(), l.as_fd())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not accepted"), "{e}");
    assert!(
        e.contains(&format!("pid {}", me())) && e.contains(&format!("fd {}", l.as_raw_fd())),
        "{e}"
    );
    drop(st);
    // SYN_SENT: a listener whose accept queue is full drops further SYNs.
    let full = TcpListener::bind("127.0.0.1:0").unwrap();
    nix::sys::socket::listen(&full, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
    let fa = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    let syn_sent = loop {
        let s =
            spirit_kmod::sockopt::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0)
                .unwrap();
        let _ =
            nix::sys::socket::connect(s.as_raw_fd(), &nix::sys::socket::SockaddrStorage::from(fa));
        std::thread::sleep(Duration::from_millis(50));
        if tcp::info(s.as_fd()).unwrap().state == 2 {
            break s;
        }
        fillers.push(s);
        assert!(fillers.len() < 10, "the accept queue never filled");
    };
    let t = tree(&[syn_sent.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let _guard = LockGuard(st.lock_table().map(String::from));
    let e = inet::dump(&mut st, me(), syn_sent.as_raw_fd(), syn_sent.as_fd())
        .unwrap_err()
        .to_string();
    assert!(e.contains("SYN_SENT"), "{e}");
    st.end(DumpOutcome::Failed);
    // A raw socket is not ours to restore.
    let raw = raw_socket();
    if let Some(raw) = raw {
        let t = tree(&[raw.as_raw_fd()]);
        let mut st = inet::DumpTree::new(&t).unwrap();
        let e = inet::dump(&mut st, me(), raw.as_raw_fd(), raw.as_fd())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot checkpoint"), "{e}");
    }
}

fn raw_socket() -> Option<std::os::fd::OwnedFd> {
    spirit_kmod::sockopt::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP).ok()
}

#[test]
fn bound_unconnected_tcp_socket() {
    let s = spirit_kmod::sockopt::socket(libc::AF_INET6, libc::SOCK_STREAM, 0).unwrap();
    spirit_kmod::sockopt::setsockopt_int(s.as_fd(), libc::SOL_IPV6, libc::IPV6_V6ONLY, 1).unwrap();
    let ss =
        nix::sys::socket::SockaddrStorage::from("[::1]:0".parse::<std::net::SocketAddr>().unwrap());
    nix::sys::socket::bind(s.as_raw_fd(), &ss).unwrap();
    let t = tree(&[s.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    assert!(st.lock_table().is_none());
    let rec = inet::dump(&mut st, me(), s.as_raw_fd(), s.as_fd()).unwrap();
    assert_eq!(rec.state, tcp::CLOSE);
    let local = rec.local.unwrap();
    drop(st);
    drop(s);
    let n = inet::restore(&inet::from_bytes(&inet::to_bytes(&rec)).unwrap()).unwrap();
    let got: nix::sys::socket::SockaddrStorage =
        nix::sys::socket::getsockname(n.as_raw_fd()).unwrap();
    assert_eq!(got.as_sockaddr_in6().unwrap().port(), local.port());
    assert_eq!(
        spirit_kmod::sockopt::getsockopt_int(n.as_fd(), libc::SOL_IPV6, libc::IPV6_V6ONLY).unwrap(),
        1
    );
}

#[test]
fn both_ends_of_a_loopback_connection_in_the_tree() {
    if !can_repair() {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut b, _) = l.accept().unwrap();
    drop(l);
    let a_sent = fill(&mut a, 21, 0);
    let b_sent = fill(&mut b, 22, 0);
    let t = tree(&[a.as_raw_fd(), b.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let _guard = LockGuard(st.lock_table().map(String::from));
    let ra = inet::dump(&mut st, me(), a.as_raw_fd(), a.as_fd()).unwrap();
    let rb = inet::dump(&mut st, me(), b.as_raw_fd(), b.as_fd()).unwrap();
    st.end(DumpOutcome::Killed);
    drop((a, b));
    let (fa, fb) = (inet::restore(&ra).unwrap(), inet::restore(&rb).unwrap());
    inet::finish(fa.as_fd(), &ra).unwrap();
    inet::finish(fb.as_fd(), &rb).unwrap();
    inet::unlock([&ra, &rb]).unwrap();
    let (mut a, mut b) = (TcpStream::from(fa), TcpStream::from(fb));
    let mut b2 = b.try_clone().unwrap();
    let rd = std::thread::spawn(move || {
        expect_range(&mut b2, 21, 0, a_sent, Duration::from_secs(30));
    });
    expect_range(&mut a, 22, 0, b_sent, Duration::from_secs(30));
    rd.join().unwrap();
    write_range(&mut a, 21, a_sent, a_sent + 100);
    expect_range(&mut b, 21, a_sent, a_sent + 100, Duration::from_secs(5));
    assert!(a.take_error().unwrap().is_none() && b.take_error().unwrap().is_none());
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let rec = inet::InetRecord {
        family: libc::AF_INET6,
        sotype: libc::SOCK_STREAM,
        protocol: libc::IPPROTO_TCP,
        state: tcp::ESTABLISHED,
        local: Some("[::1]:80".parse().unwrap()),
        peer: Some("[::1]:4000".parse().unwrap()),
        tcp: Some(tcp::TcpConn {
            send_queue: vec![1, 2, 3],
            unsent: 2,
            recv_queue: vec![4; 10],
            ..Default::default()
        }),
        netlock: "spirit_lock_1_2".into(),
        ..Default::default()
    };
    let bytes = inet::to_bytes(&rec);
    assert_eq!(inet::from_bytes(&bytes).unwrap(), rec);
    for cut in 0..bytes.len() {
        let _ = inet::from_bytes(&bytes[..cut]);
    }
    for i in 0..bytes.len() {
        for v in [0u8, 0xff, 0x41] {
            let mut b = bytes.clone();
            b[i] = v;
            if let Ok(r) = inet::from_bytes(&b) {
                let _ = inet::show(&r);
            }
        }
    }
    assert!(inet::from_bytes(b"garbage!").is_err());
}

/// The server shut down writing; after restore the client still gets every byte and
/// then end-of-file, and can still send to the server until it closes too.
fn half_closed(overfull: bool) {
    if !can_repair() {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut server, _) = l.accept().unwrap();
    drop(l);
    let c_sent = fill(&mut client, 31, 0);
    let s_sent = if overfull {
        fill(&mut server, 32, 0)
    } else {
        write_range(&mut server, 32, 0, 1000);
        1000
    };
    server.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let want = if overfull {
        tcp::FIN_WAIT1
    } else {
        tcp::FIN_WAIT2
    };
    assert_eq!(tcp::info(server.as_fd()).unwrap().state, want);
    let t = tree(&[server.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let _guard = LockGuard(st.lock_table().map(String::from));
    let rec = inet::dump(&mut st, me(), server.as_raw_fd(), server.as_fd()).unwrap();
    assert_eq!(rec.state, want);
    assert!(rec.tcp.as_ref().unwrap().fin_sent);
    assert_eq!(inet::show(&rec)["state"], tcp::state_name(want));
    st.end(DumpOutcome::Killed);
    drop(server);
    let rec = inet::from_bytes(&inet::to_bytes(&rec)).unwrap();
    let fd = inet::restore(&rec).unwrap();
    inet::finish(fd.as_fd(), &rec).unwrap();
    inet::unlock([&rec]).unwrap();
    let mut server = TcpStream::from(fd);
    let mut r = server.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        expect_range(&mut r, 31, 0, c_sent + 100, Duration::from_secs(30));
        let mut b = [0u8; 1];
        assert_eq!(
            std::io::Read::read(&mut r, &mut b).unwrap(),
            0,
            "client's EOF"
        );
    });
    expect_range(&mut client, 32, 0, s_sent, Duration::from_secs(30));
    let mut b = [0u8; 1];
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        std::io::Read::read(&mut client, &mut b).unwrap(),
        0,
        "server's EOF"
    );
    write_range(&mut client, 31, c_sent, c_sent + 100);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    reader.join().unwrap();
    assert!(client.take_error().unwrap().is_none());
    assert!(
        std::io::Write::write(&mut server, b"x").is_err(),
        "still shut down"
    );
}

#[test]
fn fin_wait2_survives_kill_and_restore() {
    half_closed(false);
}

#[test]
fn fin_wait1_with_unsent_data_survives_kill_and_restore() {
    half_closed(true);
}

/// The client shut down writing first (the server in CLOSE_WAIT) — and, with
/// `server_too`, the server then too, its FIN stuck behind unsent data (LAST_ACK).
fn peer_closed(server_too: bool) {
    if !can_repair() {
        return;
    }
    let l = TcpListener::bind("[::1]:0").unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut server, _) = l.accept().unwrap();
    drop(l);
    write_range(&mut client, 41, 0, 5000);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let s_sent = if server_too {
        let n = fill(&mut server, 42, 0);
        server.shutdown(std::net::Shutdown::Write).unwrap();
        n
    } else {
        0
    };
    std::thread::sleep(Duration::from_millis(100));
    let want = if server_too {
        tcp::LAST_ACK
    } else {
        tcp::CLOSE_WAIT
    };
    assert_eq!(tcp::info(server.as_fd()).unwrap().state, want);
    let t = tree(&[server.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let _guard = LockGuard(st.lock_table().map(String::from));
    let rec = inet::dump(&mut st, me(), server.as_raw_fd(), server.as_fd()).unwrap();
    assert_eq!(rec.state, want);
    assert!(rec.tcp.as_ref().unwrap().fin_received);
    st.end(DumpOutcome::Killed);
    drop(server);
    let rec = inet::from_bytes(&inet::to_bytes(&rec)).unwrap();
    let fd = inet::restore(&rec).unwrap();
    inet::finish(fd.as_fd(), &rec).unwrap();
    assert_eq!(
        tcp::info(fd.as_fd()).unwrap().state,
        want,
        "the FIN was replayed"
    );
    inet::unlock([&rec]).unwrap();
    let mut server = TcpStream::from(fd);
    expect_range(&mut server, 41, 0, 5000, Duration::from_secs(10));
    let mut b = [0u8; 1];
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        std::io::Read::read(&mut server, &mut b).unwrap(),
        0,
        "client's EOF"
    );
    let s_end = if server_too {
        s_sent
    } else {
        write_range(&mut server, 42, 0, 3000);
        server.shutdown(std::net::Shutdown::Write).unwrap();
        3000
    };
    expect_range(&mut client, 42, 0, s_end, Duration::from_secs(30));
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        std::io::Read::read(&mut client, &mut b).unwrap(),
        0,
        "server's EOF"
    );
    assert!(client.take_error().unwrap().is_none());
    assert!(server.take_error().unwrap().is_none());
}

#[test]
fn close_wait_survives_kill_and_restore() {
    peer_closed(false);
}

#[test]
fn last_ack_with_unsent_data_survives_kill_and_restore() {
    peer_closed(true);
}

/// Without the lock, a segment from the client while the server's socket is gone gets
/// a reset; with it, the segment is dropped and retransmitted into the restored one.
fn lock_holds(bind: &str) {
    if !can_repair() {
        return;
    }
    let l = TcpListener::bind(bind).unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    drop(l);
    let t = tree(&[server.as_raw_fd()]);
    let mut st = inet::DumpTree::new(&t).unwrap();
    let _guard = LockGuard(st.lock_table().map(String::from));
    let rec = inet::dump(&mut st, me(), server.as_raw_fd(), server.as_fd()).unwrap();
    st.end(DumpOutcome::Killed);
    drop(server);
    write_range(&mut client, 51, 0, 10);
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        client.take_error().unwrap().is_none(),
        "no reset while locked"
    );
    assert_eq!(tcp::info(client.as_fd()).unwrap().state, tcp::ESTABLISHED);
    let fd = inet::restore(&rec).unwrap();
    inet::finish(fd.as_fd(), &rec).unwrap();
    inet::unlock([&rec]).unwrap();
    let mut server = TcpStream::from(fd);
    expect_range(&mut server, 51, 0, 10, Duration::from_secs(10));
    write_range(&mut client, 51, 10, 20);
    expect_range(&mut server, 51, 10, 20, Duration::from_secs(10));
}

#[test]
fn lock_holds_ipv4_segments_while_the_socket_is_gone() {
    lock_holds("127.0.0.1:0");
}

#[test]
fn lock_holds_ipv6_segments_while_the_socket_is_gone() {
    lock_holds("[::1]:0");
}

#[test]
fn restore_side_lock_for_a_migration_target() {
    if !can_repair() {
        return;
    }
    let rec = inet::InetRecord {
        family: libc::AF_INET,
        sotype: libc::SOCK_STREAM,
        protocol: libc::IPPROTO_TCP,
        state: tcp::ESTABLISHED,
        local: Some("127.0.0.1:5000".parse().unwrap()),
        peer: Some("127.0.0.1:40000".parse().unwrap()),
        ..Default::default()
    };
    let udp = inet::InetRecord {
        family: libc::AF_INET,
        sotype: libc::SOCK_DGRAM,
        protocol: libc::IPPROTO_UDP,
        local: Some("127.0.0.1:5000".parse().unwrap()),
        ..Default::default()
    };
    assert!(inet::lock_records([&udp]).unwrap().is_none());
    let lock = inet::lock_records([&rec, &udp]).unwrap().expect("a lock");
    let _guard = LockGuard(Some(lock.table().to_string()));
    let listed = std::process::Command::new("nft")
        .args(["list", "table", "inet", lock.table()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("127.0.0.1 . 40000 . 127.0.0.1 . 5000"),
        "{text}"
    );
    lock.remove().unwrap();
    assert!(!netlock::table_exists(lock.table()));
}
