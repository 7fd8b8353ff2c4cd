//! File states at the edges (issue 9, "Files and descriptors"): each test starts
//! `files_breadth MODE` (tests/progs/files_breadth.c), checkpoints it once it is `ready`
//! (which ends it), restores it and lets it go on; the program then checks its own
//! state and reports, and the test judges the report (and what `spirit show` renders
//! of the image). Pipes with an end closed everywhere, FIFOs in every open mode with
//! their data (removed ones and ones shared across fork too), high descriptor numbers
//! shared by several processes, symlinks and O_PATH with their times untouched, signal
//! owners, leases, unlinked files with links left or sparse, removed directories.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};

/// The program's report lines once it said `done`; panics on `FAIL`.
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

/// The files plugin's fds of the first process of `dir`'s image, as `spirit show`
/// renders them.
fn shown(dir: &TestDir) -> Vec<serde_json::Value> {
    let run = spirit(&["show", &dir.s("img.spirit"), "--json"]);
    run.ok("show --json");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("show json");
    v["processes"][0]["sections"]["files"]["content"]["fds"]
        .as_array()
        .expect("fds")
        .clone()
}

fn shown_fd(fds: &[serde_json::Value], fd: i64) -> serde_json::Value {
    fds.iter()
        .find(|f| f["fd"] == fd)
        .cloned()
        .unwrap_or_else(|| panic!("fd {fd} in {fds:?}"))
}

fn has(lines: &[String], want: &str) {
    assert!(
        lines.iter().any(|l| l == want),
        "want {want:?} in {lines:?}"
    );
}

/// Start mode `mode`, wait for `ready`, checkpoint it, restore it (same pids; the
/// tree's other processes, whose pids are in `pids`, are reaped first) and say go.
fn round_trip(mode: &str, dir: &TestDir) -> (Proc, PathBuf) {
    round_trip_with(mode, dir, &[])
}

/// Same, restored with `extra` options (`--new-pid`: another pid).
fn round_trip_with(mode: &str, dir: &TestDir, extra: &[&str]) -> (Proc, PathBuf) {
    let prog = build_c("files_breadth.c", &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, &[mode], dir, "prog");
    wait_for_line(&out, "ready");
    let others: Vec<i32> = if dir.join("pids").exists() {
        read_pids(dir).into_iter().skip(1).collect()
    } else {
        Vec::new()
    };
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    for pid in others {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }
    let restored = restore_ok(&img, extra);
    assert_eq!(restored.pid == orig.pid, extra.is_empty());
    fs::write(dir.join("go"), "").unwrap();
    (restored, out)
}

#[test]
fn pipe_whose_write_end_is_closed_gives_its_data_then_eof() {
    let dir = TestDir::new("fb-pipe-eof");
    let (_p, out) = round_trip("pipe_eof", &dir);
    has(&report(&out), "pipe_eof: data then EOF");
}

#[test]
fn pipe_whose_read_end_is_closed_gives_epipe() {
    let dir = TestDir::new("fb-pipe-epipe");
    let (_p, out) = round_trip("pipe_epipe", &dir);
    has(&report(&out), "pipe_epipe: EPIPE");
}

/// A pipe, a file and a tmpfile() at descriptors above 8200, shared by a parent and 3
/// children ("reopening /proc/self/fd/8210: Not a directory" before: O_TMPFILE kept in
/// the flags of a reopen).
#[test]
fn high_descriptors_shared_by_three_children() {
    let dir = TestDir::new("fb-high-fd");
    let (_p, out) = round_trip("high_fd", &dir);
    let lines = report(&out);
    for i in 0..3 {
        has(&lines, &format!("child {i} pipe+file ok, fd 8210"));
    }
    has(&lines, "high_fd: 3 children shared fds 8210 and 8211");
}

/// A file opened through a symlink and with O_PATH comes back as the same inode with
/// its flags, and neither the dump (which hashes it) nor the restore (which hashes it
/// again and reopens it) moves its access or modification time.
#[test]
fn files_through_symlinks_and_o_path_keep_their_times() {
    let dir = TestDir::new("fb-paths");
    let (_p, out) = round_trip("paths", &dir);
    let lines = report(&out);
    has(&lines, "times atime=978307200 mtime=946684800");
    has(&lines, "paths: symlink and O_PATH ok");
}

