//! Unix sockets across checkpoint and restore: pairs between a parent and its child
//! with data queued (datagram boundaries, a descriptor in flight), seqpacket, abstract
//! names, a named stream server with an accepted connection (data queued both ways)
//! and a client not yet accepted, and sockets connected outside the tree: refused by
//! default naming both ends (the process runs on), reconnected when asked.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};

fn show(img: &Path) -> Value {
    let run = spirit(&["show", &img.to_string_lossy(), "--json"]);
    run.ok("show");
    serde_json::from_str(&run.stdout).expect("show json")
}

fn sockets_of(v: &Value, pid: i32) -> Vec<Value> {
    let p = v["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("process {pid} in the image"));
    p["sections"]["sockets"]["content"]["sockets"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("sockets section of {pid}: {p}"))
}

fn reap_orphan(pid: i32) {
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

fn go(dir: &TestDir) {
    fs::write(dir.join("go"), "").expect("go");
}

#[test]
fn pairs_between_parent_and_child_with_queued_data_and_a_file_in_flight() {
    let dir = TestDir::new("sk-pair");
    fs::write(dir.join("data.txt"), "0123456789").unwrap();
    let prog = build_c("sockets_unix.c", &[]);
    let out = dir.join("pair.out");
    let mut parent = Proc::spawn(&prog, &["pair"], &dir, "pair");
    let pids = read_pids(&dir);
    let (pp, pc) = (pids[0], pids[1]);
    wait_for_line(&out, "ready");

    // The child alone: its peers are in its parent, outside what is checkpointed.
    dump(pc, &dir.join("child.spirit"), &[]).fails(
        1,
        &[
            &pc.to_string(),
            "outside the checkpointed tree",
            &format!("process {pp}"),
        ],
        "dump of the child without its parent",
    );
    assert!(
        pid_alive(pc) && pid_alive(pp),
        "a failed checkpoint leaves both running"
    );

    // Peeking at the queues leaves them as they were (and SO_PEEK_OFF as it was): a
    // first checkpoint lets the tree run on, the second ends it; the programs check
    // every byte after the restore.
    dump(pp, &dir.join("first.spirit"), &["--leave-running"]).ok("dump, left running");
    let img = dir.join("img.spirit");
    dump(pp, &img, &[]).ok("dump parent and child");
    parent.reap();
    reap_orphan(pc);

    let v = show(&img);
    let child = sockets_of(&v, pc);
    let dgram = child
        .iter()
        .find(|s| s["type"] == "datagram" && s["queued"] == 3)
        .unwrap_or_else(|| panic!("the child's datagram end with 3 queued: {child:?}"));
    let sizes: Vec<u64> = dgram["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![3, 4, 5], "datagram boundaries");
    let stream = child
        .iter()
        .find(|s| s["type"] == "stream" && s["queued_files"] == 1)
        .unwrap_or_else(|| panic!("a file in flight to the child: {child:?}"));
    assert_eq!(stream["messages"][0]["files"][0]["pos"], 3);
    assert_eq!(stream["options"]["pass_cred"], true);
    let parent_socks = sockets_of(&v, pp);
    assert!(parent_socks
        .iter()
        .any(|s| s["type"] == "seqpacket" && s["queued"] == 2));
    assert!(parent_socks.iter().any(|s| s["name"]
        .as_str()
        .is_some_and(|n| n == format!("@spirit-test-{pp}"))));

    go(&dir);
    let _root = restore_ok(&img, &[]);
    wait_until("parent ok", TIMEOUT, || {
        read_log(&out).contains("parent ok") || read_log(&out).contains("FAIL")
    });
    let log = read_log(&out);
    assert!(log.contains("child ok"), "{log}");
    assert!(log.contains("parent ok child-status=0"), "{log}");
    assert!(!log.contains("FAIL"), "{log}");
}

#[test]
fn a_named_server_with_an_accepted_and_a_waiting_client() {
    let dir = TestDir::new("sk-server");
    let prog = build_c("sockets_unix.c", &[]);
    let out = dir.join("server.out");
    let mut server = Proc::spawn(&prog, &["server"], &dir, "server");
    let pids = read_pids(&dir);
    wait_for_line(&out, "ready");

    let img = dir.join("img.spirit");
    dump(server.pid, &img, &[]).ok("dump the server and its clients");
    server.reap();
    reap_orphan(pids[1]);
    reap_orphan(pids[2]);

    let v = show(&img);
    let socks = sockets_of(&v, pids[0]);
    let l = socks
        .iter()
        .find(|s| s["state"] == "listening")
        .unwrap_or_else(|| panic!("listener: {socks:?}"));
    assert_eq!(l["name"], "srv.sock");
    assert_eq!(l["backlog"], 7);
    assert_eq!(l["pending"].as_array().map(Vec::len), Some(1));
    assert_eq!(l["file"]["mode"].as_u64().map(|m| m & 0o777), Some(0o600));
    let b = sockets_of(&v, pids[2]);
    assert!(b[0]["waiting_on_listener"].is_u64(), "B waits: {b:?}");

    go(&dir);
    let _root = restore_ok(&img, &[]);
    wait_for_line(&out, "server ok");
    let log = read_log(&out);
    assert!(log.contains("A ok") && log.contains("B ok"), "{log}");
    assert!(log.contains("server ok A=0 B=0"), "{log}");
    assert!(!log.contains("FAIL"), "{log}");
}

#[test]
fn a_datagram_socket_connected_outside_is_refused_then_reconnected() {
    let dir = TestDir::new("sk-ext");
    let path = dir.join("log.sock");
    let logger = UnixDatagram::bind(&path).expect("bind the outside logger");
    let prog = build_c("sockets_unix.c", &[]);
    let out = dir.join("ext.out");
    let mut p = Proc::spawn(&prog, &["external", &path.to_string_lossy()], &dir, "ext");
    wait_for_line(&out, "ready");
    let mut buf = [0u8; 64];
    let n = logger.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"log-1");

    let img = dir.join("img.spirit");
    let ours = format!("/proc/{}/fd/3", p.pid);
    let ino = fs::read_link(&ours).unwrap().to_string_lossy().into_owned();
    dump(p.pid, &img, &[]).fails(
        1,
        &[
            &p.pid.to_string(),
            "fd 3",
            &ino,
            &path.to_string_lossy(),
            &format!("held by process {}", std::process::id()),
            "--ext-unix-reconnect",
        ],
        "dump of a socket connected outside",
    );
    assert!(p.alive(), "a refused checkpoint leaves the process running");
    assert!(!img.exists());

    // A selector for another peer does not cover this one.
    dump(p.pid, &img, &["--ext-unix-reconnect=/run/not-this-one"]).fails(
        1,
        &["fd 3", "outside the checkpointed tree"],
        "dump with reconnect for another peer",
    );
    let only_this = format!("--ext-unix-reconnect={}", path.to_string_lossy());
    dump(p.pid, &img, &[&only_this]).ok("dump with reconnect for this peer");
    p.reap();
    let v = show(&img);
    let s = &sockets_of(&v, p.pid)[0];
    assert_eq!(s["peer_kind"], "reconnect");
    assert_eq!(s["peer_name"], path.to_string_lossy().as_ref());

    go(&dir);
    let _r = restore_ok(&img, &[]);
    wait_for_line(&out, "ext ok");
    logger
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let n = logger.recv(&mut buf).expect("log-2 reaches the logger");
    assert_eq!(&buf[..n], b"log-2");
}

#[test]
fn stdout_on_a_socket_outside_the_tree_is_refused_naming_the_fd() {
    let dir = TestDir::new("sk-stdout");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let prog = build_c("sockets_unix.c", &[]);
    let mut cmd = Command::new(&prog);
    cmd.arg("solo");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        .current_dir(dir.path());
    spirit_kmod::close_inherited_fds(&mut cmd);
    let child = cmd.spawn().expect("start sleeper");
    let mut p = Proc::adopt(child.id() as i32);
    std::mem::forget(child);
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut &ours, &mut buf).expect("ready on our socket");
    assert_eq!(&buf[..n], b"ready\n");
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &[]).fails(
        1,
        &[
            &p.pid.to_string(),
            "fd 1",
            "unix stream socket",
            "outside the checkpointed tree",
        ],
        "dump of a process whose stdout is our socket",
    );
    assert!(p.alive(), "the process runs on");
    drop(ours);
    p.kill();
}

