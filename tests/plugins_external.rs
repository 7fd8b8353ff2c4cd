//! External plugins, end to end, through a toy plugin written in Python over GDBus
//! (`tests/plugins/toy_plugin.py`, none of spirit's code): it handles files under a
//! prefix, proving org.spirit.Plugin1 is language-neutral; made to die, hang or answer
//! garbage, it fails the checkpoint (the process runs on untouched) or the restore
//! (nothing is left behind) with a message naming it. And `spirit plugins`.

mod common;
mod plugins_common;

use common::*;
use plugins_common::*;
use std::fs;

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
