//! The files plugin, end to end: descriptors beyond plain files survive a checkpoint and
//! a restore of one process. Each test program sets up its descriptors, says `ready`,
//! is checkpointed (which ends it) and restored, then — once the test creates `go` in
//! its directory — exercises them and reports what it sees; the test judges that.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};

/// The program's report lines (its stdout) once it said `done`; panics on `FAIL`.
fn report(out: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(&format!("done in {}", out.display()), TIMEOUT, || {
        lines = log_lines(out);
        lines.iter().any(|l| l == "done" || l.starts_with("FAIL"))
    });
    assert!(
        !lines.iter().any(|l| l.starts_with("FAIL")),
        "the program failed:\n{}",
        lines.join("\n")
    );
    lines
}

fn line_with<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
}

/// Start `src` with `args`, wait for `ready`, checkpoint it (ending it), reap it, restore
/// it with its pid and let it go on. Returns the restored process and its report file;
/// the image stays at `img.spirit`.
fn round_trip(src: &str, args: &[&str], dir: &TestDir) -> (Proc, PathBuf) {
    let prog = build_c(src, &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, args, dir, "prog");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let restored = restore_ok(&img, &[]);
    assert_eq!(restored.pid, orig.pid);
    fs::write(dir.join("go"), "").unwrap();
    (restored, out)
}

#[test]
fn dup_fds_share_one_offset_and_keep_cloexec() {
    let dir = TestDir::new("files-dup");
    fs::write(dir.join("data"), "0123456789abcdef").unwrap();
    let (_p, out) = round_trip("files_dup.c", &[&dir.s("data")], &dir);
    let lines = report(&out);
    // fd 3 read "01" before the checkpoint: 4 and 10 share its offset and go on from
    // there; fd 5 has its own (it had read "0").
    assert_eq!(line_with(&lines, "via4"), "via4=23 via10=45 via5=12");
    assert_eq!(line_with(&lines, "cloexec"), "cloexec 3=0 4=0 5=1 10=1");
}

#[test]
fn pipes_held_by_the_process_keep_data_in_flight() {
    let dir = TestDir::new("files-pipe");
    let (_p, out) = round_trip("files_pipe.c", &["self"], &dir);
    let lines = report(&out);
    assert_eq!(
        line_with(&lines, "pipe a:"),
        "pipe a: 100000 bytes in flight intact, nonblock=1, capacity=1048576"
    );
    assert_eq!(line_with(&lines, "pipe b:"), "pipe b: wake");
    assert_eq!(line_with(&lines, "cloexec b="), "cloexec b=1,1");
    assert_eq!(
        line_with(&lines, "dup write end"),
        "dup write end feeds: via dup"
    );
}

#[test]
fn pipe_with_an_end_outside_the_process_is_refused() {
    let dir = TestDir::new("files-halfpipe");
    let prog = build_c("files_pipe.c", &[]);
    let out = dir.join("prog.out");
    let p = Proc::spawn(&prog, &["half"], &dir, "prog");
    wait_for_line(&out, "ready");
    let holder = wait_for_line(&out, "holder ");
    let mut holder = Proc::adopt(holder["holder ".len()..].parse().expect("holder pid"));
    let img = dir.join("img.spirit");
    let run = dump(p.pid, &img, &[]);
    holder.kill();
    run.fails(
        5,
        &["fd 3", "pipe", "write end", "outside the tree"],
        "dump of a pipe whose write end is held outside the tree",
    );
    assert!(p.alive(), "a refused checkpoint leaves the process running");
    assert!(!img.exists(), "no image is left behind");
}

#[test]
fn epoll_watching_a_closed_number_is_refused() {
    let dir = TestDir::new("files-stale-epoll");
    let prog = build_c("files_pipe.c", &[]);
    let out = dir.join("prog.out");
    let p = Proc::spawn(&prog, &["stale"], &dir, "prog");
    wait_for_line(&out, "ready");
    dump(p.pid, &dir.join("img.spirit"), &[]).fails(
        5,
        &["fd 5", "epoll", "fd 3", "closed"],
        "dump of an epoll set watching a closed fd",
    );
    assert!(p.alive(), "a refused checkpoint leaves the process running");
}

#[test]
fn deleted_file_comes_back_unlinked_with_content_and_offset() {
    let dir = TestDir::new("files-deleted");
    let (_p, out) = round_trip("files_deleted.c", &["small"], &dir);
    let lines = report(&out);
    assert_eq!(
        line_with(&lines, "nlink="),
        "nlink=0 size=100000 mode=640 pos=1234"
    );
    assert_eq!(
        line_with(&lines, "in original"),
        "in original dir=1 deleted=1"
    );
    line_with(&lines, "content intact, writable");
    // Nothing named was left in the directory.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("scratch") || n.contains("spirit-deleted")),
        "{names:?}"
    );
}

