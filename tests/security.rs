//! A process's security state survives a checkpoint: capabilities dropped before it
//! stay dropped (every set, per thread), no_new_privs stays set, seccomp filters still
//! filter (a refused syscall still returns the filter's errno, a forbidden one still
//! kills the process), each thread keeps its own filter layout, and a checkpoint spirit
//! cannot take whole is refused with the process left running; strict mode and syscall
//! user dispatch come back too.

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

    // A checkpoint that lets it run on leaves it filtered (seccomp is suspended only
    // for the dump's own syscalls).
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &["--leave-running"]).ok("dump --leave-running");
    let n = log_lines(&log).len();
    for l in &wait_lines(&log, n + 3)[n..] {
        assert!(
            l.contains("ppid=-1 errno=95 uid_errno=33"),
            "after --leave-running: {l}"
        );
    }
    assert_eq!(security_of(orig.pid), before);

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

#[test]
fn seccomp_strict_mode_survives() {
    if !root_or_skip("seccomp_strict_mode_survives") {
        return;
    }
    let dir = TestDir::new("strict");
    let log = dir.join("log");
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let prog = build_c("strict.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), &dir.s("fifo")], &dir, "strict");
    wait_for_line(&log, "ready");
    let feed = |b: &str| {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        f.write_all(b.as_bytes()).unwrap();
    };
    feed("a");
    wait_for_line(&log, "got a");
    wait_until("strict mode", TIMEOUT, || {
        field(&security_of(orig.pid), orig.pid, "Seccomp") == "1"
    });
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let mut restored = restore_ok(&img, &[]);
    assert_eq!(
        field(&security_of(restored.pid), restored.pid, "Seccomp"),
        "1"
    );
    feed("b");
    wait_for_line(&log, "got b");
    feed("k");
    let status = restored.reap();
    assert!(
        status.contains("SIGKILL"),
        "strict mode killed it: {status}"
    );
}

#[test]
fn syscall_user_dispatch_survives() {
    let dir = TestDir::new("sud");
    let log = dir.join("log");
    let prog = build_c("sud.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log")], &dir, "sud");
    wait_for_line(&log, "ready");
    wait_lines(&log, 4);
    let img = dir.join("img.spirit");
    let counts = |l: &str| -> (i64, i64) {
        let get = |k: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in {l:?}"))
        };
        (get("dispatched="), get("ran="))
    };
    // A checkpoint that lets it run on gives its dispatch back too.
    dump(orig.pid, &img, &["--leave-running"]).ok("dump --leave-running");
    let n = log_lines(&log).len();
    let (_, ran) = counts(wait_lines(&log, n + 3).last().unwrap());
    assert_eq!(ran, 0, "a blocked syscall ran after --leave-running");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let n = log_lines(&log).len();
    let (before, ran) = counts(&log_lines(&log)[n - 1]);
    assert_eq!(ran, 0);
    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    show.ok("show");
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(
        v["processes"][0]["security"][0]["syscall_user_dispatch"]["mode"],
        1
    );
    let _restored = restore_ok(&img, &[]);
    let lines = wait_lines(&log, n + 5);
    let (after, ran) = counts(lines.last().unwrap());
    assert_eq!(ran, 0, "a blocked syscall ran: dispatch lost");
    assert!(after >= before + 4, "dispatched {before} → {after}");
}

#[test]
fn capabilities_of_a_process_of_another_user_survive() {
    if !root_or_skip("capabilities_of_a_process_of_another_user_survive") {
        return;
    }
    let dir = TestDir::new("caps-nobody");
    dir.open_to_all();
    let log = dir.join("log");
    let prog = build_c("sandboxed.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "nobody"], &dir, "caps");
    wait_for_line(&log, "ready");
    let before = security_of(orig.pid);
    // uid 65534 holding CAP_NET_BIND_SERVICE (ambient too) and CAP_NET_RAW.
    assert_eq!(field(&before, orig.pid, "CapPrm"), "0000000000002400");
    assert_eq!(field(&before, orig.pid, "CapAmb"), "0000000000000400");
    let uid_line = |pid: i32| {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(uid_line(orig.pid), "Uid: 65534 65534 65534 65534");
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let restored = restore_ok(&img, &[]);
    assert_eq!(uid_line(restored.pid), "Uid: 65534 65534 65534 65534");
    assert_eq!(security_of(restored.pid), before);
    let n = log_lines(&log).len();
    wait_lines(&log, n + 2);
}