/// `(pid, groups)` of netlink socket `inode` from /proc/net/netlink.
fn netlink_entry(inode: u64) -> Option<(u32, String)> {
    let t = fs::read_to_string("/proc/net/netlink").ok()?;
    t.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].to_string()))
    })
}

fn socket_inode(pid: i32, fd: i32) -> u64 {
    let t = fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("fd link");
    let t = t.to_string_lossy();
    t.trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap_or_else(|_| panic!("fd {fd} of {pid} is {t}"))
}

fn ask(path: &Path, what: &str) -> String {
    let mut s = UnixStream::connect(path).expect("connect to the server");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    std::io::Write::write_all(&mut s, what.as_bytes()).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).expect("answer");
    out
}

#[test]
fn a_listener_shared_by_prefork_workers_and_a_netlink_socket() {
    let dir = TestDir::new("sk-prefork");
    let prog = build_c("sockets_unix.c", &[]);
    let mut p = Proc::spawn(&prog, &["prefork"], &dir, "prefork");
    let pids = read_pids(&dir);
    wait_for_line(&dir.join("prefork.out"), "ready");
    let sock = dir.join("pf.sock");
    assert!(ask(&sock, "hi").ends_with(":hi"));
    let nl_before = netlink_entry(socket_inode(p.pid, 4)).expect("netlink socket listed");

    // A checkpoint that lets the tree run on leaves every queue and socket as it was.
    let img = dir.join("img.spirit");
    dump(p.pid, &dir.join("first.spirit"), &["--leave-running"]).ok("dump, left running");
    assert!(ask(&sock, "again").ends_with(":again"));

    dump(p.pid, &img, &[]).ok("dump the server and its workers");
    p.reap();
    reap_orphan(pids[1]);
    reap_orphan(pids[2]);
    let v = show(&img);
    let parent = sockets_of(&v, pids[0]);
    let nl = parent
        .iter()
        .find(|s| s["family"] == "netlink")
        .unwrap_or_else(|| panic!("netlink socket: {parent:?}"));
    assert_eq!(nl["groups"], serde_json::json!([1]));
    assert_eq!(nl["portid"], nl_before.0);
    // The listener is recorded once; each worker names its inode.
    for w in &pids[1..] {
        let s = sockets_of(&v, *w);
        assert_eq!(s[0]["family"], "same as another fd", "{s:?}");
    }

    let root = restore_ok(&img, &[]);
    let mut answers = Vec::new();
    for i in 0..6 {
        answers.push(ask(&sock, &format!("q{i}")));
    }
    assert!(answers.iter().all(|a| a.starts_with('w')), "{answers:?}");
    // One listener in all three processes.
    let l = socket_inode(root.pid, 3);
    for w in &pids[1..] {
        assert_eq!(socket_inode(*w, 3), l, "worker {w} shares the listener");
    }
    let nl_after = netlink_entry(socket_inode(root.pid, 4)).expect("netlink socket restored");
    assert_eq!(nl_after, nl_before, "port id and groups");
    for w in &pids[1..] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*w),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn a_socket_connected_outside_is_handed_over_with_inherit_fd() {
    let dir = TestDir::new("sk-inherit");
    let path = dir.join("log.sock");
    let logger = UnixDatagram::bind(&path).expect("bind the outside logger");
    logger
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let prog = build_c("sockets_unix.c", &[]);
    let out = dir.join("ext.out");
    let mut p = Proc::spawn(&prog, &["external", &path.to_string_lossy()], &dir, "ext");
    wait_for_line(&out, "ready");
    let ino = socket_inode(p.pid, 3);
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &["--ext-unix-inherit"]).ok("dump with inherit");
    p.reap();

    // Without the descriptor the restore is refused naming the key to give.
    let key = format!("socket:[{ino}]");
    let (run, _) = restore(&img, &[]);
    run.fails(
        1,
        &["--inherit-fd", &key],
        "restore without the inherited socket",
    );

    // A new socket connected to the logger, given as our fd N (inherited by spirit).
    let given = UnixDatagram::unbound().unwrap();
    given.connect(&path).unwrap();
    use std::os::fd::AsRawFd;
    let n = given.as_raw_fd();
    nix::fcntl::fcntl(
        n,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let arg = format!("fd[{n}]:{key}");
    let _r = restore_ok(&img, &["--inherit-fd", &arg]);
    drop(given);
    let mut buf = [0u8; 64];
    let got = logger.recv(&mut buf).unwrap();
    assert_eq!(&buf[..got], b"log-1", "sent before the checkpoint");
    go(&dir);
    wait_for_line(&out, "ext ok");
    let got = logger
        .recv(&mut buf)
        .expect("log-2 through the given socket");
    assert_eq!(&buf[..got], b"log-2");
}

