//! External plugins, end to end: spirit-mqueue (the first one shipped, a workspace
//! binary) checkpoints and restores a POSIX message queue; a toy plugin written in
//! Python over GDBus, with none of spirit's code, handles files under a prefix, proving
//! org.spirit.Plugin1 is language-neutral; plugins that die, hang or answer garbage
//! fail the checkpoint (the process runs on untouched) or the restore (nothing is left
//! behind) with a message naming them. Plugins are found through a manifest directory
//! each test writes and names with SPIRIT_PLUGIN_PATH.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The spirit-mqueue binary beside the spirit under test (cargo builds it as a
/// workspace member; built here when only this test's package was).
fn mqueue_plugin() -> PathBuf {
    let dir = Path::new(SPIRIT).parent().expect("target dir");
    let bin = dir.join("spirit-mqueue");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "spirit-mqueue", "--manifest-path"])
        .arg(Path::new(ROOT).join("Cargo.toml"));
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    let st = cmd.status().expect("cargo build -p spirit-mqueue");
    assert!(st.success() && bin.exists(), "building spirit-mqueue");
    bin
}

/// Whether the distribution's Python GLib bindings are there for the toy plugin.
fn have_gdbus_python() -> bool {
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('Gio', '2.0'); from gi.repository import Gio",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// A test's plugin directory with the mqueue manifest (pointing at the built binary)
/// and the toy plugin's, claiming `dir/toy/`. Returns the environment for spirit.
struct Plugins {
    env: Vec<(String, String)>,
    toy_dir: PathBuf,
}

impl Plugins {
    fn new(dir: &TestDir) -> Plugins {
        let pdir = dir.join("plugins");
        let toy_dir = dir.join("toy");
        fs::create_dir_all(&pdir).unwrap();
        fs::create_dir_all(&toy_dir).unwrap();
        let mq = fs::read_to_string(Path::new(ROOT).join("plugins/mqueue/mqueue.toml")).unwrap();
        let mq = mq.replace(
            "exec = \"spirit-mqueue\"",
            &format!("exec = \"{}\"", mqueue_plugin().display()),
        );
        fs::write(pdir.join("mqueue.toml"), mq).unwrap();
        let prefix = format!("{}/", toy_dir.display());
        fs::write(
            pdir.join("toy.toml"),
            format!(
                "name = \"toy\"\nversion = 1\nexec = \"{ROOT}/tests/plugins/toy_plugin.py\"\ndescription = \"files under a prefix (test)\"\n[claims]\npath_prefix = [\"{prefix}\"]\n"
            ),
        )
        .unwrap();
        Plugins {
            env: vec![
                ("SPIRIT_PLUGIN_PATH".into(), pdir.display().to_string()),
                ("TOY_PREFIX".into(), prefix),
                (
                    "TOY_XML".into(),
                    format!("{ROOT}/busd/org.spirit.Plugin1.xml"),
                ),
            ],
            toy_dir,
        }
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        spirit_env(args, &env)
    }

    fn dump(&self, pid: i32, img: &Path, extra: &[(&str, &str)]) -> Run {
        self.run(
            &["dump", &pid.to_string(), "-o", &img.to_string_lossy()],
            extra,
        )
    }

    fn restore(&self, img: &Path, extra: &[(&str, &str)]) -> (Run, Option<Proc>) {
        let run = self.run(&["restore", &img.to_string_lossy(), "--detach"], extra);
        let pid = (run.code == 0)
            .then(|| run.stdout.split_whitespace().find_map(|w| w.parse().ok()))
            .flatten();
        (run, pid.map(Proc::adopt))
    }
}

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

/// Processes (other than us) whose environment holds `marker` (a test's unique plugin
/// directory): the plugins and helpers a spirit started for this test.
fn procs_with_env(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me && pid_alive(p))
        .filter(|p| {
            fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|e| String::from_utf8_lossy(&e).contains(marker))
        })
        .collect()
}

fn queue_name(tag: &str) -> String {
    format!("/spirit-test-{}-{tag}", std::process::id())
}

/// Removes a named queue when the test ends, also on failure.
struct QueueGuard(String);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let _ = nix::mqueue::mq_unlink(self.0.as_str());
    }
}

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
fn a_python_plugin_restores_a_toy_descriptor() {
    if !have_gdbus_python() {
        println!("SKIPPED: /usr/bin/python3 has no GLib bindings (apt-get install python3-gi)");
        return;
    }
    let dir = TestDir::new("ext-toy");
    let plugins = Plugins::new(&dir);
    let data = plugins.toy_dir.join("data");
    fs::write(&data, "0123456789abcdef").unwrap();
    let prog = build_c("toy_holder.c", &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, &[&data.to_string_lossy()], &dir, "prog");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    plugins.dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let shown = plugins.run(&["show", "--json", &img.to_string_lossy()], &[]);
    shown.ok("show");
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let toy = &v["processes"][0]["sections"]["toy"]["content"]["fds"][0];
    assert_eq!(toy["fd"], 3, "{v}");
    assert_eq!(toy["content"]["offset"], 4, "{toy}");
    assert_eq!(toy["content"]["size"], 16, "{toy}");
    // The files plugin did not take it: the toy plugin's claim came first.
    let files = &v["processes"][0]["sections"]["files"]["content"].to_string();
    assert!(!files.contains("toy/data"), "{files}");

    let (run, restored) = plugins.restore(&img, &[]);
    run.ok("restore");
    let _r = restored.unwrap();
    fs::write(dir.join("go"), "").unwrap();
    let lines = report(&out);
    assert!(
        lines.contains(&"rest 456789abcdef".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"cloexec=0".to_string()), "{lines:?}");
}

