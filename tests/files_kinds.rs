//! Descriptor kinds at the edges of the files plugin: a /proc file is reopened by path
//! (its pid rewritten when the process gets another one), and a kind the plugin does
//! not handle (a POSIX message queue) is refused naming the fd and the kind, never
//! taken for a look-alike (an unlinked file).

mod common;

use common::*;
use std::fs;

#[test]
fn proc_self_status_comes_back_under_a_new_pid() {
    let dir = TestDir::new("files-proc");
    let prog = build_c("files_proc.c", &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, &[], &dir, "prog");
    let ready = wait_for_line(&out, "ready");
    assert_eq!(ready, format!("ready fd=3 pid={}", orig.pid));
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();

    // The image records the file by the path the kernel shows, with its offset.
    let run = spirit(&["show", &img.to_string_lossy(), "--json"]);
    run.ok("show --json");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let fds = v["processes"][0]["sections"]["files"]["content"]["fds"]
        .as_array()
        .expect("fds");
    let f = fds
        .iter()
        .find(|f| f["fd"] == 3)
        .expect("fd 3 in the image");
    assert_eq!(f["kind"], "pseudo", "{f}");
    assert_eq!(f["path"], format!("/proc/{}/status", orig.pid), "{f}");
    assert_eq!(f["pos"], 5, "{f}");

    let restored = restore_ok(&img, &["--new-pid"]);
    assert_ne!(restored.pid, orig.pid, "--new-pid gave the old pid back");
    fs::write(dir.join("go"), "").unwrap();
    let mut lines = Vec::new();
    wait_until("the restored program reports", TIMEOUT, || {
        lines = log_lines(&out);
        lines.iter().any(|l| l == "done" || l.starts_with("FAIL"))
    });
    assert!(
        !lines.iter().any(|l| l.starts_with("FAIL")),
        "the program failed:\n{}",
        lines.join("\n")
    );
    assert!(lines.contains(&"after Name: tab".to_string()), "{lines:?}");
    let want = format!("status pid={0} getpid={0}", restored.pid);
    assert!(lines.contains(&want), "want {want:?} in {lines:?}");
}

#[test]
fn a_message_queue_is_refused_naming_the_fd() {
    let dir = TestDir::new("files-mqueue");
    let prog = build_c("files_mqueue.c", &["-lrt"]);
    let out = dir.join("prog.out");
    let mut p = Proc::spawn(&prog, &[], &dir, "prog");
    wait_until("the program starts", TIMEOUT, || {
        log_lines(&out)
            .iter()
            .any(|l| l.starts_with("ready") || l.starts_with("SKIP"))
    });
    if let Some(why) = log_lines(&out).iter().find(|l| l.starts_with("SKIP")) {
        p.reap();
        eprintln!("SKIPPED: cannot make a message queue here ({why})");
        return;
    }
    let ready = wait_for_line(&out, "ready");
    let fd = ready.trim_start_matches("ready fd=").to_string();
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &[]).fails(
        5,
        &[&format!("fd {fd}"), "message queue"],
        "dump of a process holding a message queue",
    );
    assert!(p.alive(), "a refused checkpoint leaves the process running");
    assert!(!img.exists(), "no image is left behind");
    p.kill();
}
