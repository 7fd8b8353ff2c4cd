//! A process's security state survives a checkpoint: capabilities dropped before it
//! stay dropped (every set, per thread), no_new_privs stays set, seccomp filters still
//! filter (a refused syscall still returns the filter's errno, a forbidden one still
//! kills the process), each thread keeps its own filter layout, and a checkpoint spirit
//! cannot take whole is refused with the process left running.

mod common;

use common::*;
use std::fs;

const FIELDS: [&str; 8] = [
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
];

/// The security lines of /proc/PID/task/TID/status for every thread, by tid.
fn security_of(pid: i32) -> Vec<(i32, Vec<String>)> {
    tids(pid)
        .into_iter()
        .map(|tid| {
            let st = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
            let lines = FIELDS
                .iter()
                .map(|f| {
                    st.lines()
                        .find(|l| l.split(':').next() == Some(f))
                        .unwrap_or_else(|| panic!("{f} missing in status of {tid}"))
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            (tid, lines)
        })
        .collect()
}

fn field<'a>(sec: &'a [(i32, Vec<String>)], tid: i32, name: &str) -> &'a str {
    let i = FIELDS.iter().position(|f| *f == name).unwrap();
    let l = &sec.iter().find(|(t, _)| *t == tid).unwrap().1[i];
    l.split_whitespace().nth(1).unwrap()
}

fn comm(pid: i32, tid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().as_raw() != 0 {
        skip(
            test,
            "needs root (seccomp filters are read with CAP_SYS_ADMIN)",
        );
        return false;
    }
    true
}

#[test]
fn seccomp_filters_nnp_and_capabilities_survive() {
    if !root_or_skip("seccomp_filters_nnp_and_capabilities_survive") {
        return;
    }
    let dir = TestDir::new("seccomp");
    let log = dir.join("log");
    let prog = build_c("sandboxed.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log")], &dir, "sandboxed");
    wait_for_line(&log, "ready");
    wait_lines(&log, 3);
    let before = security_of(orig.pid);
    assert_eq!(before.len(), 2, "two threads");
    let (main, worker) = (before[0].0, before[1].0);
    // The program really is what the test says.
    assert_eq!(field(&before, main, "NoNewPrivs"), "1");
    assert_eq!(field(&before, main, "Seccomp"), "2");
    assert_eq!(field(&before, main, "Seccomp_filters"), "2");
    assert_eq!(field(&before, worker, "Seccomp_filters"), "3");
    let bnd = u64::from_str_radix(field(&before, main, "CapBnd"), 16).unwrap();
    assert_eq!(
        bnd & (1 << 13),
        0,
        "CAP_NET_RAW dropped from the bounding set"
    );
    assert_ne!(field(&before, main, "CapAmb"), "0000000000000000");
    assert_eq!(comm(orig.pid, worker), "sb-worker");
    let last = log_lines(&log).last().cloned().unwrap();
    assert!(last.contains("ppid=-1 errno=95"), "{last}");

    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let at_dump = log_lines(&log).len();

    // show renders the filters and capabilities.
    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    show.ok("show");
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let sec = &v["processes"][0]["security"];
    assert_eq!(sec[0]["seccomp"], "filter");
    assert_eq!(sec[0]["no_new_privs"], true);
    assert_eq!(sec[0]["filters"].as_array().unwrap().len(), 2);
    assert_eq!(
        sec[0]["filters"][1]["flags"], "0x2",
        "SECCOMP_FILTER_FLAG_LOG kept"
    );
    assert_eq!(sec[1]["filters"].as_array().unwrap().len(), 3);
    assert_eq!(v["processes"][0]["threads"][1]["name"], "sb-worker");

    let restored = restore_ok(&img, &[]);
    assert_eq!(restored.pid, main);
    let lines = wait_lines(&log, at_dump + 5);
    let after = security_of(restored.pid);
    assert_eq!(before, after, "security state of every thread as before");
    assert_eq!(comm(restored.pid, worker), "sb-worker");
    // The filters still act: getppid still returns the filter's errno (main thread),
    // getuid still EDOM in the worker (its own filter).
    for l in &lines[at_dump..] {
        assert!(
            l.contains("ppid=-1 errno=95 uid_errno=33"),
            "after restore: {l}"
        );
    }
    // And uname still kills the process.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(restored.pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let mut restored = restored;
    let status = restored.reap();
    assert!(status.contains("SIGSYS"), "killed by the filter: {status}");
    assert!(
        !read_log(&log).contains("uname returned"),
        "uname ran after the restore"
    );
}

#[test]
fn nnp_and_dropped_capabilities_without_filters_survive() {
    if !root_or_skip("nnp_and_dropped_capabilities_without_filters_survive") {
        return;
    }
    let dir = TestDir::new("nnp");
    let log = dir.join("log");
    let prog = build_c("sandboxed.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "nnp-only"], &dir, "nnp");
    wait_for_line(&log, "ready");
    let before = security_of(orig.pid);
    assert_eq!(field(&before, orig.pid, "NoNewPrivs"), "1");
    assert_eq!(field(&before, orig.pid, "Seccomp"), "0");
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let restored = restore_ok(&img, &[]);
    assert_eq!(security_of(restored.pid), before);
}

#[test]
fn a_filtered_process_is_not_checkpointed_without_privilege() {
    let dir = TestDir::new("seccomp-nobody");
    dir.open_to_all();
    let log = dir.join("log");
    let filt = build_c("filtered.c", &[]);
    let p = Proc::spawn_as_nobody(&filt, &[&dir.s("log")], &dir, "filtered");
    wait_for_line(&log, "ready");
    let img = dir.join("img.spirit");
    let run = spirit_as_nobody(&["dump", &p.pid.to_string(), "-o", &img.to_string_lossy()]);
    run.fails(
        1,
        &["seccomp", "CAP_SYS_ADMIN"],
        "dump of a filtered process as nobody",
    );
    assert!(
        p.alive(),
        "the process runs on after the refused checkpoint"
    );
    let n = log_lines(&log).len();
    wait_lines(&log, n + 2);
}
