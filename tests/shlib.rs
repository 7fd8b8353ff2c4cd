//! Files the tree needs, by identity: a dynamically linked program whose shared library
//! (built by the test into its own directory, found through the program's rpath) is
//! recorded with its BLAKE3 content hash and ELF build-id, listed by `spirit show`,
//! hashed once and then taken from the hash cache, and checked at restore by content.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const LIB: &str = "libsptest.so";

/// Build `dir/libsptest.so` whose `sptest_version()` returns `version`.
fn build_lib(dir: &Path, version: &str) -> PathBuf {
    let src = dir.join("sptest.c");
    std::fs::write(
        &src,
        format!("const char *sptest_version(void) {{ return \"{version}\"; }}\n"),
    )
    .unwrap();
    let out = dir.join(LIB);
    let tmp = dir.join("libsptest.so.new");
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-Wl,--build-id", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(st.success(), "gcc -shared failed");
    // A new file (a new inode), as a package upgrade would install it.
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// The library (version "v1") and the program linked against it, both in `dir`.
fn program(dir: &TestDir) -> (PathBuf, PathBuf) {
    let lib = build_lib(dir.path(), "v1");
    let d = dir.path().to_string_lossy();
    let prog = build_c(
        "shlib_user.c",
        &[&format!("-L{d}"), "-lsptest", &format!("-Wl,-rpath,{d}")],
    );
    (prog, lib)
}

fn lines_with(log: &Path, version: &str) -> usize {
    log_lines(log)
        .iter()
        .filter(|l| l.ends_with(&format!(" {version}")))
        .count()
}

/// `spirit show IMG --json`, its record of `path` in the first process's files.
fn shown_file(img: &Path, path: &Path) -> Value {
    let run = spirit(&["show", &img.to_string_lossy(), "--json"]);
    run.ok("show --json");
    let v: Value = serde_json::from_str(&run.stdout).expect("show --json is JSON");
    let files = v["processes"][0]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    files
        .into_iter()
        .find(|f| f["path"].as_str() == Some(&*path.to_string_lossy()))
        .unwrap_or_else(|| panic!("show lists no {}: {}", path.display(), run.stdout))
}

/// The library is recorded with its real hash and build-id (and so is the executable);
/// a library changed since the checkpoint is refused naming it and both hashes; the
/// unchanged one restores and the program calls into it again.
#[test]
fn library_identity_is_recorded_and_checked_by_content() {
    let dir = TestDir::new("shlib-id");
    let (prog, lib) = program(&dir);
    let log = dir.join("log");
    let mut p = Proc::spawn(&prog, &[&dir.s("log")], &dir, "shlib_user");
    wait_lines(&log, 3);
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &[]).ok("dump");
    p.reap();

    let f = shown_file(&img, &lib);
    let hash = blake3_hex(&std::fs::read(&lib).unwrap());
    assert_eq!(f["hash"].as_str(), Some(hash.as_str()), "{f}");
    let bid = f["build_id"].as_str().unwrap_or_default().to_string();
    assert!(
        bid.len() >= 16 && readelf_notes(&lib).contains(&bid),
        "build-id {bid:?} not in readelf -n: {f}"
    );
    let text = spirit(&["show", &img.to_string_lossy()]);
    text.ok("show");
    assert!(
        text.stdout
            .contains(&format!("build-id {bid} blake3 {hash}")),
        "{}",
        text.stdout
    );
    let exe = shown_file(&img, &prog);
    let exe_hash = blake3_hex(&std::fs::read(&prog).unwrap());
    assert_eq!(exe["hash"].as_str(), Some(exe_hash.as_str()), "{exe}");

    // Touched but the same content: still the same file.
    let now = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&lib)
        .unwrap()
        .set_modified(now)
        .unwrap();
    let before = log_lines(&log).len();
    let r = restore_ok(&img, &[]);
    wait_lines(&log, before + 3);
    assert!(lines_with(&log, "v1") >= before + 3, "{}", read_log(&log));
    drop(r);

    // Other content: refused, naming the library and both hashes.
    build_lib(dir.path(), "v2");
    let new_hash = blake3_hex(&std::fs::read(&lib).unwrap());
    let (run, r) = restore(&img, &[]);
    assert!(r.is_none());
    run.fails(
        11,
        &[&lib.to_string_lossy(), &hash, &new_hash, "content differs"],
        "restore with a changed library",
    );
}

