//! `cargo bench`: dump and restore throughput for processes with 64 MiB, 1 GiB and 4 GiB
//! of touched random memory (image on tmpfs), small-process latency, and the raw
//! `process_vm_readv` rate for reference. Custom harness: plain timed runs of the real
//! `spirit` binary, medians printed; nothing is asserted.
//!
//! SPIRIT_BENCH_SIZES=64,1024 (MiB) picks the sizes; SPIRIT_BENCH_RUNS the repetitions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SPIRIT: &str = env!("CARGO_BIN_EXE_spirit");

fn build(src: &str, out: &Path) {
    let st = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(out)
        .arg(src)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc {src}");
}

fn spawn(cmd: &mut Command) -> Child {
    spirit_kmod::close_inherited_fds(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn wait_for(path: &Path, what: &str) {
    let t0 = Instant::now();
    while std::fs::read_to_string(path)
        .map(|s| !s.starts_with(what))
        .unwrap_or(true)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "timeout waiting for {what} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(args: &[&str]) -> (Duration, String) {
    let t0 = Instant::now();
    let out = Command::new(SPIRIT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spirit");
    let dt = t0.elapsed();
    assert!(
        out.status.success(),
        "spirit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dt, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn reap(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn gbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench_size(dir: &Path, hog: &Path, mib: u64, runs: usize) {
    let bytes = mib << 20;
    let (mut dumps, mut restores, mut readv) = (Vec::new(), Vec::new(), Vec::new());
    let img = dir.join("hog.spirit");
    for _ in 0..runs {
        let flag = dir.join("hog.out");
        let _ = std::fs::remove_file(&flag);
        let mut child = spawn(Command::new(hog).arg(mib.to_string()).arg(&flag));
        let pid = child.id() as i32;
        wait_for(&flag, "ready");
        readv.push(raw_readv(pid, bytes));
        let before = checksum(pid, &flag);
        let (d, _) = run(&["dump", &pid.to_string(), "-o", img.to_str().expect("utf8")]);
        let _ = child.wait();
        let (r, out) = run(&["restore", img.to_str().expect("utf8"), "--detach"]);
        let rpid: i32 = out.parse().expect("pid");
        // The restored process must hold the same memory.
        let after = checksum(rpid, &flag);
        reap(rpid);
        assert_eq!(before, after, "restored memory differs from the original");
        let _ = std::fs::remove_file(&img);
        dumps.push(d.as_secs_f64());
        restores.push(r.as_secs_f64());
    }
    let (d, r) = (median(dumps), median(restores));
    println!(
        "{mib:>5} MiB  dump {:>7.3} s {:>5.2} GB/s   restore {:>7.3} s {:>5.2} GB/s   (raw process_vm_readv {:.2} GB/s)",
        d,
        gbps(bytes, d),
        r,
        gbps(bytes, r),
        median(readv)
    );
}

/// Ask a memhog for the checksum of its memory.
fn checksum(pid: i32, flag: &Path) -> String {
    let _ = std::fs::remove_file(flag);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    );
    wait_for(flag, "sum");
    std::fs::read_to_string(flag).expect("checksum")
}

/// Reference: read the whole anonymous memory of `pid` with process_vm_readv into a
/// small reused buffer (what the dump's copy could reach without the image write).
fn raw_readv(pid: i32, bytes: u64) -> f64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let big = maps
        .lines()
        .filter_map(|l| {
            let (r, _) = l.split_once(' ')?;
            let (s, e) = r.split_once('-')?;
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        })
        .max_by_key(|(s, e)| e - s)
        .expect("a mapping");
    let mut buf = vec![0u8; 1 << 20];
    let t0 = Instant::now();
    let mut addr = big.0;
    while addr < big.1 {
        let n = (big.1 - addr).min(buf.len() as u64) as usize;
        let _ = spirit_kmod::read_memory(pid, &mut buf[..n], &[(addr, n)]);
        addr += n as u64;
    }
    gbps(bytes.min(big.1 - big.0), t0.elapsed().as_secs_f64())
}

fn small_latency(dir: &Path, counter: &Path, runs: usize) {
    let (mut dumps, mut restores) = (Vec::new(), Vec::new());
    let log = dir.join("counter.log");
    let img = dir.join("counter.spirit");
    for _ in 0..runs {
        let mut child = spawn(Command::new(counter).arg(&log).arg("5"));
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(50));
        let (d, _) = run(&["dump", &pid.to_string(), "-o", img.to_str().expect("utf8")]);
        let _ = child.wait();
        let (r, out) = run(&["restore", img.to_str().expect("utf8"), "--detach"]);
        reap(out.parse().expect("pid"));
        dumps.push(d.as_secs_f64() * 1e3);
        restores.push(r.as_secs_f64() * 1e3);
    }
    println!(
        "small process (C counter, ~0.1 MiB of pages): dump {:.1} ms, restore {:.1} ms (median of {runs}, whole spirit command)",
        median(dumps),
        median(restores)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    spirit_kmod::set_child_subreaper().expect("subreaper");
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = Dir(tempfile::Builder::new()
        .prefix("spirit-bench")
        .tempdir_in(base)
        .expect("tmp")
        .keep());
    let hog = dir.0.join("memhog");
    let counter = dir.0.join("counter");
    build(
        concat!(env!("CARGO_MANIFEST_DIR"), "/benches/progs/memhog.c"),
        &hog,
    );
    build(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/progs/counter.c"),
        &counter,
    );
    let runs: usize = std::env::var("SPIRIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let sizes: Vec<u64> = std::env::var("SPIRIT_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 1024, 4096]);
    println!("spirit dump/restore, image in {base}, median of {runs} runs");
    small_latency(&dir.0, &counter, runs.max(5));
    for mib in sizes {
        bench_size(&dir.0, &hog, mib, runs);
    }
}