#[test]
fn a_pipe_in_flight_is_refused_naming_it() {
    let dir = TestDir::new("sk-inflight");
    let prog = build_c("sockets_unix.c", &[]);
    let p = Proc::spawn(&prog, &["inflight"], &dir, "inflight");
    wait_for_line(&dir.join("inflight.out"), "ready");
    dump(p.pid, &dir.join("img.spirit"), &[]).fails(
        1,
        &[&p.pid.to_string(), "in flight", "pipe:["],
        "dump with a pipe in flight",
    );
    assert!(p.alive(), "the process runs on");
}

#[test]
fn a_socket_in_flight_with_its_own_queue() {
    let dir = TestDir::new("sk-passsock");
    let prog = build_c("sockets_unix.c", &[]);
    let out = dir.join("passsock.out");
    let mut p = Proc::spawn(&prog, &["passsock"], &dir, "passsock");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &[]).ok("dump with a socket in flight");
    p.reap();
    let v = show(&img);
    let proc_ = &v["processes"][0]["sections"]["sockets"]["content"];
    let flying = proc_["in_flight"]
        .as_array()
        .expect("a socket in flight recorded");
    assert_eq!(flying[0]["queued"], 1, "{flying:?}");
    go(&dir);
    let _r = restore_ok(&img, &[]);
    wait_until("passsock ok", TIMEOUT, || {
        let l = read_log(&out);
        l.contains("passsock ok") || l.contains("FAIL")
    });
    assert!(read_log(&out).contains("passsock ok"), "{}", read_log(&out));
}

