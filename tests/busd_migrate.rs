//! Migration between two spiritd "hosts" (network + mount namespaces, see
//! busd_common::hosts): there and back with busctl and `spirit migrate`, peers that are
//! not trusted, targets that refuse early (short of memory, files missing), and faults (a restore failing on the target, the target daemon killed
//! mid-stream, the link cut) that must each leave the source process running.
//!
//! Both hosts share one kernel, so the original pid is still taken (by the frozen
//! source) while the target restores: the target always restores with --new-pid.

mod busd_common;

use busd_common::hosts::*;
use busd_common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn migrate(bus: &str, pid: u32, peer: &str) -> String {
    call(
        bus,
        None,
        "Migrate",
        "usa{sv}",
        &[&pid.to_string(), peer, "0"],
    )
    .unwrap()
}

/// A counter on host A appending to `log`, running.
fn start_counter_on_a(h: &Hosts, procs: &mut Procs, log: &std::path::Path) -> u32 {
    let mut cmd = h.a.cmd(&counter());
    cmd.arg(log)
        .arg("20")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let pid = procs.spawn(cmd);
    assert!(wait_growth(log, 5, T), "the counter does not run");
    pid
}

#[test]
fn a_counter_migrates_there_and_back_without_a_gap() {
    init();
    if !can_make_hosts() {
        return;
    }
    let h = Hosts::new(true, &[]);
    let mut procs = Procs::default();
    let log = h.dir.path().join("count.log");
    let pid = start_counter_on_a(&h, &mut procs, &log);

    // A → B with busctl.
    let job = migrate(&h.bus_a.address, pid, "b");
    let state = wait_job(&h.bus_a.address, &job, T);
    assert_eq!(
        state,
        "done",
        "{}\nA: {}\nB: {}",
        job_error(&h.bus_a.address, &job),
        h.log_a(),
        h.log_b()
    );
    let on_b = result_u64(&h.bus_a.address, &job, "new_pid") as u32;
    procs.adopt(on_b);
    let frozen = result_u64(&h.bus_a.address, &job, "frozen_usec");
    assert!(frozen > 0 && frozen < 30_000_000, "frozen {frozen} us");
    std::thread::sleep(Duration::from_millis(100));
    assert!(procs.exited(pid), "the source process still runs on A");
    assert!(alive(on_b));
    let net_b = std::fs::read_link(format!("/proc/{on_b}/ns/net")).unwrap();
    let net_of_b_daemon =
        std::fs::read_link(format!("/proc/{}/ns/net", h.db.as_ref().unwrap().pid())).unwrap();
    assert_eq!(
        net_b, net_of_b_daemon,
        "the restored process is not on host B"
    );
    assert!(
        wait_growth(&log, 5, T),
        "the counter does not continue on B"
    );
    assert_continuous(&log, 10);
    // The target's incoming job says the same.
    let jobs_b = busctl(
        &h.bus_b.address,
        None,
        &["call", DEST, MANAGER, MGR_IFACE, "ListJobs"],
    );
    assert!(
        jobs_b.stdout.contains("\"incoming\" \"done\""),
        "{}",
        jobs_b.stdout
    );

    // B → A with `spirit migrate`.
    let o = Command::new(SPIRIT)
        .args([
            "migrate",
            &on_b.to_string(),
            "--to",
            "a",
            "--bus",
            &h.bus_b.address,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "spirit migrate: {err}\nA: {}\nB: {}",
        h.log_a(),
        h.log_b()
    );
    assert!(err.contains("frozen"), "{err}");
    // Not a terminal: plain lines, from the job's signals, up to its final state.
    for state in ["running", "done"] {
        let line = format!("spirit: migrate pid {on_b} to a: {state} ");
        assert!(err.contains(&line), "no {line:?} in {err}");
    }
    let on_a: u32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("new pid on stdout");
    procs.adopt(on_a);
    let t = Instant::now();
    while alive(on_b) && t.elapsed() < T {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(on_b), "the process still runs on B");
    assert!(alive(on_a));
    assert!(
        wait_growth(&log, 5, T),
        "the counter does not continue on A"
    );
    assert_continuous(&log, 20);

    let o = Command::new(SPIRIT)
        .args(["peers", "--bus", &h.bus_b.address])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains(&h.a.key));
    let o = Command::new(SPIRIT)
        .args(["jobs", "--bus", &h.bus_b.address])
        .output()
        .unwrap();
    let jobs = String::from_utf8_lossy(&o.stdout);
    assert!(jobs.contains("migrate") && jobs.contains("done"), "{jobs}");
}

