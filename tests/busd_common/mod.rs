//! Harness for spiritd's end-to-end tests: a real `dbus-daemon` on a private socket
//! (configured like the system bus, plus the shipped policy `dist/org.spirit.Spirit1.conf`),
//! a real `spiritd`, the real `busctl`, and C test programs built with gcc. Everything
//! started here is ended by pid in `Drop`, also when an assertion fails.

#![allow(dead_code)]

pub mod hosts;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const SPIRIT: &str = env!("CARGO_BIN_EXE_spirit");
pub const SPIRITD: &str = env!("CARGO_BIN_EXE_spiritd");
pub const DEST: &str = "org.spirit.Spirit1";
pub const MANAGER: &str = "/org/spirit/Spirit1";
pub const MGR_IFACE: &str = "org.spirit.Spirit1.Manager";
pub const JOB_IFACE: &str = "org.spirit.Spirit1.Job";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Once per test binary: adopt orphans (PID 1 here does not reap them).
pub fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        spirit_kmod::set_child_subreaper().expect("become a child subreaper");
    });
}

/// Is `tool` on PATH? (Tests that need it say they are skipped otherwise.)
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Build a C program once per test binary; returns its path.
pub fn build_c(name: &str, src: &Path) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("busd-{name}"));
    if !out.exists() {
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let st = Command::new("gcc")
            .args(["-O1", "-o"])
            .arg(&tmp)
            .arg(src)
            .status()
            .expect("run gcc");
        assert!(st.success(), "gcc failed for {}", src.display());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

pub fn counter() -> PathBuf {
    build_c("counter", &repo().join("tests/progs/counter.c"))
}

pub fn bigcounter() -> PathBuf {
    build_c("bigcounter", &repo().join("tests/busd_common/bigcounter.c"))
}

/// Processes this test started (or that were restored for it), killed and reaped by
/// pid on drop.
#[derive(Default)]
pub struct Procs {
    children: Vec<Child>,
    pids: Vec<i32>,
}

impl Procs {
    pub fn spawn(&mut self, mut cmd: Command) -> u32 {
        spirit_kmod::close_inherited_fds(&mut cmd);
        let c = cmd.spawn().expect("spawn a test process");
        let pid = c.id();
        self.children.push(c);
        pid
    }
    /// Track a pid that is not our direct child (a restored process).
    pub fn adopt(&mut self, pid: u32) {
        self.pids.push(pid as i32);
    }
    /// Has our child `pid` exited (reaped now if so)?
    pub fn exited(&mut self, pid: u32) -> bool {
        for c in &mut self.children {
            if c.id() == pid {
                return c.try_wait().ok().flatten().is_some();
            }
        }
        panic!("pid {pid} is not a child of this test");
    }
}

fn kill_reap(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for &p in &self.pids {
            kill_reap(p);
        }
    }
}

