//! Shared harness of the end-to-end tests: builds the test programs (C with gcc, Rust
//! with rustc) once per test binary, starts them with a clean descriptor table, runs the
//! `spirit` binary, and owns every process a test starts or restores (a drop guard
//! SIGKILLs and reaps it, by pid, even when an assertion fails).

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// The spirit binary under test.
pub const SPIRIT: &str = env!("CARGO_BIN_EXE_spirit");
/// Sources of the test programs.
pub const PROGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/progs");
/// Generous bound for anything a test waits for.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Once per test binary: become a child subreaper, so processes restored with
/// `--detach` are reparented to (and reaped by) this process, not by PID 1 (which does
/// not reap on these machines).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        spirit_kmod::set_child_subreaper().expect("PR_SET_CHILD_SUBREAPER");
    });
}

// ---------------------------------------------------------------------------------------
// Building the test programs

static BUILD_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_build_dir() {
    if let Some(d) = BUILD_DIR.get() {
        let _ = fs::remove_dir_all(d);
    }
}

/// A directory for the binaries of this test run, readable and executable by every
/// user (a test runs programs as `nobody`); removed when the test binary exits.
pub fn build_dir() -> &'static Path {
    BUILD_DIR.get_or_init(|| {
        let d = tempfile::Builder::new()
            .prefix("spirit-progs-")
            .tempdir()
            .expect("temp dir for test programs")
            .keep();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod build dir");
        spirit_kmod::at_exit(remove_build_dir);
        d
    })
}

type Cache = Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>;

fn cached(key: String, build: impl FnOnce() -> PathBuf) -> PathBuf {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let slot = {
        let mut map = CACHE.get_or_init(Default::default).lock().unwrap();
        map.entry(key).or_default().clone()
    };
    slot.get_or_init(build).clone()
}

