//! File locks held at the checkpoint are held again after the restore: another process
//! still cannot take them (and can, once the restored process is gone).

mod common;

use common::*;
use std::process::{Command, Stdio};

/// Run the lock prober: true if it got the lock, false if someone holds it.
fn can_take(dir: &TestDir, file: &str, kind: &str) -> bool {
    let prog = build_c("files_lock.c", &[]);
    let mut cmd = Command::new(prog);
    cmd.args(["try", &dir.s(file), kind])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spirit_kmod::close_inherited_fds(&mut cmd);
    let st = cmd.status().expect("run lock prober");
    match st.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("lock prober on {file} ({kind}) failed: {other:?}"),
    }
}

/// `flock -n FILE true` from util-linux: exit 0 if it got the lock.
fn util_flock(dir: &TestDir, file: &str) -> Option<bool> {
    let mut cmd = Command::new("flock");
    cmd.args(["-n", &dir.s(file), "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spirit_kmod::close_inherited_fds(&mut cmd);
    cmd.status().ok().map(|s| s.success())
}

const LOCKS: [(&str, &str); 3] = [
    ("flocked", "flock"),
    ("posixlocked", "posix"),
    ("ofdlocked", "ofd"),
];

#[test]
fn flock_posix_and_ofd_locks_are_held_again() {
    let dir = TestDir::new("files-locks");
    let prog = build_c("files_lock.c", &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, &["hold"], &dir, "prog");
    wait_for_line(&out, "ready");
    for (file, kind) in LOCKS {
        assert!(
            !can_take(&dir, file, kind),
            "{kind} lock not held before the checkpoint"
        );
    }
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let shown = spirit(&["show", "--json", &img.to_string_lossy()]);
    shown.ok("show --json");
    let compact: String = shown.stdout.split_whitespace().collect();
    for kind in ["flock", "posix", "ofd"] {
        assert!(
            compact.contains(&format!("\"kind\":\"{kind}\"")),
            "show --json does not list the {kind} lock"
        );
    }
    // The original is gone: its locks went with it.
    for (file, kind) in LOCKS {
        assert!(
            can_take(&dir, file, kind),
            "{kind} lock still held after the original ended"
        );
    }
    let mut restored = restore_ok(&img, &[]);
    std::fs::write(dir.join("go"), "").unwrap();
    wait_for_line(&out, "done");
    for (file, kind) in LOCKS {
        assert!(
            !can_take(&dir, file, kind),
            "{kind} lock not held again after the restore"
        );
    }
    match util_flock(&dir, "flocked") {
        Some(got) => assert!(!got, "flock -n took the lock the restored process holds"),
        None => skip("util-linux flock", "flock(1) is not installed"),
    }
    let lock_lines: Vec<String> = std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!(" {} ", restored.pid)))
        .map(str::to_string)
        .collect();
    assert!(
        lock_lines.iter().any(|l| l.contains("POSIX"))
            && lock_lines.iter().any(|l| l.contains("FLOCK")),
        "/proc/locks does not show the restored pid's locks: {lock_lines:?}"
    );
    restored.kill();
    for (file, kind) in LOCKS {
        assert!(
            can_take(&dir, file, kind),
            "{kind} lock still held after the restored process ended"
        );
    }
}
