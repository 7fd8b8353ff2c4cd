//! Processes blocked in a system call when the checkpoint is taken: after the restore
//! the call carries on. Sleeps neither return early nor start over from scratch; a read
//! or poll(-1) on a FIFO keeps waiting and gets the data written after the restore,
//! without a spurious EINTR.

mod common;

use common::*;
use std::io::Write;

const SLEEP_S: i64 = 3;
const NS: i64 = 1_000_000_000;

/// The value of `key=` in a log line.
fn field(line: &str, key: &str) -> i64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn sleep_test(mode: &str) {
    let dir = TestDir::new(mode);
    let log = dir.join("log");
    let img = dir.join("img.spirit");
    let prog = build_c("sleeper.c", &[]);
    let secs = SLEEP_S.to_string();
    let mut orig = Proc::spawn(&prog, &[mode, &dir.s("log"), &secs], &dir, mode);
    let first = wait_for_line(&log, "sleep 0 ");
    let t0: i64 = first.split_whitespace().nth(2).unwrap().parse().unwrap();
    // Take the checkpoint about a third into the first sleep.
    wait_until("1 s into the sleep", TIMEOUT, || mono_ns() - t0 >= NS);
    let frozen_from = mono_ns();
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let restored = restore_ok(&img, &[]);
    let frozen = mono_ns() - frozen_from;
    assert_eq!(restored.pid, orig.pid);
    assert!(
        !log_lines(&log).iter().any(|l| l.starts_with("slept 0")),
        "the first sleep ended before the checkpoint: the test did not catch it sleeping"
    );
    let slept = wait_for_line(&log, "slept 0 ");
    let (ret, errno, dt) = (
        field(&slept, "ret"),
        field(&slept, "errno"),
        field(&slept, "dt"),
    );
    eprintln!("{mode}: {slept} (frozen {} ms)", frozen / 1_000_000);
    assert_eq!((ret, errno), (0, 0), "{mode} returned early: {slept}");
    let want = SLEEP_S * NS;
    assert!(
        dt >= want - 20_000_000,
        "{mode} of {SLEEP_S} s lasted only {dt} ns across the checkpoint"
    );
    assert!(
        dt <= want + frozen + 500_000_000,
        "{mode} of {SLEEP_S} s lasted {dt} ns, more than the sleep plus the {frozen} ns \
         the process was frozen, dumped and restored (did it start over?)"
    );
    // And the program goes on to its next sleep.
    wait_for_line(&log, "sleep 1 ");
    assert!(restored.alive());
}

#[test]
fn nanosleep_resumes_with_the_remaining_time() {
    sleep_test("nanosleep");
}

#[test]
fn glibc_sleep_resumes_with_the_remaining_time() {
    sleep_test("sleep");
}

fn fifo_test(mode: &str, syscall_nr: i64) {
    let dir = TestDir::new(mode);
    let log = dir.join("log");
    let img = dir.join("img.spirit");
    let fifo = dir.join("fifo");
    let prog = build_c("sleeper.c", &[]);
    let mut orig = Proc::spawn(
        &prog,
        &[mode, &dir.s("log"), &fifo.to_string_lossy()],
        &dir,
        mode,
    );
    wait_for_line(&log, "ready");
    wait_until(
        &format!("the program blocked in syscall {syscall_nr}"),
        TIMEOUT,
        || blocked_syscall(orig.pid) == Some(syscall_nr),
    );
    let fds = fd_listing(orig.pid);
    let d = dump(orig.pid, &img, &[]);
    assert_eq!(
        d.code, 0,
        "dump of a program blocked in {mode} on a FIFO it owns failed (exit {}): {}\nits fds:\n{fds}",
        d.code, d.stderr
    );
    orig.reap();
    let restored = restore_ok(&img, &[]);
    assert_eq!(restored.pid, orig.pid);
    // Still blocked where it was, and nothing logged meanwhile (no spurious EINTR).
    wait_until("the restored program blocked again", TIMEOUT, || {
        blocked_syscall(restored.pid) == Some(syscall_nr)
    });
    assert_eq!(log_lines(&log), vec!["ready".to_string()]);
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblock()
        .open(&fifo)
        .expect("open the FIFO for writing");
    w.write_all(b"hello after restore\n").unwrap();
    wait_for_line(&log, "got hello after restore");
    let lines = log_lines(&log);
    let want: Vec<String> = if mode == "poll" {
        vec!["ready", "poll ret=1 revents=0x1", "got hello after restore"]
    } else {
        vec!["ready", "got hello after restore"]
    }
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(lines, want, "{mode}: unexpected log (EINTR?)");
    // And it keeps working.
    w.write_all(b"second\n").unwrap();
    wait_for_line(&log, "got second");
    assert!(!read_log(&log).contains("errno="), "{}", read_log(&log));
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

#[test]
fn read_on_own_fifo_resumes() {
    fifo_test("read", libc::SYS_read);
}

#[test]
fn poll_forever_on_own_fifo_resumes() {
    fifo_test("poll", libc::SYS_poll);
}
