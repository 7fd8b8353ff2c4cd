//! spirit-mqueue, the first external plugin shipped, end to end: POSIX message queues
//! (unlinked or named, shared across fork, with attributes, flags and queued messages)
//! are checkpointed and restored; what it cannot restore is refused; a failed restore
//! leaves no queue behind.

mod common;
mod plugins_common;

use common::*;
use plugins_common::*;
use std::fs;
use std::io::Write;

#[test]
fn unlinked_mqueue_comes_back_with_its_messages_in_priority_order() {
    let dir = TestDir::new("ext-mqueue");
    let plugins = Plugins::new(&dir);
    let name = queue_name("unlinked");
    let _g = QueueGuard(name.clone());
    let prog = build_c("mqueue_holder.c", &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, &[&name, "unlinked"], &dir, "prog");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    plugins.dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();

    // spirit show renders the section through the plugin.
    let shown = plugins.run(&["show", "--json", &img.to_string_lossy()], &[]);
    shown.ok("show");
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).expect("show --json");
    let sec = &v["processes"][0]["sections"]["mqueue"];
    assert_eq!(sec["version"], 1, "{sec}");
    let fd = &sec["content"]["fds"][0];
    assert_eq!(fd["fd"], 3, "{sec}");
    let q = &fd["content"];
    assert_eq!(q["name"], name.as_str(), "{q}");
    assert_eq!(q["unlinked"], true, "{q}");
    assert_eq!(
        (q["maxmsg"].clone(), q["msgsize"].clone()),
        (7.into(), 64.into()),
        "{q}"
    );
    assert_eq!(q["nonblock"], true, "{q}");
    let prios: Vec<u64> = q["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["priority"].as_u64().unwrap())
        .collect();
    assert_eq!(prios, [9, 5, 1], "{q}");
    insta::assert_json_snapshot!("mqueue_section", sec, {
        ".content.fds[].target" => "[name] (deleted)",
        ".content.fds[].content.name" => "[name]",
        ".content.fds[].content.uid" => "[uid]",
        ".content.fds[].content.gid" => "[gid]",
    });
    let text = plugins.run(&["show", &img.to_string_lossy()], &[]);
    assert!(text.stdout.contains("[mqueue v1]"), "{}", text.stdout);

    let (run, restored) = plugins.restore(&img, &[]);
    run.ok("restore");
    let _restored = restored.expect("restored process");
    fs::write(dir.join("go"), "").unwrap();
    let lines = report(&out);
    let after: Vec<&str> = lines
        .iter()
        .skip_while(|l| *l != "ready")
        .skip(1)
        .map(String::as_str)
        .collect();
    assert_eq!(
        after,
        [
            "attr maxmsg=7 msgsize=64 curmsgs=3 nonblock=1",
            "cloexec=1",
            &format!("link {name} (deleted)"),
            "msg prio=9 high!",
            "msg prio=5 middle",
            "msg prio=1 low",
            "then EAGAIN",
            "done",
        ]
    );
    assert!(
        procs_with_env(&plugins.env[0].1).is_empty(),
        "a plugin process was left"
    );
}

#[test]
fn mqueue_with_a_notification_is_refused_and_left_running() {
    let dir = TestDir::new("ext-mqnotify");
    let plugins = Plugins::new(&dir);
    let name = queue_name("notify");
    let _g = QueueGuard(name.clone());
    let prog = build_c("mqueue_holder.c", &[]);
    let out = dir.join("prog.out");
    let _orig = Proc::spawn(&prog, &[&name, "notify"], &dir, "prog");
    wait_for_line(&out, "ready");
    let run = plugins.dump(_orig.pid, &dir.join("img.spirit"), &[]);
    run.fails(
        1,
        &["'mqueue'", "mq_notify", "fd 3"],
        "dump of a queue with mq_notify",
    );
    assert!(!dir.join("img.spirit").exists());
    fs::write(dir.join("go"), "").unwrap();
    let lines = report(&out);
    assert!(lines.contains(&"msg prio=9 high!".to_string()), "{lines:?}");
    assert!(lines.contains(&"then EAGAIN".to_string()), "{lines:?}");
}

