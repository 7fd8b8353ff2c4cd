//! Terminals outside the checkpointed tree and terminals spirit refuses, with real
//! programs driven in panes of a detached tmux server the test starts: a shell job dumped
//! with `--shell-job` and restored in another pane (also bound with `--inherit-fd`), the
//! refusal without the option, consoles and serial lines refused.

mod common;
mod tty_common;

use common::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use tty_common::*;

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
