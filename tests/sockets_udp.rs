//! End to end through the CLI: a UDP echo server is checkpointed and restored on the
//! same host and keeps answering a client outside the tree on the same port (ping-pong
//! before and after, IPv4 and IPv6). Datagrams are not held while the server is gone
//! (UDP has no connection to keep), so the client only sends again after the restore.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

fn ping(c: &UdpSocket, to: SocketAddr, n: u32) {
    let msg = format!("ping {n}");
    c.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = [0u8; 128];
    let (len, from) = c.recv_from(&mut buf).expect("the echo of a ping");
    assert_eq!(from, to, "answer from the server's address");
    assert_eq!(
        std::str::from_utf8(&buf[..len]).unwrap(),
        format!("echo {msg}")
    );
}

fn ping_pong(addr: &str, name: &str) {
    let dir = TestDir::new(name);
    let prog = build_c("udp_echo.c", &[]);
    let portfile = dir.join("port");
    let mut server = Proc::spawn(&prog, &[addr, &dir.s("port")], &dir, "udp");
    wait_until("the udp server's port", TIMEOUT, || portfile.exists());
    let port: u16 = std::fs::read_to_string(&portfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let sa = SocketAddr::new(addr.parse().unwrap(), port);
    let c = UdpSocket::bind(SocketAddr::new(addr.parse().unwrap(), 0)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for n in 0..10 {
        ping(&c, sa, n);
    }
    let img = dir.join("udp.spirit");
    dump(server.pid, &img, &[]).ok("dump the udp server");
    server.reap();
    let shown = spirit(&["show", &img.to_string_lossy(), "--json"]);
    shown.ok("show");
    assert!(shown.stdout.contains("udp"), "{}", shown.stdout);
    let mut restored = restore_ok(&img, &[]);
    for n in 10..20 {
        ping(&c, sa, n);
    }
    restored.kill();
}

#[test]
fn udp_ping_pong_ipv4() {
    ping_pong("127.0.0.1", "sockets_udp_v4");
}

#[test]
fn udp_ping_pong_ipv6() {
    ping_pong("::1", "sockets_udp_v6");
}