#[test]
fn a_failed_restore_removes_the_socket_files_it_made() {
    let dir = TestDir::new("sk-fail");
    let path = dir.join("log.sock");
    let _logger = UnixDatagram::bind(&path).expect("bind the outside logger");
    let prog = build_c("sockets_unix.c", &[]);
    let mut p = Proc::spawn(
        &prog,
        &["extfork", &path.to_string_lossy()],
        &dir,
        "extfork",
    );
    let pids = read_pids(&dir);
    wait_for_line(&dir.join("extfork.out"), "ready");
    // The child closes the listener it inherited at fd 3, then its own socket takes fd 3.
    let listener = socket_inode(pids[0], 3);
    let listener_link = format!("socket:[{listener}]");
    wait_until("the child connected", TIMEOUT, || {
        fs::read_link(format!("/proc/{}/fd/3", pids[1]))
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:[") && *t != *listener_link)
    });
    let ino = socket_inode(pids[1], 3);
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &["--ext-unix-inherit"]).ok("dump");
    p.reap();
    reap_orphan(pids[1]);
    let own = dir.join("own.sock");
    assert!(own.exists(), "the original leaves its socket file");
    // The parent binds own.sock again before forking the child, whose socket to hand
    // over is a descriptor the restorer does not have: the restore fails after the file
    // was made, and takes it away again.
    let arg = format!("fd[900]:socket:[{ino}]");
    let (run, _) = restore(&img, &["--inherit-fd", &arg]);
    run.fails(
        1,
        &["--inherit-fd", "900"],
        "restore with a missing descriptor",
    );
    assert!(
        !own.exists(),
        "the socket file the failed restore made is gone"
    );
    assert!(
        procs_in(dir.path()).is_empty(),
        "no process left: {:?}",
        procs_in(dir.path())
    );
}