#[test]
fn untrusted_peers_are_refused_before_anything_is_sent() {
    init();
    if !can_make_hosts() {
        return;
    }
    // B does not list A; A lists B once more under a wrong key.
    let wrong = "11".repeat(32);
    let h = Hosts::new(false, &[("impostor", ADDR_B, &wrong)]);
    let mut procs = Procs::default();
    let log = h.dir.path().join("count.log");
    let pid = procs.spawn(counter_cmd(&counter(), &log, 20, None));
    assert!(wait_growth(&log, 3, T));

    let job = migrate(&h.bus_a.address, pid, "b");
    assert_eq!(wait_job(&h.bus_a.address, &job, T), "failed");
    let e = job_error(&h.bus_a.address, &job);
    assert!(e.contains("peer b"), "{e}");
    assert!(
        h.log_b().contains("refused a connection from 198.18.0.1"),
        "B's log: {}",
        h.log_b()
    );
    assert!(
        !h.log_b().contains("incoming"),
        "B started something: {}",
        h.log_b()
    );

    let job = migrate(&h.bus_a.address, pid, "impostor");
    assert_eq!(wait_job(&h.bus_a.address, &job, T), "failed");
    let e = job_error(&h.bus_a.address, &job);
    assert!(e.contains("presented key") && e.contains("refused"), "{e}");
    assert!(
        h.log_a().contains("presented key"),
        "A's log: {}",
        h.log_a()
    );

    assert!(!procs.exited(pid));
    assert!(wait_growth(&log, 5, T), "the source stopped counting");
    assert_continuous(&log, 8);
}

/// A counter on A whose migration B refuses before anything is frozen: the job fails
/// with B's reason (each of `expect`), B starts no incoming job, and the counter never
/// stopped (no gap, and it was never traced).
fn refused_early(b_extra: &str, exe_in_private_tmp: bool, expect: &[&str]) {
    init();
    if !can_make_hosts() {
        return;
    }
    let h = Hosts::new_full(true, &[], 3, b_extra);
    let mut procs = Procs::default();
    let log = h.dir.path().join("count.log");
    let mut cmd = if exe_in_private_tmp {
        // The program itself lives in A's own /tmp: it is missing on B.
        let da = h.da.as_ref().unwrap().pid();
        std::fs::copy(counter(), format!("/proc/{da}/root/tmp/counter")).unwrap();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", h.a.ns))
            .arg(format!("--mount=/proc/{da}/ns/mnt"))
            .arg("--")
            .arg("/tmp/counter");
        c
    } else {
        h.a.cmd(&counter())
    };
    cmd.arg(&log)
        .arg("20")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let pid = procs.spawn(cmd);
    assert!(wait_growth(&log, 5, T), "the counter does not run");

    let job = migrate(&h.bus_a.address, pid, "b");
    assert_eq!(wait_job(&h.bus_a.address, &job, T), "failed");
    let e = job_error(&h.bus_a.address, &job);
    eprintln!("the refused migration says: {e}");
    assert!(e.contains("peer b refused"), "{e}");
    assert!(
        e.contains(&format!("the process {pid} was not stopped")),
        "{e}"
    );
    for want in expect {
        assert!(e.contains(want), "error {e:?} lacks {want:?}");
    }
    assert!(
        h.log_b().contains("refused a migration"),
        "B's log: {}",
        h.log_b()
    );
    let jobs_b = busctl(
        &h.bus_b.address,
        None,
        &["call", DEST, MANAGER, MGR_IFACE, "ListJobs"],
    );
    assert!(!jobs_b.stdout.contains("incoming"), "{}", jobs_b.stdout);
    // Never frozen: no tracer ever attached, and it counts on without a gap.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "{status}");
    assert!(!procs.exited(pid));
    assert!(wait_growth(&log, 5, T), "the counter stopped");
    assert_continuous(&log, 10);
}

#[test]
fn a_target_short_of_memory_refuses_before_the_source_is_frozen() {
    // More memory to keep free than any machine has: B's MemAvailable check refuses.
    refused_early(
        "[limits]\nkeep_free_mib = 1000000000\n",
        false,
        &["not enough free memory", "MemAvailable", "keep_free_mib"],
    );
}

#[test]
fn files_missing_on_the_target_are_named_before_the_source_is_frozen() {
    refused_early(
        "",
        true,
        &["/tmp/counter (missing", "missing or different on this host"],
    );
}

/// Start a counter on A, migrate it to B, break something; the job must fail and
/// the source must go on counting with no gap.
fn fault(
    break_it: impl FnOnce(&mut Hosts, &str),
    mib: Option<u32>,
    private_tmp: bool,
    expect: &[&str],
) {
    fault_ending(break_it, mib, private_tmp, expect, "failed")
}