fn out_name(src: &str, flags: &[&str]) -> String {
    let stem = src.rsplit_once('.').map_or(src, |(s, _)| s);
    let mut name = stem.to_string();
    for f in flags {
        name.push('_');
        name.extend(
            f.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    name
}

fn compile(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Build `tests/progs/<src>` with gcc (`-O2 -pthread` plus `flags`, e.g. `-static`),
/// once per test binary.
pub fn build_c(src: &str, flags: &[&str]) -> PathBuf {
    let key = format!("c:{src}:{}", flags.join(" "));
    cached(key, || {
        let out = build_dir().join(out_name(src, flags));
        let mut cmd = Command::new("gcc");
        cmd.args(["-O2", "-g", "-Wall", "-pthread", "-o"])
            .arg(&out)
            .arg(Path::new(PROGS).join(src))
            .args(flags);
        compile(cmd, &format!("gcc {src} {}", flags.join(" ")));
        out
    })
}

/// Build `tests/progs/<src>` (a single-file Rust program) with `rustc -O`.
pub fn build_rust(src: &str) -> PathBuf {
    cached(format!("rs:{src}"), || {
        let out = build_dir().join(out_name(src, &["rs"]));
        let mut cmd = Command::new("rustc");
        cmd.args(["-O", "--edition", "2021", "-o"])
            .arg(&out)
            .arg(Path::new(PROGS).join(src));
        compile(cmd, &format!("rustc {src}"));
        out
    })
}

/// Copy a built program to `dir/name` (so a test can delete it, or own it).
pub fn copy_prog(prog: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    fs::copy(prog, &to).expect("copy program");
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod program");
    to
}

// ---------------------------------------------------------------------------------------
// Per-test directory

/// A fresh directory for one test: its logs, images, FIFOs, pid files.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        init();
        let dir = tempfile::Builder::new()
            .prefix(&format!("spirit-{name}-"))
            .tempdir()
            .expect("test temp dir");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn s(&self, name: &str) -> String {
        self.join(name).to_string_lossy().into_owned()
    }

    /// Open the directory to every user (for programs run as `nobody`).
    pub fn open_to_all(&self) {
        fs::set_permissions(self.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    }
}

// ---------------------------------------------------------------------------------------
// Processes

/// A process this test started or restored. Dropping it SIGKILLs and reaps it (by pid)
/// unless it was reaped already.
pub struct Proc {
    pub pid: i32,
    child: Option<Child>,
    reaped: bool,
}

impl Proc {
    /// Start `cmd` with stdin on /dev/null, stdout and stderr appended to
    /// `dir/<name>.out` (never pipes: spirit does not checkpoint them) and every
    /// inherited descriptor above 2 closed.
    pub fn start(mut cmd: Command, dir: &TestDir, name: &str) -> Proc {
        init();
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(&format!("{name}.out")))
            .expect("program output file");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .current_dir(dir.path());
        spirit_kmod::close_inherited_fds(&mut cmd);
        let child = cmd.spawn().expect("start test program");
        Proc {
            pid: child.id() as i32,
            child: Some(child),
            reaped: false,
        }
    }

    /// Start a program built by the harness with `args`.
    pub fn spawn(prog: &Path, args: &[&str], dir: &TestDir, name: &str) -> Proc {
        let mut cmd = Command::new(prog);
        cmd.args(args);
        Proc::start(cmd, dir, name)
    }

    /// Same, as user and group 65534 (nobody).
    pub fn spawn_as_nobody(prog: &Path, args: &[&str], dir: &TestDir, name: &str) -> Proc {
        let mut cmd = Command::new(prog);
        cmd.args(args).uid(65534).gid(65534);
        Proc::start(cmd, dir, name)
    }

    /// Take charge of a restored process (a child of ours through the subreaper).
    pub fn adopt(pid: i32) -> Proc {
        assert!(pid > 0, "bad pid {pid}");
        Proc {
            pid,
            child: None,
            reaped: false,
        }
    }

    /// Wait for the process to end (after `spirit dump` killed it) and reap it, so its
    /// pid is free again. Returns the raw wait status description.
    pub fn reap(&mut self) -> String {
        if self.reaped {
            return "already reaped".into();
        }
        self.reaped = true;
        match self.child.as_mut() {
            Some(c) => format!("{:?}", c.wait().expect("wait for test program")),
            None => format!("{:?}", waitpid(Pid::from_raw(self.pid), None)),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if !self.reaped {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            self.reap();
        }
    }

    /// The process exists and is not a zombie.
    pub fn alive(&self) -> bool {
        !self.reaped && pid_alive(self.pid)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `/proc/PID` exists and is not a zombie (or dead).
pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// `/proc/PID` exists at all (zombies included).
pub fn pid_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The tids of a process, sorted.
pub fn tids(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Live processes whose cwd is `dir` (every test program runs in its own test dir, and a
/// restored one gets that cwd back: this finds leftovers of a failed restore).
pub fn procs_in(dir: &Path) -> Vec<i32> {
    let want = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/cwd")).ok().as_deref() == Some(&*want)
            && pid_alive(pid)
        {
            v.push(pid);
        }
    }
    v
}

/// First field of `/proc/PID/syscall`: the syscall the task is blocked in, if any.
pub fn blocked_syscall(pid: i32) -> Option<i64> {
    let s = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// `ls -l /proc/PID/fd` as `fd -> target` lines, for diagnostics.
pub fn fd_listing(pid: i32) -> String {
    let mut v: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let t = fs::read_link(e.path()).ok()?;
            Some((fd, t.to_string_lossy().into_owned()))
        })
        .collect();
    v.sort();
    v.iter()
        .map(|(fd, t)| format!("{fd} -> {t}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// Running spirit

/// The outcome of one `spirit` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Run {
    pub fn ok(&self, what: &str) -> &Run {
        assert_eq!(
            self.code, 0,
            "{what}: spirit exited {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Assert a failure with exit `code`, a one-line `spirit: error:` message on stderr
    /// containing every one of `needles`, and no panic.
    pub fn fails(&self, code: i32, needles: &[&str], what: &str) -> &Run {
        assert_eq!(
            self.code, code,
            "{what}: expected exit {code}, got {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self.clean_error(what);
        let msg = self.error_line();
        for n in needles {
            assert!(
                msg.to_lowercase().contains(&n.to_lowercase()),
                "{what}: error message does not mention {n:?}: {msg}"
            );
        }
        self
    }

    /// A failure that is no panic and has exactly one `spirit: error:` line.
    pub fn clean_error(&self, what: &str) {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{what}: spirit panicked:\n{}",
            self.stderr
        );
        assert!(self.code != 0, "{what}: spirit succeeded");
        assert!(
            self.code != 101 && self.code < 128,
            "{what}: spirit died (exit {}):\n{}",
            self.code,
            self.stderr
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{what}: expected a one-line error on stderr, got:\n{}",
            self.stderr
        );
        assert!(
            errors[0].starts_with("spirit: error:") || errors[0].starts_with("spirit:"),
            "{what}: odd error line: {}",
            errors[0]
        );
    }

    pub fn error_line(&self) -> String {
        self.stderr.lines().last().unwrap_or("").to_string()
    }
}

fn run_cmd(mut cmd: Command, what: &str) -> Run {
    let dir = tempfile::tempdir().expect("temp dir for spirit output");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    // Files, not pipes: a detached restored process must not be able to hold our
    // output open (and if spirit leaked them to it, the test must not hang).
    cmd.stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        // Its own process group: on a timeout the whole group (a shell pipeline, a
        // restore's half-built child) is ended, and nothing else.
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for spirit") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "{what}: still running after 60 s; stderr so far:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = start.elapsed();
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Run {
        code,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        took,
    }
}

/// Run `spirit ARGS...` (stdin /dev/null) and collect its exit code and output.
pub fn spirit(args: &[&str]) -> Run {
    let mut cmd = Command::new(SPIRIT);
    cmd.args(args).stdin(Stdio::null());
    run_cmd(cmd, &format!("spirit {}", args.join(" ")))
}

/// Run `spirit ARGS...` with extra environment variables (e.g. `SPIRIT_PLUGIN_PATH`).
pub fn spirit_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(SPIRIT);
    cmd.args(args)
        .stdin(Stdio::null())
        .envs(env.iter().copied());
    run_cmd(cmd, &format!("spirit {}", args.join(" ")))
}

/// Run `spirit ARGS...` as user nobody.
pub fn spirit_as_nobody(args: &[&str]) -> Run {
    let mut cmd = Command::new(SPIRIT);
    cmd.args(args)
        .stdin(Stdio::null())
        .current_dir("/")
        .uid(65534)
        .gid(65534);
    run_cmd(cmd, &format!("(nobody) spirit {}", args.join(" ")))
}

/// Run a shell command line (`sh -c`).
pub fn sh(line: &str) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(line).stdin(Stdio::null());
    run_cmd(cmd, &format!("sh -c {line:?}"))
}

/// `spirit dump PID -o IMG EXTRA...`.
pub fn dump(pid: i32, img: &Path, extra: &[&str]) -> Run {
    let pid = pid.to_string();
    let img = img.to_string_lossy();
    let mut args = vec!["dump", &pid, "-o", &img];
    args.extend_from_slice(extra);
    spirit(&args)
}

/// `spirit restore IMG --detach --pidfile DIR/<img>.pid EXTRA...`; on success checks that
/// the printed pid and the pid file agree and returns the restored process.
pub fn restore(img: &Path, extra: &[&str]) -> (Run, Option<Proc>) {
    let pidfile = img.with_extension("pid");
    let _ = fs::remove_file(&pidfile);
    let img_s = img.to_string_lossy();
    let pf = pidfile.to_string_lossy();
    let mut args = vec!["restore", &img_s, "--detach", "--pidfile", &pf];
    args.extend_from_slice(extra);
    let run = spirit(&args);
    if run.code != 0 {
        return (run, None);
    }
    let from_file: i32 = fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("pid file {pf}: {e}; stderr: {}", run.stderr))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {pf}: {e}"));
    let proc = Proc::adopt(from_file);
    let printed: Option<i32> = run.stdout.split_whitespace().find_map(|w| w.parse().ok());
    assert_eq!(
        printed,
        Some(from_file),
        "restore --detach printed {:?}, pid file says {from_file}",
        run.stdout
    );
    (run, Some(proc))
}

/// Restore that must succeed.
pub fn restore_ok(img: &Path, extra: &[&str]) -> Proc {
    let (run, p) = restore(img, extra);
    run.ok(&format!("restore {}", img.display()));
    p.expect("restored process")
}

// ---------------------------------------------------------------------------------------
// Logs

pub fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Complete lines of a log (a trailing partial line is left out).
pub fn log_lines(path: &Path) -> Vec<String> {
    let s = read_log(path);
    let complete = match s.rfind('\n') {
        Some(i) => &s[..=i],
        None => "",
    };
    complete.lines().map(str::to_string).collect()
}

/// Poll `cond` every few ms until it holds; panic naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until the log holds at least `n` complete lines.
pub fn wait_lines(log: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(&format!("{n} lines in {}", log.display()), TIMEOUT, || {
        lines = log_lines(log);
        lines.len() >= n
    });
    lines
}

/// Wait until a line of the log contains `needle`; returns that line.
pub fn wait_for_line(log: &Path, needle: &str) -> String {
    let mut found = None;
    wait_until(
        &format!("a line with {needle:?} in {}", log.display()),
        TIMEOUT,
        || {
            found = log_lines(log).into_iter().find(|l| l.contains(needle));
            found.is_some()
        },
    );
    found.unwrap()
}

/// The log is `0\n1\n2\n...`: every number once, in order. Returns how many.
pub fn assert_consecutive(log: &Path) -> usize {
    let lines = log_lines(log);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l.trim().parse::<u64>().ok(),
            Some(i as u64),
            "{}: line {i} is {l:?} (gap, repeat or garbage); around it: {:?}",
            log.display(),
            &lines[i.saturating_sub(3)..(i + 3).min(lines.len())]
        );
    }
    lines.len()
}

/// The log does not grow for `quiet` (asserting that nothing writes to it any more).
pub fn assert_log_still(log: &Path, quiet: Duration, what: &str) {
    let before = read_log(log).len();
    std::thread::sleep(quiet);
    let after = read_log(log).len();
    assert_eq!(before, after, "{what}: {} still grows", log.display());
}

// ---------------------------------------------------------------------------------------
// Misc

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as the image preamble uses.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The host CPU has this flag in /proc/cpuinfo.
pub fn cpu_has(flag: &str) -> bool {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == flag))
}

/// Report a skipped test: printed so a run shows it as skipped, never as passed silently.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIP {test}: {why}");
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the test programs log).
pub fn mono_ns() -> i64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() * 1_000_000_000 + t.tv_nsec()
}