#[test]
fn a_plugin_that_dies_hangs_or_answers_garbage_fails_the_dump_cleanly() {
    if !have_gdbus_python() {
        println!("SKIPPED: /usr/bin/python3 has no GLib bindings (apt-get install python3-gi)");
        return;
    }
    let dir = TestDir::new("ext-toyfail");
    let plugins = Plugins::new(&dir);
    let data = plugins.toy_dir.join("data");
    fs::write(&data, "0123456789abcdef").unwrap();
    let prog = build_c("toy_holder.c", &[]);
    let out = dir.join("prog.out");
    let orig = Proc::spawn(&prog, &[&data.to_string_lossy()], &dir, "prog");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    for (mode, says) in [
        ("exit_dump", "connection lost"),
        ("hang_dump", "no answer to Dump within 1500 ms"),
        ("bad_dump", "malformed answer to Dump"),
    ] {
        let t0 = std::time::Instant::now();
        let run = plugins.dump(
            orig.pid,
            &img,
            &[("TOY_MODE", mode), ("SPIRIT_PLUGIN_TIMEOUT_MS", "1500")],
        );
        run.fails(1, &["external plugin 'toy'", "fd 3", says], mode);
        assert!(t0.elapsed() < TIMEOUT, "{mode}: took {:?}", t0.elapsed());
        assert!(!img.exists(), "{mode}: an image was left");
        assert!(orig.alive(), "{mode}: the process did not survive");
        assert!(
            procs_with_env(&plugins.env[0].1).is_empty(),
            "{mode}: a plugin was left"
        );
    }
    // Untouched: it goes on reading from where it was.
    fs::write(dir.join("go"), "").unwrap();
    let lines = report(&out);
    assert!(
        lines.contains(&"rest 456789abcdef".to_string()),
        "{lines:?}"
    );
}

#[test]
fn a_plugin_that_dies_hangs_or_answers_garbage_fails_the_restore_leaving_nothing() {
    if !have_gdbus_python() {
        println!("SKIPPED: /usr/bin/python3 has no GLib bindings (apt-get install python3-gi)");
        return;
    }
    let dir = TestDir::new("ext-toyrfail");
    let plugins = Plugins::new(&dir);
    let data = plugins.toy_dir.join("data");
    fs::write(&data, "0123456789abcdef").unwrap();
    let prog = build_c("toy_holder.c", &[]);
    let out = dir.join("prog.out");
    let mut orig = Proc::spawn(&prog, &[&data.to_string_lossy()], &dir, "prog");
    wait_for_line(&out, "ready");
    let img = dir.join("img.spirit");
    plugins.dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    for (mode, says) in [
        ("exit_restore", "connection lost"),
        ("bad_restore", "another kind"),
        ("hang_restore", "no answer to Restore within 1500 ms"),
    ] {
        let env = [("TOY_MODE", mode), ("SPIRIT_PLUGIN_TIMEOUT_MS", "1500")];
        let (run, p) = plugins.restore(&img, &env);
        assert!(p.is_none(), "{mode}: restore succeeded");
        run.fails(1, &["external plugin 'toy'", "fd 3", says], mode);
        assert!(
            !pid_exists(orig.pid),
            "{mode}: the restore left pid {}",
            orig.pid
        );
        assert!(
            procs_in(dir.path()).is_empty(),
            "{mode}: the restore left a process"
        );
        assert!(
            procs_with_env(&plugins.env[0].1).is_empty(),
            "{mode}: a plugin was left"
        );
    }
}

#[test]
fn spirit_plugins_lists_built_in_and_external_plugins() {
    let dir = TestDir::new("ext-list");
    let plugins = Plugins::new(&dir);
    fs::write(
        dir.join("plugins/broken.toml"),
        "name = \"Broken!\"\nversion = 1\nexec = \"x\"\n",
    )
    .unwrap();
    let run = plugins.run(&["plugins", "--json"], &[]);
    run.ok("spirit plugins --json");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let by_name = |n: &str| {
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no plugin {n} in {v}"))
    };
    assert_eq!(by_name("files")["kind"], "built-in");
    let mq = by_name("mqueue");
    assert_eq!(
        (mq["kind"].as_str(), mq["status"].as_str()),
        (Some("external"), Some("ok")),
        "{mq}"
    );
    assert_eq!(mq["claims"], "fs_magic 0x19800202", "{mq}");
    assert!(v["problems"].to_string().contains("broken.toml"), "{v}");
    let text = plugins.run(&["plugins"], &[]);
    assert!(
        text.stdout.contains("mqueue v1 (external)"),
        "{}",
        text.stdout
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

/// Whether a message queue of that name exists on the host.
fn queue_exists(name: &str) -> bool {
    use nix::mqueue::{mq_close, mq_open, MQ_OFlag};
    use nix::sys::stat::Mode;
    match mq_open(name, MQ_OFlag::O_RDONLY, Mode::empty(), None) {
        Ok(q) => {
            let _ = mq_close(q);
            true
        }
        Err(_) => false,
    }
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