/// A second dump of the same program takes the library's hash from the cache instead
/// of reading the library: a cache entry changed between the dumps shows up in the
/// second image.
#[test]
fn second_dump_takes_hashes_from_the_cache() {
    let dir = TestDir::new("shlib-cache");
    let (prog, lib) = program(&dir);
    let log = dir.join("log");
    let mut p = Proc::spawn(&prog, &[&dir.s("log")], &dir, "shlib_user");
    wait_lines(&log, 2);
    let cache_home = dir.s("cache");
    let env = [("XDG_CACHE_HOME", cache_home.as_str())];
    let pid = p.pid.to_string();
    let img1 = dir.s("one.spirit");
    spirit_env(&["dump", &pid, "-o", &img1, "--leave-running"], &env).ok("first dump");

    let cache = dir.join("cache/spirit/file-hashes");
    let text = std::fs::read_to_string(&cache).expect("the first dump wrote the hash cache");
    let real = blake3_hex(&std::fs::read(&lib).unwrap());
    let entries = text.lines().filter(|l| l.ends_with(&real)).count();
    assert_eq!(entries, 1, "the library's hash once in the cache:\n{text}");
    // Mark the library's entry: only a dump that uses the cache records the mark.
    let mark = "ab".repeat(32);
    std::fs::write(&cache, text.replace(&real, &mark)).unwrap();

    let img2 = dir.s("two.spirit");
    spirit_env(&["dump", &pid, "-o", &img2, "--leave-running"], &env).ok("second dump");
    let f = shown_file(Path::new(&img2), &lib);
    assert_eq!(f["hash"].as_str(), Some(mark.as_str()), "{f}");
    let f1 = shown_file(Path::new(&img1), &lib);
    assert_eq!(f1["hash"].as_str(), Some(real.as_str()), "{f1}");
    drop(prog);
    p.kill();
}

