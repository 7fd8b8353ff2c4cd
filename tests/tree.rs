//! Process trees: a session leader with a counting child, a child leading its own
//! process group, and a zombie child, checkpointed and restored together with their
//! pids, parent links, sessions and groups; the restored parent reaps the restored
//! zombie and gets its exit status.

mod common;

use common::*;
use std::fs;
use std::path::Path;

/// (state, ppid, pgid, sid) from /proc/PID/stat.
fn stat(pid: i32) -> (char, i32, i32, i32) {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("stat of {pid}: {e}"));
    let after = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f[i].parse::<i32>().expect("number");
    (f[0].chars().next().expect("state"), n(1), n(2), n(3))
}

fn pids(dir: &TestDir) -> (i32, i32, i32) {
    let v = read_pids(dir);
    (v[0], v[1], v[2])
}

fn reap_orphan(pid: i32) {
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

#[test]
fn a_tree_with_sessions_groups_and_a_zombie_comes_back_whole() {
    let dir = TestDir::new("tree");
    let prog = build_c("tree.c", &[]);
    let logs = ["root.log", "a.log", "c.log"].map(|l| dir.join(l));
    // Children first, the root last: dropped in reverse, the root dies first and its
    // children, re-parented to this test (the subreaper), are then killed and reaped.
    let (mut a, mut c);
    let mut root = Proc::spawn(&prog, &[&dir.s("")], &dir, "tree");
    let (pa, pb, pc) = pids(&dir);
    for l in &logs {
        wait_lines(l, 5);
    }
    let before = [root.pid, pa, pc].map(stat);
    assert_eq!(stat(pb).0, 'Z', "B is a zombie before the checkpoint");
    assert_eq!(before[0].3, root.pid, "the root leads its session");
    assert_eq!(before[2].2, pc, "C leads its group");

    let img = dir.join("tree.spirit");
    dump(root.pid, &img, &[]).ok("dump the tree");
    root.reap();
    // The children were re-parented to us when the root died.
    for p in [pa, pb, pc] {
        reap_orphan(p);
    }
    let counts: Vec<usize> = logs.iter().map(|l| assert_consecutive(l)).collect();

    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    show.ok("show the tree image");
    let v: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(
        v["processes"].as_array().map(|a| a.len()),
        Some(3),
        "three live processes"
    );
    let tree = v["header"]["tree"].as_array().expect("tree");
    assert_eq!(tree.len(), 4);
    assert!(tree
        .iter()
        .any(|n| n["pid"] == pb && n["zombie"] == true && n["exit_status"] == 7 << 8));

    let restored = restore_ok(&img, &[]);
    assert_eq!(restored.pid, root.pid, "the root keeps its pid");
    c = Proc::adopt(pc);
    a = Proc::adopt(pa);
    let root2 = restored;
    for (l, n) in logs.iter().zip(&counts) {
        wait_lines(l, n + 10);
        assert_consecutive(l);
    }
    let after = [root2.pid, pa, pc].map(stat);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (b.1, b.2, b.3),
            (a.1, a.2, a.3),
            "ppid, pgid and sid are as before"
        );
    }
    let z = stat(pb);
    assert_eq!(
        (z.0, z.1),
        ('Z', root2.pid),
        "B is again an unreaped child of the root"
    );

    fs::write(dir.join("go"), "").expect("go");
    wait_until("the root reaps B", TIMEOUT, || {
        Path::new(&dir.join("reaped")).exists()
    });
    wait_until("reaped file complete", TIMEOUT, || {
        fs::read_to_string(dir.join("reaped")).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(
        fs::read_to_string(dir.join("reaped"))
            .expect("reaped")
            .trim(),
        "1 7",
        "waitpid(B) gives exit 7"
    );
    drop(root2);
    a.kill();
    c.kill();
}

/// NSpid of a process: its pid here, then inside each nested pid namespace.
fn nspid(pid: i32) -> Vec<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pid_ns_keeps_the_pid_while_the_original_still_holds_it() {
    let dir = TestDir::new("pidns");
    let prog = build_c("counter.c", &[]);
    let log = dir.join("log");
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "10"], &dir, "counter");
    wait_lines(&log, 5);
    let img = dir.join("img");
    dump(orig.pid, &img, &["--leave-running"]).ok("dump, leaving the original running");
    // Without --pid-ns the pid is taken, and the message says what to do.
    let (run, _) = restore(&img, &["--allow-changed-files"]);
    run.fails(10, &["--pid-ns", "--new-pid"], "restore onto a taken pid");
    let copy = restore_ok(&img, &["--pid-ns", "--allow-changed-files"]);
    assert_ne!(
        copy.pid, orig.pid,
        "seen from here the copy has another pid"
    );
    assert_eq!(
        nspid(copy.pid).last(),
        Some(&orig.pid),
        "inside its namespace the copy has the original pid"
    );
    let init = parent_of(copy.pid).expect("the copy has a parent");
    assert_eq!(
        nspid(init).last(),
        Some(&1),
        "its parent is the namespace's init"
    );
    orig.kill();
    let n = log_lines(&log).len();
    wait_lines(&log, n + 10);
    assert!(copy.alive(), "the copy runs on after the original is gone");
    drop(copy);
    // The init ends with the root; it was ours (subreaper) once the restorer exited.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(init), None);
}

#[test]
fn a_process_group_whose_leader_is_gone_keeps_its_id() {
    let dir = TestDir::new("orphangroup");
    let prog = build_c("orphan_group.c", &[]);
    let log = dir.join("b.log");
    let mut b;
    let mut parent = Proc::spawn(&prog, &[&dir.s("")], &dir, "parent");
    let ids = read_pids(&dir);
    let (pa, pb) = (ids[0], ids[1]);
    wait_lines(&log, 5);
    assert_eq!(stat(pb).2, pa, "B is in the group of A, which is gone");
    assert!(!pid_exists(pa), "A was reaped");
    let img = dir.join("img");
    dump(parent.pid, &img, &[]).ok("dump");
    parent.reap();
    reap_orphan(pb);
    let n = assert_consecutive(&log);
    let restored = restore_ok(&img, &[]);
    b = Proc::adopt(pb);
    wait_lines(&log, n + 10);
    assert_consecutive(&log);
    let (_, ppid, pgid, _) = stat(pb);
    assert_eq!(
        (ppid, pgid),
        (restored.pid, pa),
        "B is back under its parent, in A's group"
    );
    assert!(!pid_exists(pa), "the placeholder leader is gone again");
    drop(restored);
    b.kill();
}
