//! Restored state beyond a plain counter: AVX and x87 registers live across the
//! checkpoint, four threads with TLS and a contended mutex (C and Rust), and python3.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Dump PROC (ending it), reap it, restore with the original pid; returns the restored
/// process and the number of log lines at the checkpoint.
fn checkpoint_and_restore(mut orig: Proc, dir: &TestDir) -> (Proc, usize) {
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let at_dump = log_lines(&dir.join("log")).len();
    let restored = restore_ok(&img, &[]);
    assert_eq!(restored.pid, orig.pid, "original pid kept");
    (restored, at_dump)
}

#[test]
fn avx_and_x87_state_survive() {
    if !cpu_has("avx2") {
        skip("avx_and_x87_state_survive", "this CPU has no avx2");
        return;
    }
    let dir = TestDir::new("avx");
    let log = dir.join("log");
    let prog = build_c("avx.c", &["-mavx2"]);
    // 100M iterations: a round takes ~0.1 s, nearly all of it inside the asm loop with
    // the registers live, so the checkpoint lands there.
    let orig = Proc::spawn(&prog, &[&dir.s("log"), "100000000"], &dir, "avx");
    wait_lines(&log, 2);
    let img = dir.join("img.spirit");
    let mut orig = orig;
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    // The checkpoint caught the AVX state live (XSTATE_BV bit 2), i.e. inside the loop.
    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    show.ok("show");
    let v: serde_json::Value = serde_json::from_str(&show.stdout).expect("show --json");
    let bv = v["processes"][0]["threads"][0]["xstate"]["xstate_bv"]
        .as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .expect("xstate_bv in show --json");
    assert!(
        bv & 0b100 != 0,
        "checkpoint did not catch live AVX state: xstate_bv {bv:#x}"
    );
    let at_dump = log_lines(&log).len();
    let restored = restore_ok(&img, &[]);
    assert_eq!(restored.pid, orig.pid);
    let lines = wait_lines(&log, at_dump + 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l,
            &format!("ok {i}"),
            "register state broken across the checkpoint (line {i}, {at_dump} rounds before it)"
        );
    }
}

#[derive(Debug)]
struct ThreadLine {
    id: u32,
    tid: i32,
    mine: u64,
    shared: u64,
}

fn parse_thread_log(log: &Path) -> Vec<ThreadLine> {
    log_lines(log)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let val = |i: usize, key: &str| -> &str {
                f.get(i)
                    .and_then(|s| s.strip_prefix(key))
                    .unwrap_or_else(|| panic!("bad thread log line {l:?}"))
            };
            ThreadLine {
                id: val(0, "T").parse().unwrap(),
                tid: val(1, "tid=").parse().unwrap(),
                mine: val(2, "mine=").parse().unwrap(),
                shared: val(3, "shared=").parse().unwrap(),
            }
        })
        .collect()
}

/// The log of a threads program is continuous: shared values 1, 2, 3... in log order,
/// each thread's own values 1, 2, 3... with one tid per thread. Returns thread id → tid
/// and how many lines each thread wrote.
fn check_thread_log(log: &Path) -> BTreeMap<u32, (i32, u64)> {
    let lines = parse_thread_log(log);
    let mut per: BTreeMap<u32, (i32, u64)> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l.shared,
            i as u64 + 1,
            "shared counter broken at line {i}: {l:?}"
        );
        let e = per.entry(l.id).or_insert((l.tid, 0));
        assert_eq!(e.0, l.tid, "thread T{} changed tid at line {i}", l.id);
        assert_eq!(
            l.mine,
            e.1 + 1,
            "thread T{} TLS counter broken at line {i}: {l:?}",
            l.id
        );
        e.1 = l.mine;
    }
    per
}

fn threads_test(prog: &Path, name: &str) {
    let dir = TestDir::new(name);
    let log = dir.join("log");
    let orig = Proc::spawn(prog, &[&dir.s("log")], &dir, name);
    wait_until("all 4 threads logged", TIMEOUT, || {
        check_thread_log(&log).len() == 4 && log_lines(&log).len() > 40
    });
    let tids_before = tids(orig.pid);
    assert_eq!(tids_before.len(), 4, "the program runs 4 threads");
    let (restored, _) = checkpoint_and_restore(orig, &dir);
    let before = check_thread_log(&log);
    let mut logged_tids: Vec<i32> = before.values().map(|(t, _)| *t).collect();
    logged_tids.sort();
    assert_eq!(logged_tids, tids_before, "threads log their tids");
    assert_eq!(
        tids(restored.pid),
        tids_before,
        "restored with the original tids"
    );
    // Every thread goes on: each writes at least 10 more lines.
    wait_until("every thread to log 10 more lines", TIMEOUT, || {
        let now = check_thread_log(&log);
        now.len() == 4 && now.iter().all(|(id, (_, n))| *n >= before[id].1 + 10)
    });
    let after = check_thread_log(&log);
    for (id, (tid, _)) in &after {
        assert_eq!(
            *tid, before[id].0,
            "thread T{id} has another tid after restore"
        );
    }
    assert_eq!(tids(restored.pid), tids_before);
}

#[test]
fn four_c_threads_with_tls_and_mutex() {
    threads_test(&build_c("threads.c", &[]), "cthreads");
}

#[test]
fn four_rust_threads_with_tls_and_mutex() {
    threads_test(&build_rust("threads.rs"), "rsthreads");
}

#[test]
fn python_loop() {
    let dir = TestDir::new("python");
    let log = dir.join("log");
    let script = Path::new(PROGS).join("loop.py");
    let orig = Proc::spawn(
        Path::new("python3"),
        &["-u", "-S", &script.to_string_lossy(), &dir.s("log")],
        &dir,
        "python",
    );
    wait_lines(&log, 5);
    let fds = fd_listing(orig.pid);
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", orig.pid)).unwrap();
    let (restored, at_dump) = checkpoint_and_restore(orig, &dir);
    assert!(at_dump >= 5, "python fds at dump:\n{fds}");
    wait_lines(&log, at_dump + 20);
    assert_consecutive(&log);
    assert!(restored.alive());
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/cmdline", restored.pid)).unwrap(),
        cmdline
    );
}
