//! Real servers from the distribution, checkpointed and restored on the same host
//! while a client outside the tree keeps one connection open: `redis-server` (INCR over
//! one connection, no reply lost or repeated) and `nginx` (master and two workers
//! running as www-data, keep-alive requests over one connection). Skipped, saying so,
//! when the program is not installed (scripts/setup.sh installs both).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn installed(prog: &str) -> Option<String> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{prog}"))
        .find(|p| Path::new(p).exists())
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect_when_up(sa: SocketAddr) -> TcpStream {
    let mut got = None;
    wait_until(&format!("a server listening on {sa}"), TIMEOUT * 3, || {
        got = TcpStream::connect(sa).ok();
        got.is_some()
    });
    let s = got.expect("connected");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Every process below `pid` (children first found through /proc's ppid).
fn descendants(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut work = vec![pid];
    while let Some(p) = work.pop() {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(q) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if parent_of(q) == Some(p) && !all.contains(&q) {
                all.push(q);
                work.push(q);
            }
        }
    }
    all
}

/// Kills a process and everything below it when dropped (the test's own processes).
struct Tree(i32);

impl Drop for Tree {
    fn drop(&mut self) {
        for p in descendants(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn incr(c: &mut TcpStream, r: &mut BufReader<TcpStream>) -> i64 {
    c.write_all(b"INCR spirit_counter\r\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).expect("redis reply");
    line.trim()
        .strip_prefix(':')
        .unwrap_or_else(|| panic!("redis replied {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn redis_keeps_serving_its_client() {
    let name = "sockets_redis";
    if !nix::unistd::geteuid().is_root() {
        skip(name, "TCP_REPAIR and nft need root");
        return;
    }
    let Some(redis) = installed("redis-server") else {
        skip(
            name,
            "redis-server is not installed (scripts/setup.sh installs it)",
        );
        return;
    };
    let dir = TestDir::new(name);
    let port = free_port();
    let mut cmd = Command::new(redis);
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--dir", &dir.s("")]);
    let mut server = Proc::start(cmd, &dir, "redis");
    let _guard = Tree(server.pid);
    let sa: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = connect_when_up(sa);
    let mut r = BufReader::new(c.try_clone().unwrap());
    for want in 1..=100 {
        assert_eq!(incr(&mut c, &mut r), want);
    }
    // A command in flight while the server is frozen and gone: its reply comes after.
    let img = dir.join("redis.spirit");
    let pid = server.pid;
    let dumping = std::thread::spawn(move || dump(pid, &img, &[]));
    std::thread::sleep(Duration::from_millis(20));
    c.write_all(b"INCR spirit_counter\r\n").unwrap();
    dumping.join().unwrap().ok("dump redis-server");
    let lock = LockGuard::of(&dir.join("redis.spirit"));
    assert!(lock.0.is_some(), "the image names its network lock");
    server.reap();
    let restored = restore_ok(&dir.join("redis.spirit"), &[]);
    let _guard2 = Tree(restored.pid);
    let mut line = String::new();
    r.read_line(&mut line)
        .expect("reply to the command sent during the dump");
    assert_eq!(line.trim(), ":101");
    for want in 102..=200 {
        assert_eq!(incr(&mut c, &mut r), want);
    }
    // And a new client is served too.
    let mut c2 = connect_when_up(sa);
    let mut r2 = BufReader::new(c2.try_clone().unwrap());
    assert_eq!(incr(&mut c2, &mut r2), 201);
    assert_eq!(incr(&mut c, &mut r), 202);
    assert_lock_gone(&lock);
}

fn assert_lock_gone(lock: &LockGuard) {
    let t = lock.0.as_deref().unwrap_or_default();
    assert_ne!(
        sh(&format!("nft list table inet {t}")).code,
        0,
        "lock table {t} left"
    );
}

fn http_get(c: &mut TcpStream) -> String {
    c.write_all(b"GET / HTTP/1.1\r\nHost: spirit\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).expect("nginx response");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn nginx_master_and_workers_keep_a_keepalive_connection() {
    let name = "sockets_nginx";
    if !nix::unistd::geteuid().is_root() {
        skip(name, "TCP_REPAIR and nft need root");
        return;
    }
    let Some(nginx) = installed("nginx") else {
        skip(
            name,
            "nginx is not installed (scripts/setup.sh installs nginx-light)",
        );
        return;
    };
    let dir = TestDir::new(name);
    dir.open_to_all();
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "user www-data;\ndaemon off;\nmaster_process on;\nworker_processes 2;\npid {pid};\nerror_log {err};\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off;\n  server {{ listen 127.0.0.1:{port}; keepalive_timeout 60; keepalive_requests 1000;\n    location / {{ return 200 \"ok\\n\"; }} }} }}\n",
            pid = dir.s("nginx.pid"),
            err = dir.s("error.log"),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(nginx);
    cmd.args([
        "-p",
        &dir.s(""),
        "-c",
        &conf.to_string_lossy(),
        "-e",
        &dir.s("error.log"),
    ]);
    let mut master = Proc::start(cmd, &dir, "nginx");
    let _guard = Tree(master.pid);
    let sa: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = connect_when_up(sa);
    wait_until("two nginx workers", TIMEOUT, || {
        descendants(master.pid).len() == 2
    });
    for w in descendants(master.pid) {
        let status = std::fs::read_to_string(format!("/proc/{w}/status")).unwrap();
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .to_string();
        assert!(
            uid.split_whitespace().nth(1) == Some("33"),
            "worker {w} runs as www-data: {uid}"
        );
    }
    for _ in 0..5 {
        assert_eq!(http_get(&mut c), "ok\n");
    }
    let workers = descendants(master.pid);
    let img = dir.join("nginx.spirit");
    dump(master.pid, &img, &[]).ok("dump nginx's tree");
    let lock = LockGuard::of(&img);
    assert!(lock.0.is_some(), "the image names its network lock");
    master.reap();
    // The workers, killed by the dump, come back to this test (a subreaper) to be reaped
    // before their pids are free for the restore.
    for w in workers {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(w), None);
        wait_until(&format!("worker {w} gone"), TIMEOUT, || !pid_exists(w));
    }
    let restored = restore_ok(&img, &[]);
    let _guard2 = Tree(restored.pid);
    for _ in 0..5 {
        assert_eq!(http_get(&mut c), "ok\n");
    }
    let mut c2 = connect_when_up(sa);
    assert_eq!(http_get(&mut c2), "ok\n");
    assert_eq!(http_get(&mut c), "ok\n");
    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    assert!(
        !log.contains("[alert]") && !log.contains("[emerg]"),
        "{log}"
    );
    assert_lock_gone(&lock);
}
