//! Descriptors shared between the processes of a tree: a pipe between a parent and its
//! child with data in flight, a shell pipeline, and one file offset shared across fork,
//! each checkpointed with its whole tree and continuing exactly after the restore.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

fn pids(dir: &TestDir) -> (i32, i32) {
    let v = read_pids(dir);
    (v[0], v[1])
}

fn reap_orphan(pid: i32) {
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

/// Children of `pid` (every thread's), from /proc.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for t in tids(pid) {
        if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/task/{t}/children")) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
    }
    out
}

/// The descriptor numbers process `pid` has open.
fn fd_numbers(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    v
}

/// `spirit show --json` of an image.
fn show(img: &Path) -> Value {
    let run = spirit(&["show", &img.to_string_lossy(), "--json"]);
    run.ok("show");
    serde_json::from_str(&run.stdout).expect("show json")
}

/// The files plugin's fds of process `pid` in a shown image.
fn fds_of(v: &Value, pid: i32) -> Vec<Value> {
    let p = v["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("process {pid} in the image"));
    p["sections"]["files"]["content"]["fds"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("files section of {pid}: {p}"))
}

fn fd(fds: &[Value], n: i32) -> Value {
    fds.iter()
        .find(|f| f["fd"] == n)
        .cloned()
        .unwrap_or_else(|| panic!("fd {n} in {fds:?}"))
}

#[test]
fn parent_and_child_stream_through_a_pipe_with_data_in_flight() {
    let dir = TestDir::new("ftree-stream");
    let prog = build_c("files_tree_stream.c", &[]);
    let log = dir.join("reader.log");
    let mut parent = Proc::spawn(&prog, &["stream", &dir.s("")], &dir, "stream");
    let (pp, pc) = pids(&dir);
    assert_eq!(pp, parent.pid);
    wait_lines(&log, 200);
    let before = (fd_numbers(pp), fd_numbers(pc));

    // The reader alone: its pipe's write end is outside the checkpointed tree.
    let pcs = pc.to_string();
    dump(pc, &dir.join("reader.spirit"), &[]).fails(
        5,
        &[&pcs, "fd 3", "pipe", "write end"],
        "dump of the reader without its writer",
    );
    let seen = log_lines(&log).len();
    wait_lines(&log, seen + 50);

    let img = dir.join("img.spirit");
    dump(parent.pid, &img, &[]).ok("dump the writer and its reader");
    parent.reap();
    reap_orphan(pc);
    let n = assert_consecutive(&log);

    let v = show(&img);
    let (w, r) = (fds_of(&v, pp), fds_of(&v, pc));
    let (w, r) = (fd(&w, 4), fd(&r, 3));
    assert_eq!(w["kind"], "pipe");
    assert_eq!(
        (w["end"].as_str(), r["end"].as_str()),
        (Some("write"), Some("read"))
    );
    assert_eq!(w["pipe"], r["pipe"], "one pipe: {w} {r}");
    assert_eq!(w["capacity"], 128 * 1024);
    assert_ne!(w["desc"], r["desc"], "two descriptions");
    let in_flight = w["in_flight"].as_u64().unwrap() + r["in_flight"].as_u64().unwrap();
    assert!(
        in_flight > 64 * 1024,
        "the pipe was full at the checkpoint: {in_flight} bytes in flight"
    );
    // The parent's stdout and its child's: one description.
    assert_eq!(
        fd(&fds_of(&v, pp), 1)["desc"],
        fd(&fds_of(&v, pc), 1)["desc"]
    );

    let _ = fs::remove_file(dir.join("cap"));
    let root = restore_ok(&img, &[]);
    assert_eq!(root.pid, pp);
    let mut child = Proc::adopt(pc);
    wait_lines(&log, n + 500);
    assert_consecutive(&log);
    wait_until("the capacity reported again", TIMEOUT, || {
        dir.join("cap").exists()
    });
    assert_eq!(
        fs::read_to_string(dir.join("cap")).unwrap().trim(),
        "131072",
        "the pipe keeps its capacity"
    );
    assert_eq!(
        children(pp),
        vec![pc],
        "the reader is again the writer's child"
    );
    assert_eq!(
        (fd_numbers(pp), fd_numbers(pc)),
        before,
        "the same descriptors, no parked one left behind"
    );
    drop(root);
    child.kill();
}

#[test]
fn a_shell_pipeline_continues_exactly() {
    let dir = TestDir::new("ftree-sh");
    let prog = build_c("files_tree_stream.c", &[]);
    let prog = copy_prog(&prog, dir.path(), "stream");
    let log = dir.join("consumer.log");
    let line = format!(
        "{p} produce | cat | {p} consume {l}",
        p = prog.display(),
        l = log.display()
    );
    let mut shell = Proc::start(
        {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(&line);
            c
        },
        &dir,
        "sh",
    );
    wait_lines(&log, 200);
    let kids = children(shell.pid);
    assert_eq!(kids.len(), 3, "sh runs the three commands: {kids:?}");

    let img = dir.join("img.spirit");
    dump(shell.pid, &img, &[]).ok("dump the shell and its pipeline");
    shell.reap();
    for k in &kids {
        reap_orphan(*k);
    }
    let n = assert_consecutive(&log);

    let v = show(&img);
    // The shell made the pipes and closed them: it holds none.
    assert!(
        fds_of(&v, shell.pid).iter().all(|f| f["kind"] != "pipe"),
        "sh holds no pipe"
    );

    let root = restore_ok(&img, &[]);
    assert_eq!(root.pid, shell.pid);
    let mut adopted: Vec<Proc> = kids.iter().map(|&k| Proc::adopt(k)).collect();
    let mut now = children(shell.pid);
    now.sort();
    let mut want = kids.clone();
    want.sort();
    assert_eq!(
        now, want,
        "the pipeline's processes are the shell's children again"
    );
    wait_lines(&log, n + 500);
    assert_consecutive(&log);
    drop(root);
    for a in &mut adopted {
        a.kill();
    }
}

/// Lines "P N" / "C N" of the shared log: each writer's numbers must be consecutive
/// from 0, and every line whole. Returns (P count, C count).
fn check_shared_log(log: &Path) -> (u64, u64) {
    let mut next = [0u64, 0u64];
    for (i, l) in log_lines(log).iter().enumerate() {
        let (who, n) = l
            .split_once(' ')
            .unwrap_or_else(|| panic!("line {i} {l:?} is damaged (overwritten?)"));
        let k = match who {
            "P" => 0,
            "C" => 1,
            _ => panic!("line {i} {l:?} is damaged (overwritten?)"),
        };
        assert_eq!(
            n.parse::<u64>().ok(),
            Some(next[k]),
            "line {i} {l:?}: {who} should write {} next (an overwrite or a lost write)",
            next[k]
        );
        next[k] += 1;
    }
    (next[0], next[1])
}

#[test]
fn two_processes_keep_sharing_one_file_offset_under_new_pids() {
    let dir = TestDir::new("ftree-offset");
    let prog = build_c("files_tree_offset.c", &[]);
    let log = dir.join("shared.log");
    let mut parent = Proc::spawn(&prog, &[&dir.s("")], &dir, "offset");
    let (pp, pc) = pids(&dir);
    wait_lines(&log, 100);

    let img = dir.join("img.spirit");
    dump(parent.pid, &img, &[]).ok("dump both writers");
    parent.reap();
    reap_orphan(pc);
    let (p0, c0) = check_shared_log(&log);
    assert!(p0 > 10 && c0 > 10, "both wrote before: {p0} {c0}");

    let v = show(&img);
    let (a, b) = (fd(&fds_of(&v, pp), 3), fd(&fds_of(&v, pc), 3));
    assert_eq!(a["kind"], "regular");
    assert_eq!(a["desc"], b["desc"], "one description: {a} {b}");
    assert_eq!(a["pos"], b["pos"]);

    // New pids: the plan works on the image's pids, whatever the live ones are.
    let root = restore_ok(&img, &["--new-pid"]);
    let kids = children(root.pid);
    assert_eq!(kids.len(), 1, "one child: {kids:?}");
    let mut child = Proc::adopt(kids[0]);
    wait_until("both writers carry on", TIMEOUT, || {
        let (p, c) = check_shared_log(&log);
        p > p0 + 200 && c > c0 + 200
    });
    check_shared_log(&log);
    drop(root);
    child.kill();
}
