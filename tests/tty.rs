//! Terminals, with real programs driven under a detached tmux server the test starts
//! (`tmux -L <unique name> -f /dev/null`, killed by its pid at the end): a shell job
//! dumped with `--shell-job` and restored in another pane; the refusal without it; a
//! pty pair of the tree (`script` running bash) with typed-ahead input, controlling
//! terminal and job control; vim under `script`; vim inside a tmux server checkpointed
//! whole.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A detached tmux server of this test, on its own socket; killed by pid on drop.
struct Tmux {
    name: String,
    server: Option<Proc>,
}

impl Tmux {
    /// A server whose first window `a` runs bash; more windows with [`Tmux::window`].
    fn start(tag: &str, dir: &TestDir) -> Option<Tmux> {
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

    fn run(&self, args: &[&str]) -> String {
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

    fn window(&self, name: &str, dir: &TestDir) {
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

    fn keys(&self, win: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", win];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self, win: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", win])
    }

    /// The pane's terminal (`/dev/pts/N`).
    fn tty(&self, win: &str) -> String {
        self.run(&["display", "-p", "-t", win, "#{pane_tty}"])
            .trim()
            .to_string()
    }

    fn wait_screen(&self, win: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
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
            let mut all = vec![server.pid];
            let mut i = 0;
            while i < all.len() {
                all.extend(children(all[i]));
                i += 1;
            }
            drop(Killer(all));
        }
        drop(self.server.take());
        let _ = fs::remove_file(format!("/tmp/tmux-{}/{}", nix::unistd::getuid(), self.name));
    }
}

/// Processes a test finds in panes (not its children): SIGKILLed on drop, and reaped
/// when they come to us (we are the subreaper of what the tmux server runs), so no
/// zombie outlives the test.
struct Killer(Vec<i32>);

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

fn wait_file(path: &Path, ok: impl Fn(&str) -> bool) -> String {
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

fn read_pid(path: &Path) -> i32 {
    wait_file(path, |s| s.trim().parse::<i32>().is_ok())
        .trim()
        .parse()
        .unwrap()
}

/// Wait until `pids` are gone; the orphans among them are ours to reap (we are the
/// subreaper of the tmux server and what it runs).
fn wait_gone(pids: &[i32]) {
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
fn tty_fields(pid: i32) -> (i32, u64, i32) {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit_once(") ").unwrap().1.split(' ').collect();
    (
        f[2].parse().unwrap(),
        f[4].parse().unwrap(),
        f[5].parse().unwrap(),
    )
}

fn rdev_of(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let rdev = fs::metadata(path).unwrap().rdev();
    let (maj, min) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    (min & 0xff) | (maj << 8) | ((min & !0xff) << 12)
}

fn last_tick(screen: &str) -> Option<u64> {
    screen
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.parse().ok())
        .next_back()
}

/// The tty sections of `spirit show --json` output, process by process, with what
/// varies from run to run (pty numbers, description flags' O_LARGEFILE...) redacted.
fn tty_sections(show: &str) -> serde_json::Value {
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

fn children(pid: i32) -> Vec<i32> {
    spirit_core::procinfo::children(pid).unwrap_or_default()
}

#[test]
fn shell_job_refused_without_the_option_and_continues_on_another_terminal() {
    let dir = TestDir::new("tty-shelljob");
    let prog = build_c("tty_counter.c", &[]);
    let Some(tmux) = Tmux::start("job", &dir) else {
        return;
    };
    // The restoring pane exists before the dump, so its shell cannot take a freed pid.
    tmux.window("b", &dir);
    let pidfile = dir.join("counter.pid");
    tmux.keys(
        "a",
        &[
            &format!("{} 100 {}", prog.display(), pidfile.display()),
            "Enter",
        ],
    );
    let pid = read_pid(&pidfile);
    let mut guard = Killer(vec![pid]);
    tmux.wait_screen("a", "ticks", |s| last_tick(s).is_some_and(|n| n >= 3));

    // Without --shell-job: refused, naming the fd and the option; the job runs on.
    let img = dir.join("job.spirit");
    dump(pid, &img, &[])
        .fails(
            1,
            &["fd 0", "terminal", "--shell-job"],
            "dump of a shell job",
        )
        .clean_error("dump of a shell job");
    let seen = last_tick(&tmux.screen("a")).unwrap();
    tmux.wait_screen("a", "ticks after the refusal", |s| {
        last_tick(s).is_some_and(|n| n >= seen + 3)
    });
    assert!(!img.exists(), "a refused dump leaves no image");

    dump(pid, &img, &["--shell-job"]).ok("dump --shell-job");
    wait_gone(&[pid]);
    let at_dump = last_tick(&tmux.screen("a")).unwrap();
    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    show.ok("show");
    assert!(
        show.stdout.contains("outside the tree") && show.stdout.contains(&tmux.tty("a")),
        "show names the outside terminal:\n{}",
        show.stdout
    );

    // The restoring terminal has another size: the job hears of it (SIGWINCH).
    tmux.run(&["resize-window", "-t", "b", "-x", "90", "-y", "25"]);
    tmux.keys(
        "b",
        &[
            &format!("{SPIRIT} restore --shell-job {}", img.display()),
            "Enter",
        ],
    );
    tmux.wait_screen("b", "the new size reported", |s| s.contains("winch 25 90"));
    let screen = tmux.wait_screen("b", "ticks on the restoring terminal", |s| {
        last_tick(s).is_some_and(|n| n >= at_dump + 3)
    });
    let first: u64 = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("tick ")?.parse().ok())
        .unwrap();
    assert!(
        first > at_dump && first <= at_dump + 2,
        "the count goes on where it was ({at_dump}), not from the start: {first}"
    );
    // On pane b's terminal, as its foreground job.
    let (pgid, ctty, tpgid) = tty_fields(pid);
    assert_eq!(
        ctty,
        rdev_of(&tmux.tty("b")),
        "controlling terminal is pane b's"
    );
    assert_eq!(tpgid, pgid, "the restored job is the foreground group");
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/fd/1"))
            .unwrap()
            .to_string_lossy(),
        tmux.tty("b")
    );
    // Ctrl-C from that terminal reaches it.
    tmux.keys("b", &["C-c"]);
    wait_gone(&[pid]);
    guard.0.clear();
}

