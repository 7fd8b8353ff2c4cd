//! The command line's machine-readable and diagnostic surface: each command's `--json`
//! object with its documented fields (README, "JSON output"), `--log-file` holding the
//! debug log of a failed and of a good dump, `-q`, the client subcommands' exit code
//! when spiritd cannot be reached, and a foreground restore's `--own-exit-code`.

mod common;

use common::*;
use serde_json::Value;

fn start_counter(dir: &TestDir, extra: &[&str]) -> Proc {
    let prog = build_c("counter.c", &[]);
    let mut args = vec![dir.s("log"), "10".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proc::spawn(&prog, &args, dir, "counter");
    wait_lines(&dir.join("log"), 5);
    p
}

fn parse(run: &Run, what: &str) -> Value {
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON object ({e}):\n{}",
            run.stdout
        )
    })
}

fn has_fields(v: &Value, fields: &[&str], what: &str) {
    for f in fields {
        assert!(v.get(f).is_some(), "{what}: JSON lacks `{f}`: {v}");
    }
}

#[test]
fn dump_and_detached_restore_print_their_json_objects() {
    init();
    let dir = TestDir::new("cli-json");
    let mut p = start_counter(&dir, &[]);
    let img = dir.join("img.spirit");
    let run = dump(p.pid, &img, &["--json"]);
    run.ok("dump --json");
    let d = parse(&run, "dump --json");
    has_fields(
        &d,
        &[
            "pid",
            "image",
            "processes",
            "threads",
            "vmas",
            "page_bytes",
            "image_bytes",
            "frozen_ms",
            "total_ms",
            "left_running",
        ],
        "dump",
    );
    assert_eq!(d["pid"], p.pid);
    assert_eq!(d["processes"], 1);
    assert_eq!(d["left_running"], false);
    assert_eq!(d["image"], img.to_string_lossy().as_ref());
    assert!(d["page_bytes"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(
        d["image_bytes"].as_u64().unwrap(),
        std::fs::metadata(&img).unwrap().len(),
        "image_bytes is the image's size"
    );
    p.reap();

    let img_s = img.to_string_lossy();
    let run = spirit(&["restore", &img_s, "--detach", "--json"]);
    run.ok("restore --detach --json");
    let r = parse(&run, "restore --detach --json");
    has_fields(
        &r,
        &[
            "pid",
            "processes",
            "threads",
            "page_bytes",
            "total_ms",
            "detached",
            "exit_code",
            "signal",
        ],
        "restore",
    );
    let pid = r["pid"].as_i64().unwrap() as i32;
    let _restored = Proc::adopt(pid);
    assert_eq!(pid, p.pid, "restored with its own pid");
    assert_eq!(r["detached"], true);
    assert!(r["exit_code"].is_null() && r["signal"].is_null(), "{r}");
    assert_eq!(r["page_bytes"], d["page_bytes"]);
    let n = log_lines(&dir.join("log")).len();
    wait_lines(&dir.join("log"), n + 5);

    // Restored again while it runs: refused (pid in use), the debug log in --log-file.
    let log = dir.join("restore.log");
    let run = spirit(&[
        "restore",
        &img_s,
        "--detach",
        "--allow-changed-files",
        "--log-file",
        &log.to_string_lossy(),
    ]);
    run.fails(10, &[&pid.to_string()], "restore onto a pid in use");
    let text = read_log(&log);
    for needle in [
        "DEBUG",
        "restore: header and processes read",
        "restore: image checked",
        "failed",
    ] {
        assert!(
            text.contains(needle),
            "restore log lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn json_to_standard_output_is_refused_with_an_image_there() {
    let run = spirit(&["dump", "1", "-o", "-", "--json"]);
    run.fails(2, &["--json"], "dump -o - --json");
}

#[test]
fn foreground_restore_exit_status_with_and_without_own_exit_code() {
    init();
    let dir = TestDir::new("cli-exit");
    let mut p = start_counter(&dir, &["exit-at=150"]);
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &[]).ok("dump");
    p.reap();
    let img_s = img.to_string_lossy();
    // With --own-exit-code: spirit says 0, the program's 42 is in the JSON and on stderr.
    let run = spirit(&["restore", &img_s, "--own-exit-code", "--json"]);
    run.ok("restore --own-exit-code");
    let r = parse(&run, "restore --own-exit-code --json");
    assert_eq!(r["exit_code"], 42, "{r}");
    assert!(r["signal"].is_null() && r["detached"] == false, "{r}");
    assert!(
        run.stderr.contains("exited with status 42"),
        "stderr: {}",
        run.stderr
    );
    // Without: the program's own status is spirit's.
    let run = spirit(&["restore", &img_s, "--allow-changed-files"]);
    assert_eq!(run.code, 42, "stderr: {}", run.stderr);
    assert!(!run.stderr.contains("spirit: error"), "{}", run.stderr);
    assert!(!run.stderr.contains("exited with status"), "{}", run.stderr);
    // spirit's own failure under --own-exit-code keeps its code (6: not an image).
    let bogus = dir.join("bogus");
    std::fs::write(&bogus, "not an image\n").unwrap();
    spirit(&["restore", &bogus.to_string_lossy(), "--own-exit-code"]).fails(6, &[], "bogus");
}

#[test]
fn log_file_holds_the_debug_log_of_a_failed_and_a_good_dump() {
    init();
    let dir = TestDir::new("cli-log");
    let p = start_counter(&dir, &["socket"]);
    let log = dir.join("dump.log");
    let log_s = log.to_string_lossy();
    let pid = p.pid.to_string();
    // Refused (packet socket): the error line alone on stderr, the debug log in the file.
    dump(p.pid, &dir.join("img"), &["--log-file", &log_s]).fails(
        5,
        &[&pid, "fd 4"],
        "refused dump",
    );
    let text = read_log(&log);
    for needle in [
        "DEBUG",
        "spirit starts",
        "dump: freezing the tree",
        "dump: tree frozen",
        "packet socket",
        "resuming the tree",
    ] {
        assert!(text.contains(needle), "log file lacks {needle:?}:\n{text}");
    }
    drop(p);
    // A good dump: every phase with its timing; -q leaves stderr empty.
    let mut q = start_counter(&dir, &[]);
    let run = dump(q.pid, &dir.join("img2"), &["--log-file", &log_s, "-q"]);
    run.ok("dump -q --log-file");
    assert!(run.stderr.trim().is_empty(), "-q printed: {}", run.stderr);
    let text = read_log(&log);
    for needle in [
        "dump: plugin",
        "dump: state collected",
        "dump: pages written",
        "dump: image committed",
        "dump: tree released",
        "frozen_ms=",
    ] {
        assert!(text.contains(needle), "log file lacks {needle:?}:\n{text}");
    }
    q.reap();
    // -vv: the debug log on stderr too.
    let run = spirit(&["-vv", "show", &dir.s("img2")]);
    run.ok("-vv show");
    assert!(run.stderr.contains("DEBUG"), "-vv stderr: {}", run.stderr);
}

#[test]
fn plugins_json_lists_the_built_in_plugins() {
    let run = spirit(&["plugins", "--json"]);
    run.ok("plugins --json");
    let v = parse(&run, "plugins --json");
    has_fields(&v, &["plugins", "directories", "problems"], "plugins");
    let names: Vec<&str> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for n in ["files", "sockets", "tty", "signals"] {
        assert!(names.contains(&n), "plugins lacks {n}: {names:?}");
    }
    for p in v["plugins"].as_array().unwrap() {
        has_fields(
            p,
            &["name", "version", "kind", "claims", "status"],
            "plugins[]",
        );
    }
}

#[test]
fn client_commands_exit_20_when_spiritd_is_unreachable() {
    let addr = format!("unix:path=/tmp/spirit-no-bus-{}", std::process::id());
    for args in [
        vec!["jobs", "--json"],
        vec!["peers", "--json"],
        vec!["migrate", "1", "--to", "nowhere", "--json"],
    ] {
        let mut a = args.clone();
        a.extend(["--bus", &addr]);
        spirit(&a).fails(20, &["cannot reach spiritd"], &a.join(" "));
    }
}
