//! `cargo bench --bench migrate`: migration between two spiritd "hosts" (network +
//! mount namespaces joined by a veth pair, each with its own `dbus-daemon` and
//! `spiritd`; the harness of tests/busd_migrate.rs) of a process with N MiB of touched
//! random memory (benches/progs/memhog.c). Each run starts a fresh memhog on A, asks it
//! for the checksum of its memory, migrates it A→B with the D-Bus `Migrate` call,
//! checks that the source is gone and that the process on B holds the same memory, and
//! records the job's `Result`: `total_usec` (the source daemon's whole job: link,
//! freeze, dump, stream, restore on B, confirmation) and `frozen_usec` (how long the
//! process was stopped: from the freeze on A until B confirmed it runs and A ended the
//! original). Medians are printed; nothing else is asserted.
//!
//! SPIRIT_BENCH_SIZES=64,1024 (MiB) picks the sizes; SPIRIT_BENCH_RUNS (default 3) the
//! repetitions. Needs root, iproute2, util-linux, dbus, busctl and gcc: without them it
//! says what is missing and exits successfully.

#[path = "../tests/busd_common/mod.rs"]
mod busd_common;

use busd_common::hosts::{can_make_hosts, Hosts};
use busd_common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(300);

fn wait_for(path: &Path, what: &str) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.starts_with(what) {
                return s.trim().to_string();
            }
        }
        assert!(
            t0.elapsed() < T,
            "timeout waiting for {what:?} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Ask a memhog for the checksum of its memory.
fn checksum(pid: u32, flag: &Path) -> String {
    let _ = std::fs::remove_file(flag);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("signal the memhog");
    wait_for(flag, "sum")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

struct Run {
    total: f64,
    frozen: f64,
    wall: f64,
    page_bytes: u64,
}

fn one_run(h: &Hosts, hog: &Path, mib: u64, i: usize) -> Run {
    let mut procs = Procs::default();
    let flag = h.dir.path().join(format!("hog-{mib}-{i}.out"));
    let mut cmd = h.a.cmd(hog);
    cmd.arg(mib.to_string())
        .arg(&flag)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = procs.spawn(cmd);
    wait_for(&flag, "ready");
    let before = checksum(pid, &flag);

    let bus = &h.bus_a.address;
    let t0 = Instant::now();
    let job = call(
        bus,
        None,
        "Migrate",
        "usa{sv}",
        &[&pid.to_string(), "b", "0"],
    )
    .unwrap_or_else(|e| panic!("Migrate: {e}"));
    let t = Instant::now();
    let state = loop {
        let s = prop(bus, &job, JOB_IFACE, "State");
        let s = s.as_str().unwrap_or("").to_string();
        if matches!(s.as_str(), "done" | "failed" | "cancelled") {
            break s;
        }
        assert!(t.elapsed() < T, "job {job} still {s} after {T:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(
        state,
        "done",
        "the migration failed: {}\nA: {}\nB: {}",
        job_error(bus, &job),
        h.log_a(),
        h.log_b()
    );
    let on_b = result_u64(bus, &job, "new_pid") as u32;
    procs.adopt(on_b);
    let run = Run {
        total: result_u64(bus, &job, "total_usec") as f64 / 1e6,
        frozen: result_u64(bus, &job, "frozen_usec") as f64 / 1e6,
        wall,
        page_bytes: result_u64(bus, &job, "page_bytes"),
    };
    let t = Instant::now();
    while !procs.exited(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the source still runs on A"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = checksum(on_b, &flag);
    assert_eq!(before, after, "the memory on B differs from the source's");
    run
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("migrate bench: skipped (run it with `cargo bench --bench migrate`)");
        return;
    }
    init();
    if !can_make_hosts() {
        println!("migrate bench: skipped (needs root and the tools named above)");
        return;
    }
    let runs: usize = std::env::var("SPIRIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let sizes: Vec<u64> = std::env::var("SPIRIT_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 1024]);
    let hog = build_c("memhog", &repo().join("benches/progs/memhog.c"));

    // Bytes cross the veth in the kernel: a generous link timeout keeps big images
    // from tripping it while B restores.
    let h = Hosts::new_with_timeout(true, &[], 60);
    println!(
        "spirit migrate A→B between two network namespaces (veth, Noise link, busctl Migrate), median of {runs} runs"
    );
    println!("  size     total  (pages/total)    frozen   wall (call→done)");
    for mib in sizes {
        let r: Vec<Run> = (0..runs).map(|i| one_run(&h, &hog, mib, i)).collect();
        let total = median(r.iter().map(|x| x.total).collect());
        let frozen = median(r.iter().map(|x| x.frozen).collect());
        let wall = median(r.iter().map(|x| x.wall).collect());
        let pages = r[0].page_bytes;
        println!(
            "{mib:>5} MiB  {total:>7.3} s {:>5.2} GB/s  {frozen:>7.3} s  {wall:>7.3} s   ({} MiB of pages)",
            pages as f64 / total / 1e9,
            pages >> 20
        );
    }
    // The daemons, buses and namespaces end with `h`.
    drop(h);
}
