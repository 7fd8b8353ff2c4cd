//! Checkpoint and restore of a simple counter (dynamic and static), with the original
//! pid, after `--leave-running`, through a pipe, and twice in a row. Continuity is
//! judged by the program's own log: every number once, in order.

mod common;

use common::*;
use std::fs;

/// Start the counter writing to `dir/log` every `ms` and wait until it has written a few
/// lines.
fn start_counter(dir: &TestDir, flags: &[&str], ms: &str) -> Proc {
    let prog = build_c("counter.c", flags);
    let p = Proc::spawn(&prog, &[&dir.s("log"), ms], dir, "counter");
    wait_lines(&dir.join("log"), 5);
    p
}

/// Dump (killing the process), reap the original, restore it with its own pid, and check
/// that it carries on counting without a gap or a repeat.
fn dump_kill_restore_same_pid(dir: &TestDir, mut orig: Proc) -> Proc {
    let log = dir.join("log");
    let img = dir.join("img.spirit");
    let comm = fs::read_to_string(format!("/proc/{}/comm", orig.pid)).unwrap();
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    assert!(
        !pid_exists(orig.pid),
        "original pid still exists after reaping"
    );
    let at_dump = assert_consecutive(&log);
    assert_log_still(
        &log,
        std::time::Duration::from_millis(100),
        "after a dump that ended the process",
    );
    let restored = restore_ok(&img, &[]);
    assert_eq!(
        restored.pid, orig.pid,
        "restore without --new-pid must keep the pid"
    );
    assert_eq!(
        tids(restored.pid),
        vec![orig.pid],
        "restored process has the original tid set"
    );
    assert_eq!(
        fs::read_to_string(format!("/proc/{}/comm", restored.pid)).unwrap(),
        comm
    );
    wait_lines(&log, at_dump + 20);
    let n = assert_consecutive(&log);
    assert!(n >= at_dump + 20);
    restored
}

#[test]
fn dynamic_counter_keeps_pid_and_counts_on() {
    let dir = TestDir::new("dyn");
    let orig = start_counter(&dir, &[], "10");
    let exe = fs::read_link(format!("/proc/{}/exe", orig.pid)).unwrap();
    let maps_before = fs::read_to_string(format!("/proc/{}/maps", orig.pid)).unwrap();
    let restored = dump_kill_restore_same_pid(&dir, orig);
    assert_eq!(
        fs::read_link(format!("/proc/{}/exe", restored.pid)).unwrap(),
        exe
    );
    // Same address space layout: every mapping back at its address with its path.
    let layout = |m: &str| -> Vec<String> {
        m.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} {} {}", f[0], f[1], f.get(5).unwrap_or(&""))
            })
            .collect()
    };
    let maps_after = fs::read_to_string(format!("/proc/{}/maps", restored.pid)).unwrap();
    assert_eq!(layout(&maps_after), layout(&maps_before));
}

#[test]
fn static_counter_keeps_pid_and_counts_on() {
    let dir = TestDir::new("static");
    let orig = start_counter(&dir, &["-static"], "10");
    dump_kill_restore_same_pid(&dir, orig);
}

#[test]
fn leave_running_then_restore_later() {
    let dir = TestDir::new("leave");
    let log = dir.join("log");
    let img = dir.join("img.spirit");
    let mut orig = start_counter(&dir, &[], "10");
    dump(orig.pid, &img, &["--leave-running"]).ok("dump --leave-running");
    // The original runs on untouched.
    let n = log_lines(&log).len();
    wait_lines(&log, n + 20);
    assert!(orig.alive());
    assert_consecutive(&log);
    // End it, then bring back the checkpoint: the log was written further by the
    // original after the checkpoint, so the restored one repeats from the checkpoint
    // number. The file offset is O_APPEND, so the restored process appends.
    orig.kill();
    let before_restore = log_lines(&log);
    // The log grew since the checkpoint: the restore accepts that only when asked.
    let (run, none) = restore(&img, &[]);
    assert!(none.is_none());
    run.fails(
        11,
        &[&dir.s("log"), "--allow-changed-files"],
        "restore of a changed log",
    );
    let restored = restore_ok(&img, &["--allow-changed-files"]);
    assert_eq!(restored.pid, orig.pid);
    wait_lines(&log, before_restore.len() + 20);
    let lines = log_lines(&log);
    let tail: Vec<u64> = lines[before_restore.len()..]
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    // The restored process continues from where the checkpoint was taken: its first
    // number is within what the original had written, then strictly consecutive.
    let first = tail[0];
    assert!(
        (first as usize) < before_restore.len() && first >= 5,
        "restored process starts at {first}, original wrote {}",
        before_restore.len()
    );
    for (i, v) in tail.iter().enumerate() {
        assert_eq!(*v, first + i as u64, "restored sequence broken: {tail:?}");
    }
}