/// The parent pid of a process.
pub fn parent_of(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The pids a test program wrote, space separated, to `dir/pids` (waits for the line).
pub fn read_pids(dir: &TestDir) -> Vec<i32> {
    wait_until("pids file", TIMEOUT, || {
        fs::read_to_string(dir.join("pids")).is_ok_and(|s| s.ends_with('\n'))
    });
    fs::read_to_string(dir.join("pids"))
        .expect("pids")
        .split_whitespace()
        .map(|x| x.parse().expect("pid"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// File identity

/// BLAKE3 of `data`, lower-case hex (what spirit records as a file's content hash).
pub fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// `readelf -n FILE` (its notes, the GNU build-id among them).
pub fn readelf_notes(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .expect("run readelf");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// Network lock tables (sockets tests)

/// The network lock table an image names, deleted when dropped: a test that fails
/// between the dump and the restore leaves no table on the host (after a restore it is
/// already gone).
pub struct LockGuard(pub Option<String>);

impl LockGuard {
    pub fn of(img: &std::path::Path) -> LockGuard {
        let shown = spirit(&["show", &img.to_string_lossy(), "--json"]);
        LockGuard(
            shown
                .stdout
                .split("\"spirit_lock_")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(|s| format!("spirit_lock_{s}")),
        )
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = sh(&format!("nft delete table inet {t} 2>/dev/null"));
        }
    }
}