#[test]
fn pty_pair_with_typed_ahead_input_and_job_control() {
    let dir = TestDir::new("tty-script");
    let Some(tmux) = Tmux::start("pty", &dir) else {
        return;
    };
    if Command::new("script").arg("--version").output().is_err() {
        println!("SKIPPED: script (util-linux) is not installed");
        return;
    }
    tmux.window("b", &dir);
    let pidfile = dir.join("script.pid");
    // script holds the master; the bash it runs leads a session on the slave.
    tmux.keys(
        "a",
        &[
            &format!(
                "sh -c 'echo $$ > {}; exec script -q -c \"bash --norc --noprofile\" /dev/null'",
                pidfile.display()
            ),
            "Enter",
        ],
    );
    let script = read_pid(&pidfile);
    let mut guard = Killer(vec![script]);
    let t0 = Instant::now();
    let bash = loop {
        if let Some(&b) = children(script).first() {
            break b;
        }
        assert!(t0.elapsed() < TIMEOUT, "script started no shell");
        std::thread::sleep(Duration::from_millis(20));
    };
    guard.0.push(bash);
    // A foreground job that reads nothing for a while; a line typed ahead meanwhile
    // waits in the pty's input queue.
    tmux.keys("a", &["sleep 2; cat > typed.txt", "Enter"]);
    let t0 = Instant::now();
    let sleep = loop {
        if let Some(&s) = children(bash).first() {
            break s;
        }
        assert!(t0.elapsed() < TIMEOUT, "bash started no sleep");
        std::thread::sleep(Duration::from_millis(10));
    };
    guard.0.push(sleep);
    tmux.keys("a", &["queued line", "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    let img = dir.join("pty.spirit");
    dump(script, &img, &["--shell-job"]).ok("dump script and its shell");
    wait_gone(&[script, bash, sleep]);
    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    show.ok("show");
    assert!(
        show.stdout.contains("\"queued_for_slave\": 12"),
        "the typed-ahead line is in the image:\n{}",
        show.stdout
    );
    insta::assert_json_snapshot!("tty_script_bash_sleep", tty_sections(&show.stdout));

    tmux.keys(
        "b",
        &[
            &format!("{SPIRIT} restore --shell-job {}", img.display()),
            "Enter",
        ],
    );
    // The sleep ends, cat reads the queued line from the new pty.
    wait_file(&dir.join("typed.txt"), |s| s == "queued line\n");
    assert!(pid_alive(bash) && pid_alive(script));
    let (bash_pgid, bash_ctty, _) = tty_fields(bash);
    let slave = fs::read_link(format!("/proc/{bash}/fd/0"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(slave.starts_with("/dev/pts/"), "bash's stdin: {slave}");
    assert_eq!(
        bash_ctty,
        rdev_of(&slave),
        "bash's controlling terminal is its new pty"
    );
    assert_eq!(bash_pgid, bash, "bash leads its group");
    // End cat (EOF on the pty in canonical mode), then job control: Ctrl-Z stops a job,
    // bash knows it and can kill it by job number.
    tmux.keys("b", &["C-d"]);
    tmux.keys("b", &["sleep 100", "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys("b", &["C-z"]);
    tmux.wait_screen("b", "the stopped job", |s| s.contains("Stopped"));
    tmux.keys("b", &["kill %1; echo jc-$? > jc.txt", "Enter"]);
    wait_file(&dir.join("jc.txt"), |s| s == "jc-0\n");
    let (_, _, tpgid) = tty_fields(bash);
    assert_eq!(tpgid, bash, "bash is the foreground group again");
    // The pane's Ctrl-D ends the inner shell, then script.
    tmux.keys("b", &["exit", "Enter"]);
    wait_gone(&[bash, script]);
    guard.0.clear();
}

const VIM_ARGS: &str = "vim -u NONE -i NONE -N --noplugin";

fn have_vim() -> bool {
    if Command::new("vim").arg("--version").output().is_err() {
        println!("SKIPPED: vim is not installed");
        return false;
    }
    true
}

/// Whether the restored vim `pid` got its POSIX timer back (vim arms one around every
/// redraw; until plugins/signals restores POSIX timers, it reports E1286 on screen).
fn vim_timers_restored(pid: i32, had: bool) -> bool {
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

fn has_timers(pid: i32) -> bool {
    !fs::read_to_string(format!("/proc/{pid}/timers"))
        .unwrap_or_default()
        .trim()
        .is_empty()
}

/// Edit the first line in vim (in window `win`) and save; the file must show it.
fn edit_and_save(tmux: &Tmux, win: &str, file: &Path) {
    tmux.keys(win, &["gg", "I", "restored ", "Escape", ":wq", "Enter"]);
    wait_file(file, |s| s == "restored hello world\nsecond line\n");
}

#[test]
fn vim_under_script_is_restored_on_another_terminal() {
    let dir = TestDir::new("tty-vim-script");
    if !have_vim() {
        return;
    }
    let Some(tmux) = Tmux::start("vimscript", &dir) else {
        return;
    };
    tmux.window("b", &dir);
    let file = dir.join("f.txt");
    fs::write(&file, "hello world\nsecond line\n").unwrap();
    let pidfile = dir.join("script.pid");
    tmux.keys(
        "a",
        &[
            &format!(
                "sh -c 'echo $$ > {}; exec script -q -c \"{VIM_ARGS} f.txt\" /dev/null'",
                pidfile.display()
            ),
            "Enter",
        ],
    );
    let script = read_pid(&pidfile);
    let mut guard = Killer(vec![script]);
    let before = tmux.wait_screen("a", "vim", |s| {
        s.contains("second line") && s.contains("f.txt")
    });
    let vim = children(script)[0];
    guard.0.push(vim);
    let had_timer = has_timers(vim);
    let img = dir.join("vim.spirit");
    dump(script, &img, &["--shell-job"]).ok("dump script and vim");
    wait_gone(&[script, vim]);
    tmux.keys(
        "b",
        &[
            &format!("clear; {SPIRIT} restore --shell-job {}", img.display()),
            "Enter",
        ],
    );
    let t0 = Instant::now();
    while !pid_alive(vim) {
        assert!(
            t0.elapsed() < TIMEOUT,
            "vim was not restored:\n{}",
            tmux.screen("b")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (pgid, ctty, tpgid) = tty_fields(vim);
    let slave = fs::read_link(format!("/proc/{vim}/fd/0")).unwrap();
    assert_eq!(
        ctty,
        rdev_of(&slave.to_string_lossy()),
        "vim's terminal is its new pty"
    );
    assert_eq!(tpgid, pgid, "vim is its terminal's foreground group");
    if !vim_timers_restored(vim, had_timer) {
        return;
    }
    // vim redraws on the new terminal what it showed on the old one.
    tmux.keys("b", &["C-l"]);
    let lines = |s: &str| s.lines().take(3).map(str::to_string).collect::<Vec<_>>();
    tmux.wait_screen("b", "vim's screen", |s| lines(s) == lines(&before));
    edit_and_save(&tmux, "b", &file);
    wait_gone(&[vim, script]);
    guard.0.clear();
}

#[test]
fn vim_in_a_tmux_server_is_checkpointed_with_the_server() {
    let dir = TestDir::new("tty-vim-tmux");
    if !have_vim() {
        return;
    }
    let Some(mut tmux) = Tmux::start("vimserver", &dir) else {
        return;
    };
    let file = dir.join("f.txt");
    fs::write(&file, "hello world\nsecond line\n").unwrap();
    tmux.run(&[
        "new-window",
        "-d",
        "-n",
        "vim",
        "-c",
        &dir.s(""),
        &format!("{VIM_ARGS} f.txt"),
    ]);
    let before = tmux.wait_screen("vim", "vim", |s| {
        s.contains("second line") && s.contains("f.txt")
    });
    let server = tmux.server.as_ref().unwrap().pid;
    let vim: i32 = tmux
        .run(&["display", "-p", "-t", "vim", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    let had_timer = has_timers(vim);
    let img = dir.join("tmux.spirit");
    let run = dump(server, &img, &[]);
    if run.code != 0 && run.stderr.contains("socket") {
        println!(
            "SKIPPED: the tmux server holds unix sockets, which this build cannot checkpoint yet (plugins/sockets): {}",
            run.error_line()
        );
        return;
    }
    run.ok("dump the tmux server");
    tmux.server.as_mut().unwrap().reap();
    let panes: Vec<i32> = vec![vim];
    wait_gone(&panes);
    tmux.server = Some(restore_ok(&img, &[]));
    // The server kept vim's screen: the same, unchanged.
    assert_eq!(tmux.screen("vim"), before, "capture-pane after the restore");
    assert!(pid_alive(vim));
    if !vim_timers_restored(vim, had_timer) {
        return;
    }
    edit_and_save(&tmux, "vim", &file);
}

#[test]
fn consoles_and_serial_lines_are_refused() {
    let dir = TestDir::new("tty-console");
    let prog = build_c("tty_hold.c", &[]);
    for (dev, kind) in [
        ("/dev/tty1", "virtual console"),
        ("/dev/ttyS0", "serial line"),
        ("/dev/console", "console"),
    ] {
        if !Path::new(dev).exists() {
            println!("SKIPPED: {dev} does not exist here");
            continue;
        }
        let name = dev.rsplit('/').next().unwrap();
        let p = Proc::spawn(&prog, &[dev], &dir, name);
        let out = dir.join(&format!("{name}.out"));
        let t0 = Instant::now();
        loop {
            let s = fs::read_to_string(&out).unwrap_or_default();
            if s.contains("ready") {
                break;
            }
            if !p.alive() {
                // Opening the device is not allowed here: nothing to test with it.
                println!("SKIPPED: cannot open {dev}: {s}");
                break;
            }
            assert!(t0.elapsed() < TIMEOUT, "{dev}: holder not ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        if !p.alive() {
            continue;
        }
        let img = dir.join(&format!("{name}.spirit"));
        dump(p.pid, &img, &[]).fails(
            5,
            &["fd 3", kind],
            &format!("dump of a process holding {dev}"),
        );
        assert!(p.alive(), "a refused dump leaves the process running");
        assert!(!img.exists());
    }
}

#[test]
fn an_outside_terminal_bound_with_inherit_fd() {
    let dir = TestDir::new("tty-inherit");
    let prog = build_c("tty_counter.c", &[]);
    let Some(tmux) = Tmux::start("inherit", &dir) else {
        return;
    };
    tmux.window("b", &dir);
    let pidfile = dir.join("counter.pid");
    tmux.keys(
        "a",
        &[
            &format!("{} 100 {}", prog.display(), pidfile.display()),
            "Enter",
        ],
    );
    let pid = read_pid(&pidfile);
    let mut guard = Killer(vec![pid]);
    tmux.wait_screen("a", "ticks", |s| last_tick(s).is_some_and(|n| n >= 2));
    let key = tmux.tty("a");
    let img = dir.join("job.spirit");
    dump(pid, &img, &["--shell-job"]).ok("dump --shell-job");
    wait_gone(&[pid]);
    let at_dump = last_tick(&tmux.screen("a")).unwrap();
    let img_s = img.to_string_lossy().into_owned();
    // Neither option: refused naming both; --shell-job without a terminal on stdin:
    // refused. Nothing is left behind.
    spirit(&["restore", &img_s]).fails(
        1,
        &["--shell-job", &format!("--inherit-fd fd[N]:{key}")],
        "restore without binding the terminal",
    );
    spirit(&["restore", &img_s, "--shell-job"]).fails(
        1,
        &["not a terminal"],
        "restore --shell-job from /dev/null",
    );
    assert!(!pid_exists(pid), "a failed restore leaves no process");
    // Pane b's terminal (spirit's fd 0 there) stands for pane a's.
    tmux.keys(
        "b",
        &[
            &format!("{SPIRIT} restore --inherit-fd 'fd[0]:{key}' {img_s}"),
            "Enter",
        ],
    );
    tmux.wait_screen("b", "ticks on the bound terminal", |s| {
        last_tick(s).is_some_and(|n| n >= at_dump + 3)
    });
    let (pgid, ctty, tpgid) = tty_fields(pid);
    assert_eq!(ctty, rdev_of(&tmux.tty("b")));
    assert_eq!(tpgid, pgid, "the restored job is the foreground group");
    tmux.keys("b", &["C-c"]);
    wait_gone(&[pid]);
    guard.0.clear();
}

#[test]
fn leave_running_puts_the_queued_bytes_back() {
    let dir = TestDir::new("tty-leave");
    let Some(tmux) = Tmux::start("leave", &dir) else {
        return;
    };
    if Command::new("script").arg("--version").output().is_err() {
        println!("SKIPPED: script (util-linux) is not installed");
        return;
    }
    let pidfile = dir.join("script.pid");
    tmux.keys(
        "a",
        &[
            &format!(
                "sh -c 'echo $$ > {}; exec script -q -c \"bash --norc --noprofile\" /dev/null'",
                pidfile.display()
            ),
            "Enter",
        ],
    );
    let script = read_pid(&pidfile);
    let mut guard = Killer(vec![script]);
    let t0 = Instant::now();
    let bash = loop {
        if let Some(&b) = children(script).first() {
            break b;
        }
        assert!(t0.elapsed() < TIMEOUT, "script started no shell");
        std::thread::sleep(Duration::from_millis(20));
    };
    guard.0.push(bash);
    tmux.keys("a", &["sleep 1.5; cat > typed.txt", "Enter"]);
    std::thread::sleep(Duration::from_millis(200));
    tmux.keys("a", &["typed ahead", "Enter"]);
    std::thread::sleep(Duration::from_millis(200));
    let img = dir.join("pty.spirit");
    dump(script, &img, &["--shell-job", "--leave-running"]).ok("dump --leave-running");
    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    assert!(
        show.stdout.contains("\"queued_for_slave\": 12"),
        "the typed-ahead line is in the image:\n{}",
        show.stdout
    );
    // And still in the running pty: cat gets it once the sleep is over.
    wait_file(&dir.join("typed.txt"), |s| s == "typed ahead\n");
    tmux.keys("a", &["C-d"]);
    tmux.keys("a", &["exit", "Enter"]);
    wait_gone(&[bash, script]);
    guard.0.clear();
}

/// Write `bytes` into pane `fd` (a master) of process `pid`, through a copy of it.
fn type_into(pid: i32, fd: i32, bytes: &[u8]) {
    let pidfd = spirit_kmod::fd::pidfd_open(pid).expect("pidfd_open");
    let master = spirit_kmod::fd::pidfd_getfd(&pidfd, fd).expect("pidfd_getfd");
    let n = nix::unistd::write(&master, bytes).expect("write into the master");
    assert_eq!(n, bytes.len());
}

#[test]
fn a_pty_server_and_its_panes_are_checkpointed_together() {
    let dir = TestDir::new("tty-server");
    let prog = build_c("pty_server.c", &[]);
    let mut server = Proc::spawn(&prog, &[&dir.s("")], &dir, "server");
    let ids: Vec<i32> = wait_file(&dir.join("server.pids"), |s| s.ends_with('\n'))
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (pane, master) = ([ids[1], ids[2]], [ids[3], ids[4]]);
    let mut guard = Killer(pane.to_vec());
    wait_file(&dir.join("pane1.out"), |s| s.contains("$ "));
    // Pane 0's shell also opens its controlling terminal by /dev/tty, at fd 5.
    type_into(
        server.pid,
        master[0],
        b"exec 5<>/dev/tty; echo one > one.txt\n",
    );
    wait_file(&dir.join("one.txt"), |s| s == "one\n");
    // Pane 1: a job that reads nothing for a while, and a line typed ahead.
    type_into(server.pid, master[1], b"sleep 1.5; cat > q.txt\n");
    let t0 = Instant::now();
    let sleep = loop {
        if let Some(&s) = children(pane[1]).first() {
            break s;
        }
        assert!(t0.elapsed() < TIMEOUT, "no sleep in pane 1");
        std::thread::sleep(Duration::from_millis(10));
    };
    guard.0.push(sleep);
    type_into(server.pid, master[1], b"queued\n");
    std::thread::sleep(Duration::from_millis(200));
    let img = dir.join("server.spirit");
    dump(server.pid, &img, &[]).ok("dump the pty server");
    server.reap();
    wait_gone(&[pane[0], pane[1], sleep]);
    let _restored = restore_ok(&img, &[]);
    // The typed-ahead line reaches cat in the recreated pty once the sleep is over.
    wait_file(&dir.join("q.txt"), |s| s == "queued\n");
    type_into(server.pid, master[1], b"\x04");
    type_into(server.pid, master[1], b"stty size > size.txt\n");
    wait_file(&dir.join("size.txt"), |s| s == "21 71\n");
    // Each pane's shell leads its session on its own new pty, and job control works.
    for (i, &p) in pane.iter().enumerate() {
        let (pgid, ctty, tpgid) = tty_fields(p);
        let slave = fs::read_link(format!("/proc/{p}/fd/0")).unwrap();
        assert_eq!(
            ctty,
            rdev_of(&slave.to_string_lossy()),
            "pane {i}'s terminal"
        );
        assert_eq!(
            (pgid, tpgid),
            (p, p),
            "pane {i}'s shell is in the foreground"
        );
    }
    // The /dev/tty descriptor is a slave of the new pty.
    assert_eq!(
        fs::read_link(format!("/proc/{}/fd/5", pane[0])).unwrap(),
        fs::read_link(format!("/proc/{}/fd/0", pane[0])).unwrap()
    );
    type_into(server.pid, master[0], b"echo via-dev-tty >&5\n");
    wait_file(&dir.join("pane0.out"), |s| s.contains("via-dev-tty\r\n"));
    type_into(server.pid, master[0], b"sleep 100\n");
    std::thread::sleep(Duration::from_millis(300));
    type_into(server.pid, master[0], b"\x1a");
    wait_file(&dir.join("pane0.out"), |s| s.contains("Stopped"));
    type_into(server.pid, master[0], b"kill %1; echo jc-$? > jc.txt\n");
    wait_file(&dir.join("jc.txt"), |s| s == "jc-0\n");
    guard.0.extend(children(pane[0]));
}