fn fault_ending(
    break_it: impl FnOnce(&mut Hosts, &str),
    mib: Option<u32>,
    private_tmp: bool,
    expect: &[&str],
    end: &str,
) {
    init();
    if !can_make_hosts() {
        return;
    }
    let mut h = Hosts::new(true, &[]);
    let mut procs = Procs::default();
    let (prog, log, log_seen) = if private_tmp {
        // The log is in A's own /tmp: the file is missing on B.
        let da = h.da.as_ref().unwrap().pid();
        let p = std::path::PathBuf::from("/tmp/count.log");
        (Some(da), p.clone(), p)
    } else {
        let p = h.dir.path().join("count.log");
        (None, p.clone(), p)
    };
    let exe = if mib.is_some() {
        bigcounter()
    } else {
        counter()
    };
    let mut cmd = match prog {
        Some(da) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{}", h.a.ns))
                .arg(format!("--mount=/proc/{da}/ns/mnt"))
                .arg("--")
                .arg(&exe);
            c
        }
        None => h.a.cmd(&exe),
    };
    cmd.arg(&log).arg("20");
    if let Some(m) = mib {
        cmd.arg(m.to_string());
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let pid = procs.spawn(cmd);
    let seen = if prog.is_some() {
        std::path::PathBuf::from(format!("/proc/{pid}/root{}", log_seen.display()))
    } else {
        log_seen
    };
    assert!(wait_growth(&seen, 5, T), "the counter does not run");

    let job = migrate(&h.bus_a.address, pid, "b");
    break_it(&mut h, &job);
    let state = wait_job(&h.bus_a.address, &job, T);
    let e = job_error(&h.bus_a.address, &job);
    eprintln!("the failed migration says: {e}");
    assert_eq!(state, end, "A: {}\nB: {}", h.log_a(), h.log_b());
    for want in expect {
        assert!(e.contains(want), "error {e:?} lacks {want:?}");
    }
    assert!(
        e.contains(&format!("the source process {pid} resumed")),
        "{e}"
    );
    assert!(!procs.exited(pid), "the source process died");
    assert!(wait_growth(&seen, 10, T), "the source does not count on");
    assert_continuous(&seen, 15);
}

#[test]
fn a_restore_failing_on_the_target_leaves_the_source_running() {
    fault(
        |_, _| {},
        None,
        true,
        &["could not restore", "/tmp/count.log"],
    );
}

/// Wait until the job has sent some of the image.
fn when_streaming(h: &Hosts, job: &str) {
    let t = Instant::now();
    loop {
        let done = prop(&h.bus_a.address, job, JOB_IFACE, "BytesDone")
            .as_u64()
            .unwrap_or(0);
        if done > 0 {
            return;
        }
        let st = prop(&h.bus_a.address, job, JOB_IFACE, "State");
        assert!(
            st != "failed" && st != "done",
            "job {st} before streaming: {}",
            job_error(&h.bus_a.address, job)
        );
        assert!(
            t.elapsed() < T,
            "the image never started streaming (job {st})\nA: {}\nB: {}",
            h.log_a(),
            h.log_b()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_target_daemon_killed_mid_stream_leaves_the_source_running() {
    fault(
        |h, job| {
            when_streaming(h, job);
            h.db.as_mut().unwrap().kill();
        },
        Some(512),
        false,
        &["peer b"],
    );
}

#[test]
fn a_cut_link_leaves_the_source_running() {
    fault(
        |h, job| {
            when_streaming(h, job);
            let (ns, dev) = (h.net.a.clone(), h.net.veth_a.clone());
            ip(&["-n", &ns, "link", "set", &dev, "down"]);
        },
        Some(512),
        false,
        &["peer b"],
    );
}

#[test]
fn a_cancelled_migration_leaves_the_source_running() {
    fault_ending(
        |h, job| {
            when_streaming(h, job);
            let o = busctl(
                &h.bus_a.address,
                None,
                &["call", DEST, job, JOB_IFACE, "Cancel"],
            );
            assert!(o.ok, "Cancel: {}", o.stderr);
        },
        Some(512),
        false,
        &["peer b"],
        "cancelled",
    );
}

#[test]
fn a_migration_with_pid_ns_keeps_the_pid_on_the_target() {
    init();
    if !can_make_hosts() {
        return;
    }
    let h = Hosts::new(true, &[]);
    let mut procs = Procs::default();
    let log = h.dir.path().join("count.log");
    let pid = start_counter_on_a(&h, &mut procs, &log);
    let job = call(
        &h.bus_a.address,
        None,
        "Migrate",
        "usa{sv}",
        &[&pid.to_string(), "b", "1", "pid_ns", "b", "true"],
    )
    .unwrap();
    let state = wait_job(&h.bus_a.address, &job, T);
    assert_eq!(
        state,
        "done",
        "{}\nB: {}",
        job_error(&h.bus_a.address, &job),
        h.log_b()
    );
    let on_b = result_u64(&h.bus_a.address, &job, "new_pid") as u32;
    procs.adopt(on_b);
    std::thread::sleep(Duration::from_millis(100));
    assert!(procs.exited(pid), "the source process still runs on A");
    let status = std::fs::read_to_string(format!("/proc/{on_b}/status")).unwrap();
    let inner = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last())
        .and_then(|v| v.parse::<u32>().ok());
    assert_eq!(
        inner,
        Some(pid),
        "inside its new pid namespace the process keeps its pid"
    );
    assert!(
        wait_growth(&log, 5, T),
        "the counter does not continue on B"
    );
    assert_continuous(&log, 10);
}