/// A counting program started with stdio on /dev/null (spirit refuses pipes).
pub fn counter_cmd(prog: &Path, log: &Path, ms: u32, mib: Option<u32>) -> Command {
    let mut c = Command::new(prog);
    c.arg(log).arg(ms.to_string());
    if let Some(m) = mib {
        c.arg(m.to_string());
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The numbers in a counter's log.
pub fn log_numbers(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// Every number from 0 up, once, in order, and at least `min` of them.
pub fn assert_continuous(log: &Path, min: usize) {
    let n = log_numbers(log);
    for (i, v) in n.iter().enumerate() {
        assert_eq!(
            *v,
            i as u64,
            "gap or repeat in {} at line {i}: {n:?}",
            log.display()
        );
    }
    assert!(
        n.len() >= min,
        "{} has only {} numbers",
        log.display(),
        n.len()
    );
}

/// Wait until the log has grown by `more` numbers (the program runs).
pub fn wait_growth(log: &Path, more: usize, timeout: Duration) -> bool {
    let start = log_numbers(log).len();
    let t = Instant::now();
    while t.elapsed() < timeout {
        if log_numbers(log).len() >= start + more {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A test-only system-like `dbus-daemon` on `DIR/bus`, with the shipped policy.
pub struct TestBus {
    child: Child,
    pub address: String,
}

impl TestBus {
    pub fn start(dir: &Path) -> TestBus {
        let sock = dir.join("bus");
        let conf = dir.join("bus.conf");
        let policy = repo().join("dist/org.spirit.Spirit1.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
                sock = sock.display(),
                policy = policy.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dbus.log")).unwrap());
        spirit_kmod::close_inherited_fds(&mut cmd);
        let child = cmd.spawn().expect("start dbus-daemon");
        let t = Instant::now();
        while !sock.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "dbus-daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Make the socket usable by the unprivileged test user.
        let _ = std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        TestBus {
            child,
            address: format!("unix:path={}", sock.display()),
        }
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `spiritd`; `prefix` wraps its command (e.g. `ip netns exec A`).
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
    pub bus: String,
}

impl Daemon {
    pub fn start(bus: &str, dir: &Path, config: &str, prefix: &[&str]) -> Daemon {
        Daemon::start_with(bus, dir, config, prefix, Path::new(SPIRIT))
    }

    /// With another worker binary.
    pub fn start_with(
        bus: &str,
        dir: &Path,
        config: &str,
        prefix: &[&str],
        worker: &Path,
    ) -> Daemon {
        let cfg = dir.join("spiritd.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("spiritd.log");
        let mut cmd = Command::new(prefix.first().copied().unwrap_or(SPIRITD));
        if !prefix.is_empty() {
            cmd.args(&prefix[1..]).arg(SPIRITD);
        }
        cmd.arg("--bus")
            .arg(bus)
            .arg("--config")
            .arg(&cfg)
            .arg("--worker")
            .arg(worker)
            .env("SPIRIT_LOG", "info,spirit_busd=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        spirit_kmod::close_inherited_fds(&mut cmd);
        let mut child = cmd.spawn().expect("start spiritd");
        let t = Instant::now();
        loop {
            let o = busctl(
                bus,
                None,
                &[
                    "call",
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "NameHasOwner",
                    "s",
                    DEST,
                ],
            );
            if o.stdout.contains("true") {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "spiritd exited ({st}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "spiritd did not take its name"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            log,
            bus: bus.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill it now (a fault test).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run the real busctl on `bus`, as user `uid` if given.
pub fn busctl(bus: &str, uid: Option<u32>, args: &[&str]) -> Out {
    let mut cmd = Command::new("busctl");
    cmd.arg(format!("--address={bus}"))
        .args(args)
        .stdin(Stdio::null());
    if let Some(u) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(u).gid(u);
    }
    let o: Output = cmd.output().expect("run busctl");
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Call a Manager method; returns the job path, or the error text.
pub fn call(
    bus: &str,
    uid: Option<u32>,
    method: &str,
    sig: &str,
    args: &[&str],
) -> Result<String, String> {
    let mut a = vec!["call", DEST, MANAGER, MGR_IFACE, method, sig];
    a.extend_from_slice(args);
    let o = busctl(bus, uid, &a);
    if !o.ok {
        return Err(o.stderr);
    }
    let path = o
        .stdout
        .trim()
        .strip_prefix("o ")
        .unwrap_or(o.stdout.trim())
        .trim_matches('"');
    Ok(path.to_string())
}

/// A property as JSON (`busctl --json=short get-property`): its "data".
pub fn prop(bus: &str, path: &str, iface: &str, name: &str) -> serde_json::Value {
    let o = busctl(
        bus,
        None,
        &["--json=short", "get-property", DEST, path, iface, name],
    );
    assert!(o.ok, "get-property {path} {name}: {}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).expect("busctl JSON");
    v["data"].clone()
}

/// Wait for a job to finish; returns its final state.
pub fn wait_job(bus: &str, path: &str, timeout: Duration) -> String {
    let t = Instant::now();
    loop {
        let s = prop(bus, path, JOB_IFACE, "State");
        let s = s.as_str().unwrap_or("").to_string();
        if matches!(s.as_str(), "done" | "failed" | "cancelled") {
            return s;
        }
        assert!(
            t.elapsed() < timeout,
            "job {path} still {s} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A job's Result entry (the variant's data).
pub fn result_u64(bus: &str, path: &str, key: &str) -> u64 {
    let r = prop(bus, path, JOB_IFACE, "Result");
    r[key]["data"]
        .as_u64()
        .unwrap_or_else(|| panic!("Result of {path} has no {key}: {r}"))
}

pub fn job_error(bus: &str, path: &str) -> String {
    prop(bus, path, JOB_IFACE, "Error")
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Is `pid` alive (not a zombie)?
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
