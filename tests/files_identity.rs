//! File identity at restore: a regular file the process has open that changed since the
//! checkpoint (size, mtime, or content for files up to 1 MiB) or went missing is named
//! and the restore refused (exit 11, no process left), unless
//! `--allow-changed-files`.

mod common;

use common::*;
use std::fs;
use std::time::{Duration, SystemTime};

/// The counter, checkpointed (and ended) with a few lines in its log.
fn checkpointed_counter(dir: &TestDir) -> (Proc, std::path::PathBuf) {
    let prog = build_c("counter.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "10"], dir, "counter");
    wait_lines(&dir.join("log"), 5);
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    (orig, img)
}

fn set_mtime(path: &std::path::Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn refused(dir: &TestDir, img: &std::path::Path, needles: &[&str], what: &str) {
    let (run, p) = restore(img, &[]);
    assert!(p.is_none());
    run.fails(11, needles, what);
    assert!(
        procs_in(dir.path()).is_empty(),
        "{what}: a process was left behind"
    );
}

#[test]
fn changed_content_same_size_and_mtime_is_refused_then_allowed() {
    let dir = TestDir::new("files-changed");
    let (orig, img) = checkpointed_counter(&dir);
    let log = dir.join("log");
    let mtime = fs::metadata(&log).unwrap().modified().unwrap();
    // Same size, same mtime, one byte different: only the content hash sees it.
    let mut bytes = fs::read(&log).unwrap();
    bytes[0] = if bytes[0] == b'0' { b'9' } else { b'0' };
    fs::write(&log, &bytes).unwrap();
    set_mtime(&log, mtime);
    refused(
        &dir,
        &img,
        &[&dir.s("log"), "content differs", "--allow-changed-files"],
        "changed content",
    );
    // Grown: named with its sizes.
    let mut grown = bytes.clone();
    grown.extend_from_slice(b"extra\n");
    fs::write(&log, &grown).unwrap();
    refused(&dir, &img, &[&dir.s("log"), "size"], "grown file");
    // Touched only.
    fs::write(&log, &bytes).unwrap();
    set_mtime(&log, mtime + Duration::from_secs(5));
    refused(&dir, &img, &[&dir.s("log"), "mtime"], "touched file");
    // Accepted on request: the counter goes on appending.
    let before = log_lines(&log).len();
    let restored = restore_ok(&img, &["--allow-changed-files"]);
    assert_eq!(restored.pid, orig.pid);
    wait_lines(&log, before + 10);
}

#[test]
fn missing_file_is_named() {
    let dir = TestDir::new("files-missing");
    let (_orig, img) = checkpointed_counter(&dir);
    fs::rename(dir.join("log"), dir.join("log.moved")).unwrap();
    refused(&dir, &img, &[&dir.s("log"), "missing"], "missing file");
    // --allow-changed-files does not make a missing file appear.
    let (run, p) = restore(&img, &["--allow-changed-files"]);
    assert!(p.is_none());
    run.fails(
        11,
        &[&dir.s("log"), "missing"],
        "missing file, changes allowed",
    );
}

#[test]
fn unchanged_files_restore() {
    let dir = TestDir::new("files-unchanged");
    let (_orig, img) = checkpointed_counter(&dir);
    let log = dir.join("log");
    let before = log_lines(&log).len();
    let _restored = restore_ok(&img, &[]);
    wait_lines(&log, before + 10);
    assert_consecutive(&log);
}
