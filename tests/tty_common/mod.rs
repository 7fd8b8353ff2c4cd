//! Harness of the terminal tests: a detached tmux server on a socket of the test's own
//! (`tmux -L <unique name> -f /dev/null`), killed with everything it runs by pid at the
//! end (never `kill-server`), and helpers to read what the panes' processes are.

#![allow(dead_code)]

use crate::common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A detached tmux server of this test, on its own socket; killed by pid on drop.
pub struct Tmux {
    pub name: String,
    pub server: Option<Proc>,
}

impl Tmux {
    /// A server whose first window `a` runs bash; more windows with [`Tmux::window`].
    pub fn start(tag: &str, dir: &TestDir) -> Option<Tmux> {
        init();
        if Command::new("tmux").arg("-V").output().is_err() {
            println!("SKIPPED: tmux is not installed");
            return None;
        }
        let name = format!("spirit-test-{tag}-{}", std::process::id());
        let mut t = Tmux { name, server: None };
        t.run(&[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "-n",
            "a",
            "-c",
            &dir.s(""),
            "bash --norc --noprofile",
        ]);
        let pid: i32 = t
            .run(&["display", "-p", "#{pid}"])
            .trim()
            .parse()
            .expect("tmux server pid");
        t.server = Some(Proc::adopt(pid));
        Some(t)
    }

    pub fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.name, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .env("PS1", "$ ")
            .stdin(Stdio::null());
        // The server must not inherit our descriptors (cargo's jobserver pipe...).
        spirit_kmod::close_inherited_fds(&mut cmd);
        let out = cmd.output().expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn window(&self, name: &str, dir: &TestDir) {
        self.run(&[
            "new-window",
            "-d",
            "-n",
            name,
            "-c",
            &dir.s(""),
            "bash --norc --noprofile",
        ]);
    }

    pub fn keys(&self, win: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", win];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    pub fn screen(&self, win: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", win])
    }

    /// The pane's terminal (`/dev/pts/N`).
    pub fn tty(&self, win: &str) -> String {
        self.run(&["display", "-p", "-t", win, "#{pane_tty}"])
            .trim()
            .to_string()
    }

    pub fn wait_screen(&self, win: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen(win);
            if ok(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < TIMEOUT,
                "window {win}: waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // By pid, the server and everything it runs: never `kill-server`, which could
        // reach a server that is not ours.
        if let Some(server) = &self.server {
            let mut all = descendants(server.pid);
            all.push(server.pid);
            drop(Killer(all));
        }
        drop(self.server.take());
        let _ = fs::remove_file(format!("/tmp/tmux-{}/{}", nix::unistd::getuid(), self.name));
    }
}

/// Processes a test finds in panes (not its children): SIGKILLed on drop, and reaped
/// when they come to us (we are the subreaper of what the tmux server runs), so no
/// zombie outlives the test.
pub struct Killer(pub Vec<i32>);

impl Drop for Killer {
    fn drop(&mut self) {
        for &p in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            for &p in &self.0 {
                let _ = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(p),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            }
            if !self.0.iter().any(|&p| pid_exists(p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn wait_file(path: &Path, ok: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let s = fs::read_to_string(path).unwrap_or_default();
        if ok(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < TIMEOUT,
            "waiting for {}: {s:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn read_pid(path: &Path) -> i32 {
    wait_file(path, |s| s.trim().parse::<i32>().is_ok())
        .trim()
        .parse()
        .unwrap()
}

/// Wait until `pids` are gone; the orphans among them are ours to reap (we are the
/// subreaper of the tmux server and what it runs).
pub fn wait_gone(pids: &[i32]) {
    let t0 = Instant::now();
    loop {
        for &p in pids {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(p),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
        if !pids.iter().any(|&p| pid_exists(p)) {
            break;
        }
        assert!(t0.elapsed() < TIMEOUT, "processes {pids:?} did not go away");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// /proc/PID/stat fields 7 and 8: controlling terminal device and its foreground group;
/// and the process group (field 5).
pub fn tty_fields(pid: i32) -> (i32, u64, i32) {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit_once(") ").unwrap().1.split(' ').collect();
    (
        f[2].parse().unwrap(),
        f[4].parse().unwrap(),
        f[5].parse().unwrap(),
    )
}

pub fn rdev_of(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let rdev = fs::metadata(path).unwrap().rdev();
    let (maj, min) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    (min & 0xff) | (maj << 8) | ((min & !0xff) << 12)
}

pub fn last_tick(screen: &str) -> Option<u64> {
    screen
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.parse().ok())
        .next_back()
}

/// The tty sections of `spirit show --json` output, process by process, with what
/// varies from run to run (pty numbers, description flags' O_LARGEFILE...) redacted.
pub fn tty_sections(show: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(show).expect("show --json is JSON");
    let secs: Vec<serde_json::Value> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sections"]["tty"]["content"].clone())
        .collect();
    let mut text = serde_json::to_string(&secs).unwrap();
    for n in (0..4096).rev() {
        text = text.replace(&format!("/dev/pts/{n}\""), "/dev/pts/[n]\"");
    }
    let mut out: serde_json::Value = serde_json::from_str(&text).unwrap();
    for sec in out.as_array_mut().unwrap() {
        for t in sec["terminals"].as_array_mut().into_iter().flatten() {
            t["index"] = "[n]".into();
        }
    }
    out
}

/// Every descendant of `pid` (not itself).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut all = children(pid);
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    all
}

pub fn children(pid: i32) -> Vec<i32> {
    spirit_core::procinfo::children(pid).unwrap_or_default()
}

/// Write `bytes` into pane `fd` (a master) of process `pid`, through a copy of it.
pub fn type_into(pid: i32, fd: i32, bytes: &[u8]) {
    let pidfd = spirit_kmod::fd::pidfd_open(pid).expect("pidfd_open");
    let master = spirit_kmod::fd::pidfd_getfd(&pidfd, fd).expect("pidfd_getfd");
    let n = nix::unistd::write(&master, bytes).expect("write into the master");
    assert_eq!(n, bytes.len());
}

pub const VIM_ARGS: &str = "vim -u NONE -i NONE -N --noplugin";

pub fn have_vim() -> bool {
    if Command::new("vim").arg("--version").output().is_err() {
        println!("SKIPPED: vim is not installed");
        return false;
    }
    true
}

/// Whether the restored vim `pid` got its POSIX timer back (vim arms one around every
/// redraw; until plugins/signals restores POSIX timers, it reports E1286 on screen).
pub fn vim_timers_restored(pid: i32, had: bool) -> bool {
    let now = !fs::read_to_string(format!("/proc/{pid}/timers"))
        .unwrap_or_default()
        .trim()
        .is_empty();
    if had && !now {
        println!("SKIPPED (editing after the restore): vim's POSIX timer is not restored yet (timers of plugins/signals)");
        return false;
    }
    true
}

pub fn has_timers(pid: i32) -> bool {
    !fs::read_to_string(format!("/proc/{pid}/timers"))
        .unwrap_or_default()
        .trim()
        .is_empty()
}

/// Edit the first line in vim (in window `win`) and save; the file must show it.
pub fn edit_and_save(tmux: &Tmux, win: &str, file: &Path) {
    tmux.keys(win, &["gg", "I", "restored ", "Escape", ":wq", "Enter"]);
    wait_file(file, |s| s == "restored hello world\nsecond line\n");
}