/// FIFOs opened read-write, as a reader and writer pair, as a reader alone (data then
/// EOF) and as a writer alone (EPIPE), each with data in flight.
#[test]
fn fifos_in_every_open_mode_keep_their_data() {
    let dir = TestDir::new("fb-fifos");
    let (_p, out) = round_trip("fifos", &dir);
    has(&report(&out), "fifos: rw pair ronly wonly ok");
    let fds = shown(&dir);
    let in_flight: u64 = fds
        .iter()
        .filter(|f| f["kind"] == "fifo")
        .filter_map(|f| f["in_flight"].as_u64())
        .sum();
    assert_eq!(in_flight, 7 + 9 + 12 + 4, "{fds:?}");
}

/// F_SETOWN/F_SETSIG: SIGUSR1 is delivered for the pipe's read end to the process,
/// under its own pid and under a new one.
#[test]
fn signal_owner_is_restored_with_the_pid_translated() {
    for extra in [&[][..], &["--new-pid"][..]] {
        let dir = TestDir::new("fb-owner");
        let (_p, out) = round_trip_with("owner", &dir, extra);
        has(&report(&out), "owner: SIGUSR1 for fd 3 to its own pid");
        let owner = shown_fd(&shown(&dir), 3)["owner"].clone();
        assert_eq!(owner["type"], "pid", "{owner}");
        assert_eq!(owner["signal"], 10, "{owner}");
    }
}

/// A read and a write lease are taken again through the rebuilt descriptors.
#[test]
fn leases_are_taken_again() {
    let dir = TestDir::new("fb-leases");
    let (_p, out) = round_trip("leases", &dir);
    has(&report(&out), "leases: read and write held again");
    let fds = shown(&dir);
    assert_eq!(shown_fd(&fds, 3)["lease"], "read");
    assert_eq!(shown_fd(&fds, 4)["lease"], "write");
}

/// A file unlinked while open with a hard link left comes back through that link; a
/// deleted 200 MiB sparse file (over the 64 MiB content limit) comes back sparse with
/// its data; a file whose only other link is in another directory is refused.
#[test]
fn deleted_files_with_links_left_or_sparse() {
    let dir = TestDir::new("fb-deleted");
    let (_p, out) = round_trip("deleted", &dir);
    has(&report(&out), "deleted: hard link and sparse ok");
    let fds = shown(&dir);
    let (a, sp) = (shown_fd(&fds, 3), shown_fd(&fds, 4));
    assert_eq!(a["kind"], "regular", "{a}");
    assert!(a["path"].as_str().unwrap_or("").ends_with("/b"), "{a}");
    assert_eq!(sp["kind"], "deleted_file", "{sp}");
    assert_eq!(sp["sparse_size"], 200u64 << 20, "{sp}");
    assert_eq!(sp["extents"].as_array().map(Vec::len), Some(3), "{sp}");
    let size = fs::metadata(dir.join("img.spirit")).unwrap().len();
    assert!(
        size < 16 << 20,
        "the image stores extents, not 200 MiB ({size} bytes)"
    );

    let dir = TestDir::new("fb-farlink");
    let prog = build_c("files_breadth.c", &[]);
    let out = dir.join("prog.out");
    let p = Proc::spawn(&prog, &["farlink"], &dir, "prog");
    let ready = wait_for_line(&out, "ready");
    let fd = ready.trim_start_matches("ready fd=").to_string();
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &[]).fails(
        5,
        &[&format!("fd {fd}"), "unlinked", "other link"],
        "dump of a file whose other link is in another directory",
    );
    assert!(p.alive(), "a refused checkpoint leaves the process running");
    assert!(!img.exists(), "no image is left behind");
}

/// A directory removed while held open, and a removed working directory, come back as
/// removed directories.
#[test]
fn removed_directories_held_open_and_as_cwd() {
    let dir = TestDir::new("fb-rmdirs");
    let (_p, out) = round_trip("rmdirs", &dir);
    has(&report(&out), "removed dirs: fd and cwd ok");
    let d = shown_fd(&shown(&dir), 4);
    assert_eq!(d["kind"], "directory", "{d}");
    assert_eq!(d["deleted"], true, "{d}");
}

/// A FIFO removed while a reader and a writer hold it comes back as one removed FIFO
/// with its data in flight.
#[test]
fn removed_fifo_with_data() {
    let dir = TestDir::new("fb-rmfifo");
    let (_p, out) = round_trip("rmfifo", &dir);
    has(&report(&out), "removed fifo: data and flow ok");
}

/// A FIFO description shared by a parent and its child keeps its data in flight (the
/// description is made once, by the parent, and inherited).
#[test]
fn fifo_shared_across_fork_keeps_its_data() {
    let dir = TestDir::new("fb-fifo-fork");
    let (_p, out) = round_trip("fifo_fork", &dir);
    has(
        &report(&out),
        "fifo_fork: shared description with its data ok",
    );
}