/// `spirit restore IMG --detach` with the content store in `dir/state`.
fn restore_with_store(dir: &TestDir, img: &Path, extra: &[&str]) -> (Run, Option<Proc>) {
    let state = dir.s("state");
    let pidfile = img.with_extension("pid");
    let _ = std::fs::remove_file(&pidfile);
    let (img, pf) = (img.to_string_lossy(), pidfile.to_string_lossy());
    let mut args = vec!["restore", &img, "--detach", "--pidfile", &pf];
    args.extend_from_slice(extra);
    let run = spirit_env(&args, &[("XDG_STATE_HOME", &state)]);
    if run.code != 0 {
        return (run, None);
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid in the pid file");
    (run, Some(Proc::adopt(pid)))
}

/// With `--embed-files` the library's content travels in the image (once, compressed):
/// after the library is replaced by another version, and again after it is deleted,
/// the restored program calls into its original version; without it the restore of a
/// deleted library is refused naming it.
#[test]
fn embedded_library_replaces_a_changed_or_missing_one() {
    let dir = TestDir::new("shlib-embed");
    let (prog, lib) = program(&dir);
    let log = dir.join("log");
    let mut p = Proc::spawn(&prog, &[&dir.s("log")], &dir, "shlib_user");
    wait_lines(&log, 3);
    let plain = dir.join("plain.spirit");
    dump(p.pid, &plain, &["--leave-running"]).ok("dump without --embed-files");
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &["--embed-files"]).ok("dump --embed-files");
    p.reap();

    let hash = blake3_hex(&std::fs::read(&lib).unwrap());
    let run = spirit(&["show", &img.to_string_lossy(), "--json"]);
    run.ok("show --json");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let emb = v["processes"][0]["embedded"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of_lib: Vec<&Value> = emb.iter().filter(|e| e["hash"] == hash.as_str()).collect();
    assert_eq!(of_lib.len(), 1, "the library's content once: {emb:?}");
    assert!(of_lib[0]["compressed"].as_u64() < of_lib[0]["size"].as_u64());

    // Another version at the library's path: the restored program keeps its own.
    build_lib(dir.path(), "v2");
    let before = log_lines(&log).len();
    let (run, r) = restore_with_store(&dir, &img, &[]);
    run.ok("restore with a changed library");
    let mut r = r.unwrap();
    wait_lines(&log, before + 3);
    let lines = log_lines(&log);
    assert!(
        lines[before..].iter().all(|l| l.ends_with(" v1")),
        "after restore: {:?}",
        &lines[before..]
    );
    let copy = dir.join("state/spirit/files").join(&hash);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", r.pid)).unwrap();
    assert!(maps.contains(&*copy.to_string_lossy()), "{maps}");
    assert_eq!(blake3_hex(&std::fs::read(&copy).unwrap()), hash);
    r.kill();

    // No library at all: the same copy serves again. (The log the program appends to
    // grew since the checkpoint: accepted; a missing library never is.)
    std::fs::remove_file(&lib).unwrap();
    let before = log_lines(&log).len();
    let (run, r) = restore_with_store(&dir, &img, &["--allow-changed-files"]);
    run.ok("restore with the library deleted");
    let mut r = r.unwrap();
    wait_lines(&log, before + 3);
    assert!(log_lines(&log)[before..].iter().all(|l| l.ends_with(" v1")));
    r.kill();

    // Without the content in the image: refused, naming the library.
    let (run, r) = restore_with_store(&dir, &plain, &["--allow-changed-files"]);
    assert!(r.is_none());
    run.fails(
        11,
        &[&lib.to_string_lossy(), "missing", "--embed-files"],
        "restore of a deleted library without its content",
    );
}

/// `spirit manifest` prints the hashes this "target" has; a dump with
/// `--embed-files=missing-from:MANIFEST` carries only what it lacks (here the
/// executable, not the library); the executable deleted after the checkpoint, the
/// restored process runs from the image's copy (its exe link and mapping name it).
#[test]
fn manifest_selects_what_is_embedded_and_a_missing_executable_comes_from_the_image() {
    let dir = TestDir::new("shlib-manifest");
    let (built, lib) = program(&dir);
    let prog = copy_prog(&built, dir.path(), "user");
    let log = dir.join("log");
    let mut p = Proc::spawn(&prog, &[&dir.s("log")], &dir, "shlib_user");
    wait_lines(&log, 3);

    let m = spirit(&["manifest", &lib.to_string_lossy()]);
    m.ok("manifest");
    let lib_hash = blake3_hex(&std::fs::read(&lib).unwrap());
    assert_eq!(m.stdout, format!("{lib_hash} {}\n", lib.display()));
    let manifest = dir.join("manifest");
    std::fs::write(&manifest, &m.stdout).unwrap();
    let bad = spirit(&["manifest", &dir.s("nothing-here")]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);

    let img = dir.join("img.spirit");
    let opt = format!("--embed-files=missing-from:{}", manifest.display());
    dump(p.pid, &img, &[&opt]).ok("dump --embed-files=missing-from");
    p.reap();
    let exe_hash = blake3_hex(&std::fs::read(&prog).unwrap());
    let run = spirit(&["show", &img.to_string_lossy(), "--json"]);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let hashes: Vec<&str> = v["processes"][0]["embedded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["hash"].as_str())
        .collect();
    assert!(hashes.contains(&exe_hash.as_str()), "{hashes:?}");
    assert!(!hashes.contains(&lib_hash.as_str()), "{hashes:?}");

    std::fs::remove_file(&prog).unwrap();
    let before = log_lines(&log).len();
    let (run, r) = restore_with_store(&dir, &img, &[]);
    run.ok("restore with the executable deleted");
    let mut r = r.unwrap();
    wait_lines(&log, before + 3);
    let copy = dir.join("state/spirit/files").join(&exe_hash);
    let exe = std::fs::read_link(format!("/proc/{}/exe", r.pid)).unwrap();
    assert_eq!(exe, copy);
    r.kill();
}