#[test]
fn a_named_queue_that_still_exists_is_refused_at_restore() {
    let dir = TestDir::new("ext-mqnamed");
    let plugins = Plugins::new(&dir);
    let name = queue_name("named");
    let _g = QueueGuard(name.clone());
    let prog = build_c("mqueue_holder.c", &[]);
    let out = dir.join("prog.out");
    let orig = Proc::spawn(&prog, &[&name, "named"], &dir, "prog");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    plugins
        .run(
            &[
                "dump",
                &orig.pid.to_string(),
                "-o",
                &img.to_string_lossy(),
                "--leave-running",
            ],
            &[],
        )
        .ok("dump --leave-running");
    let (run, p) = plugins.restore(&img, &[]);
    assert!(p.is_none(), "restored over the running original");
    run.fails(
        1,
        &["'mqueue'", "already exists", &name],
        "restore of a queue whose name is taken",
    );
    assert_eq!(
        procs_in(dir.path()),
        vec![orig.pid],
        "the failed restore left a process"
    );
}

#[test]
fn one_queue_shared_by_a_parent_and_its_child_stays_one_queue() {
    let dir = TestDir::new("ext-mqtree");
    let plugins = Plugins::new(&dir);
    let name = queue_name("tree");
    let _g = QueueGuard(name.clone());
    let prog = build_c("mqueue_tree.c", &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, &[&name], &dir, "prog");
    wait_for_line(&out, "child ready");
    wait_for_line(&out, "ready");
    let kids = fs::read_to_string(format!("/proc/{0}/task/{0}/children", orig.pid)).unwrap();
    let kid: i32 = kids.trim().parse().expect("one child");
    let img = dir.join("img.spirit");
    plugins.dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    // Re-parented to this test (the subreaper) when the dump ended the tree.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(kid), None);
    let shown = plugins.run(&["show", "--json", &img.to_string_lossy()], &[]);
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    // Dumped once: fd 4 is another description of fd 3's queue; the child's fds are
    // fd 3 and fd 4 of the parent.
    let parent = &v["processes"][0]["sections"]["mqueue"]["content"]["fds"];
    assert_eq!(parent[0]["content"]["curmsgs"], 2, "{parent}");
    assert_eq!(parent[1]["content"]["same_description"], false, "{parent}");
    let child = &v["processes"][1]["sections"]["mqueue"]["content"]["fds"];
    assert_eq!(child[0]["content"]["same_description"], true, "{child}");
    let (run, restored) = plugins.restore(&img, &[]);
    run.ok("restore");
    let _r = restored.unwrap();
    fs::write(dir.join("go"), "").unwrap();
    let lines = report(&out);
    let after: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("fd4 curmsgs"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        after,
        [
            "fd4 curmsgs=3 nonblock=0",
            "fd3 nonblock=1",
            "fd4 send EBADF",
            "msg prio=9 b",
            "msg prio=5 from child",
            "msg prio=1 a",
            "done",
        ],
        "{lines:?}"
    );
}

#[test]
fn a_named_queue_made_for_a_failed_restore_is_removed_and_the_next_restore_works() {
    let dir = TestDir::new("ext-mqdiscard");
    let plugins = Plugins::new(&dir);
    let name = queue_name("discard");
    let _g = QueueGuard(name.clone());
    let prog = build_c("mqueue_holder.c", &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, &[&name, "named"], &dir, "prog");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    plugins.dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    // The queue ended with the process... but its name stays: remove it, as if the
    // image were restored on another host.
    assert!(queue_exists(&name));
    nix::mqueue::mq_unlink(name.as_str()).unwrap();
    // A restore that fails after the plugin made the queue (the program's output file
    // changed since the checkpoint: refused by the files plugin's check).
    fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .unwrap()
        .write_all(b"changed\n")
        .unwrap();
    let (run, p) = plugins.restore(&img, &[]);
    assert!(p.is_none(), "restore succeeded");
    run.fails(11, &["changed"], "restore with a changed file");
    assert!(
        !queue_exists(&name),
        "the failed restore left the queue {name}"
    );
    assert!(!pid_exists(orig.pid));
    // Accepting the change, it comes back under its name with its messages.
    let run = plugins.run(
        &[
            "restore",
            &img.to_string_lossy(),
            "--detach",
            "--allow-changed-files",
        ],
        &[],
    );
    run.ok("restore --allow-changed-files");
    let pid: i32 = run.stdout.trim().parse().expect("restored pid");
    let _r = Proc::adopt(pid);
    assert!(queue_exists(&name), "the restored queue has its name");
    fs::write(dir.join("go"), "").unwrap();
    let lines = report(&out);
    assert!(lines.contains(&format!("link {name}")), "{lines:?}");
    assert!(lines.contains(&"msg prio=9 high!".to_string()), "{lines:?}");
    assert!(lines.contains(&"msg prio=1 low".to_string()), "{lines:?}");
}