#[test]
fn dump_through_a_pipe_into_restore() {
    let dir = TestDir::new("pipe");
    let log = dir.join("log");
    let pf = dir.join("pipe.pid");
    let mut orig = start_counter(&dir, &[], "10");
    // The dump ends the original only once the whole image is out, while the restore is
    // still reading it: the original pid cannot be free yet, so the restore takes a new
    // one.
    let line = format!(
        "{SPIRIT} dump {} -o - | {SPIRIT} restore - --detach --new-pid --pidfile {}",
        orig.pid,
        pf.display()
    );
    let run = sh(&line);
    run.ok("dump | restore");
    orig.reap();
    let pid: i32 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    let restored = Proc::adopt(pid);
    assert_ne!(restored.pid, orig.pid);
    assert!(
        run.stdout.split_whitespace().any(|w| w == pid.to_string()),
        "restore did not print the pid {pid}: {:?}",
        run.stdout
    );
    let n = log_lines(&log).len();
    wait_lines(&log, n + 20);
    assert_consecutive(&log);
    assert!(restored.alive());
}

#[test]
fn dump_restore_dump_restore() {
    let dir = TestDir::new("twice");
    let orig = start_counter(&dir, &[], "10");
    let first = dump_kill_restore_same_pid(&dir, orig);
    let second = dump_kill_restore_same_pid(&dir, first);
    // And once more with fresh pids.
    let log = dir.join("log");
    let img = dir.join("img3.spirit");
    let mut second = second;
    dump(second.pid, &img, &[]).ok("third dump");
    second.reap();
    let n = assert_consecutive(&log);
    let third = restore_ok(&img, &["--new-pid"]);
    assert_ne!(third.pid, second.pid);
    wait_lines(&log, n + 20);
    assert_consecutive(&log);
}

#[test]
fn restore_without_detach_waits_and_exits_with_the_status() {
    let dir = TestDir::new("wait");
    let log = dir.join("log");
    let img = dir.join("img.spirit");
    let prog = build_c("counter.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "10", "exit-at=80"], &dir, "counter");
    wait_lines(&log, 5);
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let at_dump = assert_consecutive(&log);
    assert!(at_dump < 80, "the counter finished before the checkpoint");
    // In the foreground: spirit restore is the parent and waits for the program, which
    // counts to 80 and exits 42.
    let run = spirit(&["restore", &img.to_string_lossy()]);
    // Should it have been left behind (then it is our child, through the subreaper),
    // end it; otherwise its pid is not ours any more and must not be touched.
    let left = pid_alive(orig.pid) && parent_of(orig.pid) == Some(std::process::id() as i32);
    let _guard = left.then(|| Proc::adopt(orig.pid));
    assert!(!left, "restore returned but left the program running");
    assert_eq!(
        run.code, 42,
        "restore must exit with the program's status; stderr: {}",
        run.stderr
    );
    assert_eq!(assert_consecutive(&log), 81);
}

#[test]
fn check_passes_here() {
    let run = spirit(&["check"]);
    run.ok("spirit check");
    assert!(!run.stdout.is_empty() || !run.stderr.is_empty());
}

#[test]
fn dump_through_a_pipe_into_restore_keeps_the_pid() {
    let dir = TestDir::new("pipepid");
    let log = dir.join("log");
    let pf = dir.join("pipe.pid");
    let orig = start_counter(&dir, &[], "10");
    let pid = orig.pid;
    // The dump ends the original once the image is out; the restore, still reading,
    // must wait until the pid is free, which happens when we reap the original: do
    // that as soon as it dies, while the pipeline runs.
    let reaper = std::thread::spawn(move || {
        let mut orig = orig;
        orig.reap();
        orig
    });
    let line = format!(
        "{SPIRIT} dump {pid} -o - | {SPIRIT} restore - --detach --pidfile {}",
        pf.display()
    );
    let run = sh(&line);
    if run.code != 0 {
        // The dump may have failed and left the original running: end it (it is still
        // our unreaped child, so the pid is ours) so the reaper returns.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let orig = reaper.join().unwrap();
    let restored = fs::read_to_string(&pf)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map(Proc::adopt);
    run.ok("dump | restore keeping the pid");
    let restored = restored.expect("pid file");
    assert_eq!(restored.pid, orig.pid, "the original pid is kept");
    let n = log_lines(&log).len();
    wait_lines(&log, n + 20);
    assert_consecutive(&log);
}
