//! Process attributes (scheduler, prctl, /proc) and job-control stops survive a
//! checkpoint: the restored process sees the same values as the original, and a stopped
//! process comes back stopped.

mod common;

use common::*;
use std::time::Duration;

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
        .to_string()
}

fn oom_score_adj(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .expect("oom_score_adj")
        .trim()
        .to_string()
}

#[test]
fn scheduler_and_prctl_attributes_come_back() {
    init();
    let dir = TestDir::new("attrs");
    let log = dir.join("log");
    let prog = build_c("attrs.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log")], &dir, "attrs");
    let before = wait_lines(&log, 2).last().cloned().unwrap();
    assert_eq!(oom_score_adj(orig.pid), "123");
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let n = log_lines(&log).len();
    let restored = restore_ok(&img, &[]);
    let after = wait_lines(&log, n + 2).last().cloned().unwrap();
    for key in ["nice", "policy", "cpus", "slack", "sub", "thp", "io"] {
        assert_eq!(
            field(&after, key),
            field(&before, key),
            "{key} after restore"
        );
    }
    // The values are the ones the program set, not defaults that happen to match.
    assert_eq!(field(&after, "nice"), "7");
    assert_eq!(field(&after, "policy"), "3", "SCHED_BATCH");
    assert_eq!(field(&after, "cpus"), "1");
    assert_eq!(field(&after, "slack"), "123456");
    assert_eq!(field(&after, "sub"), "1");
    assert_eq!(field(&after, "thp"), "1");
    assert_eq!(field(&after, "io"), ((2 << 13) | 6).to_string());
    assert_eq!(oom_score_adj(restored.pid), "123");
    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    show.ok("show");
    assert!(
        show.stdout.contains("\"timer_slack_ns\": 123456"),
        "{}",
        show.stdout
    );
}

fn state_of(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    s.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .unwrap_or('?')
}

#[test]
fn a_stopped_process_comes_back_stopped() {
    init();
    let dir = TestDir::new("stopped");
    let log = dir.join("log");
    let prog = build_c("counter.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "10"], &dir, "stopped");
    wait_lines(&log, 3);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(orig.pid),
        nix::sys::signal::SIGSTOP,
    )
    .unwrap();
    wait_until("stopped", TIMEOUT, || state_of(orig.pid) == 'T');
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let n = log_lines(&log).len();
    let restored = restore_ok(&img, &[]);
    wait_until("restored and stopped", TIMEOUT, || {
        state_of(restored.pid) == 'T'
    });
    assert_log_still(
        &log,
        Duration::from_millis(300),
        "a stopped process does not run",
    );
    assert_eq!(log_lines(&log).len(), n);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(restored.pid),
        nix::sys::signal::SIGCONT,
    )
    .unwrap();
    wait_lines(&log, n + 3);
    assert_consecutive(&log);
}

#[test]
fn leave_running_keeps_a_stopped_process_stopped() {
    init();
    let dir = TestDir::new("stopped-lr");
    let log = dir.join("log");
    let prog = build_c("counter.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "10"], &dir, "stopped-lr");
    wait_lines(&log, 3);
    let pid = nix::unistd::Pid::from_raw(orig.pid);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGSTOP).unwrap();
    wait_until("stopped", TIMEOUT, || state_of(orig.pid) == 'T');
    dump(orig.pid, &dir.join("img.spirit"), &["--leave-running"]).ok("dump");
    wait_until("still stopped", TIMEOUT, || state_of(orig.pid) == 'T');
    let n = log_lines(&log).len();
    assert_log_still(
        &log,
        Duration::from_millis(300),
        "still stopped after the dump",
    );
    nix::sys::signal::kill(pid, nix::sys::signal::SIGCONT).unwrap();
    wait_lines(&log, n + 3);
    orig.kill();
}