#[test]
fn deleted_file_over_the_limit_is_refused() {
    let dir = TestDir::new("files-deleted-big");
    let prog = build_c("files_deleted.c", &[]);
    let out = dir.join("prog.out");
    let p = Proc::spawn(&prog, &["big"], &dir, "prog");
    wait_for_line(&out, "ready");
    dump(p.pid, &dir.join("img.spirit"), &[]).fails(
        5,
        &["fd 3", "deleted file", "64 MiB", "--skip-fd 3"],
        "dump of a 65 MiB deleted file",
    );
    assert!(p.alive(), "a refused checkpoint leaves the process running");
}

#[test]
fn memfd_eventfd_timerfd_signalfd_epoll_inotify() {
    let dir = TestDir::new("files-anon");
    let (_p, out) = round_trip("files_anon.c", &[], &dir);
    let lines = report(&out);
    // F_SEAL_SHRINK|F_SEAL_GROW = 2|4; ftruncate to shrink is refused.
    assert_eq!(
        line_with(&lines, "memfd:"),
        "memfd: /memfd:spirit-test (deleted) rest=content seals=6 shrink=-1"
    );
    assert_eq!(
        line_with(&lines, "epoll:"),
        "epoll: 2 ready, eventfd=1 pipe=1 other=0"
    );
    assert_eq!(
        line_with(&lines, "eventfd:"),
        "eventfd: 5 reads then errno=EAGAIN"
    );
    assert_eq!(
        line_with(&lines, "timerfd:"),
        "timerfd: ticks>=1 interval_ns=30000000"
    );
    assert_eq!(line_with(&lines, "signalfd:"), "signalfd: signo=10");
    // IN_CREATE = 0x100.
    assert_eq!(
        line_with(&lines, "inotify:"),
        "inotify: wd=2 mask=100 name=newfile"
    );
}

/// The files section of `spirit show --json IMG`, fds by number.
fn shown_fds(img: &Path) -> std::collections::BTreeMap<i64, serde_json::Value> {
    let run = spirit(&["show", "--json", &img.to_string_lossy()]);
    run.ok("show --json");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("show --json is JSON");
    fn find(v: &serde_json::Value) -> Option<&serde_json::Value> {
        match v {
            serde_json::Value::Object(m) if m.contains_key("cwd") && m.contains_key("fds") => {
                Some(v)
            }
            serde_json::Value::Object(m) => m.values().find_map(find),
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    let files = find(&v).expect("a files section in show --json");
    files["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["fd"].as_i64().unwrap(), f.clone()))
        .collect()
}

#[test]
fn show_renders_every_descriptor_kind() {
    let dir = TestDir::new("files-show");
    let prog = build_c("files_anon.c", &[]);
    let out = dir.join("prog.out");
    let _p = Proc::spawn(&prog, &[], &dir, "prog");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    dump(_p.pid, &img, &["--leave-running"]).ok("dump");
    let fds = shown_fds(&img);
    let kind = |fd: i64| fds[&fd]["kind"].as_str().unwrap().to_string();
    // files_anon.c opens, in order: memfd 3, eventfd 4, timerfd 5, signalfd 6, pipe 7
    // and 8, epoll 9, inotify 10.
    let kinds: Vec<String> = (3..=10).map(kind).collect();
    assert_eq!(
        kinds,
        ["memfd", "eventfd", "timerfd", "signalfd", "pipe", "pipe", "epoll", "inotify"]
    );
    assert_eq!(fds[&3]["path"], "/memfd:spirit-test");
    assert_eq!(fds[&3]["size"], 13);
    assert_eq!(fds[&3]["pos"], 6);
    assert_eq!(fds[&3]["seals"], 6);
    assert_eq!(fds[&4]["count"], 5);
    assert_eq!(fds[&4]["semaphore"], true);
    assert_eq!(fds[&5]["interval_ns"], 30_000_000);
    assert_eq!(fds[&6]["sigmask"], 1 << 9); // SIGUSR1
    assert_eq!(fds[&7]["in_flight"], 1);
    let watches = fds[&9]["watches"].as_array().unwrap();
    // (fd, data) pairs; the kernel lists them in its own order.
    let mut pairs: Vec<(i64, u64)> = watches
        .iter()
        .map(|w| (w["fd"].as_i64().unwrap(), w["data"].as_u64().unwrap()))
        .collect();
    pairs.sort();
    assert_eq!(pairs, [(4, 0xE1), (7, 0xB1)]);
    let inw = fds[&10]["watches"].as_array().unwrap();
    assert_eq!(inw.len(), 1);
    assert_eq!(inw[0]["wd"], 2);
    assert_eq!(inw[0]["path"], dir.s("watched"));
    // The text form renders too.
    spirit(&["show", &img.to_string_lossy()]).ok("show");
}
