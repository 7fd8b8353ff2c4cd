//! A checkpoint whose `spirit` process dies must not take the process with it (issue 14).
//!
//! `spirit dump --leave-running` is SIGKILLed at random moments, and (deterministically,
//! through `SPIRIT_FAULT`, kmod/src/fault.rs) at each point of each syscall it injects:
//! registers set / syscall-entry stop / syscall-exit stop. Every time the checkpointed
//! counter must run on untraced, with its own signal mask, and keep writing every
//! number once and in order. A negative control shows the check catches a loss: with
//! the rescue frame left out, a death inside an injected call kills the process.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a process did not come through, or None if it did: alive, not traced, not
/// stopped, the same blocked signals as before, still counting, every number once.
fn damage(p: &Proc, log: &std::path::Path, sigblk_before: &str) -> Option<String> {
    std::thread::sleep(Duration::from_millis(60));
    if !p.alive() {
        return Some("process died".into());
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    if field("TracerPid:") != "0" {
        return Some(format!("still traced by {}", field("TracerPid:")));
    }
    if field("SigBlk:") != sigblk_before {
        return Some(format!(
            "signal mask changed: {} (was {sigblk_before})",
            field("SigBlk:")
        ));
    }
    let n = log_lines(log).len();
    let start = Instant::now();
    while log_lines(log).len() < n + 5 {
        if start.elapsed() > Duration::from_secs(3) {
            return Some(format!(
                "stopped counting at {} (state {})",
                log_lines(log).len(),
                field("State:")
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let lines = log_lines(log);
    lines
        .iter()
        .enumerate()
        .find(|(i, l)| l.parse::<u64>().ok() != Some(*i as u64))
        .map(|(i, l)| format!("line {i} is {l:?}: a number lost or repeated"))
}

struct Counter {
    _dir: TestDir,
    proc: Proc,
    log: std::path::PathBuf,
    img: std::path::PathBuf,
    sigblk: String,
}

fn counter(name: &str) -> Counter {
    let dir = TestDir::new(name);
    let log = dir.join("log");
    let prog = build_c("counter.c", &[]);
    let proc = Proc::spawn(&prog, &[&dir.s("log"), "2"], &dir, "counter");
    wait_lines(&log, 3);
    let sigblk = std::fs::read_to_string(format!("/proc/{}/status", proc.pid))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:").map(|v| v.trim().to_string()))
        .expect("SigBlk");
    let img = dir.join("img.spirit");
    Counter {
        _dir: dir,
        proc,
        log,
        img,
        sigblk,
    }
}

fn dump_cmd(c: &Counter, fault: Option<&str>) -> Command {
    let mut cmd = Command::new(SPIRIT);
    cmd.args(["dump", &c.proc.pid.to_string(), "-o"])
        .arg(&c.img)
        .arg("--leave-running")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(f) = fault {
        cmd.env("SPIRIT_FAULT", f);
    }
    cmd
}

/// A small deterministic generator (the seed is printed, so a failure can be replayed
/// with SPIRIT_KILL_SEED).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn dump_killed_at_random_moments_leaves_the_process_running() {
    let seed = std::env::var("SPIRIT_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| mono_ns() as u64 | 1);
    let mut rng = Rng(seed);
    // 20 moments in the first 40 ms (the freeze and the injected calls), 6 later ones
    // (memory copy, release).
    let mut delays: Vec<u64> = (0..20).map(|_| rng.below(41_000)).collect();
    delays.extend((0..6).map(|_| 40_000 + rng.below(160_000)));
    let mut failures = Vec::new();
    for (i, us) in delays.iter().enumerate() {
        let c = counter("dump-killed");
        let mut child = dump_cmd(&c, None).spawn().expect("start spirit dump");
        std::thread::sleep(Duration::from_micros(*us));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        if let Some(why) = damage(&c.proc, &c.log, &c.sigblk) {
            failures.push(format!("kill {i} at {:.1} ms: {why}", *us as f64 / 1000.0));
        }
    }
    println!(
        "dump killed at {} random points (seed {seed}): {}/{} processes still running and correct",
        delays.len(),
        delays.len() - failures.len(),
        delays.len()
    );
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
}

/// How many syscalls a dump of the counter injects.
fn injected_calls() -> u64 {
    let c = counter("dump-count");
    let out = dump_cmd(&c, Some("count"))
        .stderr(Stdio::piped())
        .output()
        .expect("spirit dump");
    assert!(out.status.success(), "counting dump failed: {out:?}");
    let n = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("spirit-fault: injected call"))
        .count() as u64;
    assert!(n > 10, "only {n} injected calls counted");
    n
}

fn die_at(fault: &str) -> Option<String> {
    let c = counter("dump-fault");
    let st = dump_cmd(&c, Some(fault)).status().expect("spirit dump");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        st.signal(),
        Some(nix::sys::signal::Signal::SIGKILL as i32),
        "{fault}: spirit did not die where told ({st:?})"
    );
    damage(&c.proc, &c.log, &c.sigblk)
}

#[test]
fn dump_dying_inside_any_injected_call_leaves_the_process_running() {
    let n = injected_calls();
    // Every call at its syscall-entry stop (the task is inside our call: only the
    // rescue frame brings it back), every third one with registers set and at the exit
    // stop.
    let mut points: Vec<String> = (1..=n).map(|k| format!("die:{k}:entry")).collect();
    for k in (1..=n).step_by(3).chain([n]) {
        points.push(format!("die:{k}:regs"));
        points.push(format!("die:{k}:exit"));
    }
    let failures: Vec<String> = points
        .iter()
        .filter_map(|p| die_at(p).map(|why| format!("{p}: {why}")))
        .collect();
    println!(
        "dump died inside injected calls at {} points ({n} calls): {}/{} processes still running and correct",
        points.len(),
        points.len() - failures.len(),
        points.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");

    // Negative control: without the rescue frame the same deaths are fatal, so the
    // checks above can see a loss (one call fewer: the frame's own sigaltstack call).
    for k in [2, n / 2, n - 1] {
        let p = format!("die:{k}:entry:bare");
        assert!(
            die_at(&p).is_some(),
            "{p}: the process came through without its rescue frame: the test cannot fail"
        );
    }
}

#[test]
fn avx_state_survives_a_dump_dying_inside_an_injected_call() {
    if !cpu_has("avx2") {
        skip(
            "avx_state_survives_a_dump_dying_inside_an_injected_call",
            "this CPU has no avx2",
        );
        return;
    }
    let prog = build_c("avx.c", &["-mavx2"]);
    for k in [1, 5, 30, 60] {
        let dir = TestDir::new("dump-fault-avx");
        let log = dir.join("log");
        let mut p = Proc::spawn(&prog, &[&dir.s("log"), "20000000"], &dir, "avx");
        wait_lines(&log, 1);
        let img = dir.join("img.spirit");
        let st = Command::new(SPIRIT)
            .args(["dump", &p.pid.to_string(), "-o"])
            .arg(&img)
            .arg("--leave-running")
            .env("SPIRIT_FAULT", format!("die:{k}:entry"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spirit dump");
        assert!(!st.success(), "spirit did not die at call {k}");
        let at = log_lines(&log).len();
        let lines = wait_lines(&log, at + 2);
        assert!(p.alive(), "call {k}: process died");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(
                l,
                &format!("ok {i}"),
                "call {k}: register state broken by the dump's death"
            );
        }
        p.kill();
    }
}
