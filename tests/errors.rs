//! Every error a user can cause: its exit code (README), a one-line message, and
//! nothing damaged — a failed dump leaves the process running on as before, a failed
//! restore leaves no process behind.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NO_SUCH_PROCESS: i32 = 3;
const NOT_PERMITTED: i32 = 4;
const UNSUPPORTED_FD: i32 = 5;
const CORRUPT: i32 = 6;
const TRUNCATED: i32 = 7;
const VERSION: i32 = 8;
const CPU: i32 = 9;
const PID_IN_USE: i32 = 10;
const FILE_MISSING: i32 = 11;

fn start_counter(dir: &TestDir, extra: &[&str]) -> Proc {
    let prog = build_c("counter.c", &[]);
    let mut args = vec![dir.s("log"), "10".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proc::spawn(&prog, &args, dir, "counter");
    wait_lines(&dir.join("log"), 5);
    p
}

/// After a failed dump: the process runs on exactly as before — not traced, not
/// stopped, its log growing without a gap.
fn assert_runs_on(p: &Proc, log: &Path, what: &str) {
    assert!(p.alive(), "{what}: the process is gone");
    let status = fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap();
    let get = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    assert_eq!(get("TracerPid:"), "0", "{what}: still traced");
    let n = log_lines(log).len();
    wait_lines(log, n + 10);
    let state = get("State:");
    assert!(
        !state.starts_with('t') && !state.starts_with('T'),
        "{what}: the process is left stopped ({state})"
    );
    assert_consecutive(log);
}

/// After a failed restore: no process came to life — nothing runs in the test dir, the
/// original pid is free, the log does not grow.
fn assert_nothing_restored(dir: &TestDir, orig_pid: i32, what: &str) {
    assert_eq!(
        procs_in(dir.path()),
        Vec::<i32>::new(),
        "{what}: a process was left behind"
    );
    assert!(
        !pid_exists(orig_pid),
        "{what}: pid {orig_pid} exists after a failed restore"
    );
}

/// A counter, checkpointed and ended (and reaped): its image and pid.
fn dead_counter_image(dir: &TestDir) -> (PathBuf, i32) {
    let mut p = start_counter(dir, &[]);
    let img = dir.join("img.spirit");
    dump(p.pid, &img, &[]).ok("dump");
    p.reap();
    (img, p.pid)
}

#[test]
fn dump_of_a_missing_pid() {
    let dir = TestDir::new("nopid");
    let mut gone = Proc::spawn(Path::new("true"), &[], &dir, "true");
    gone.reap();
    assert!(!pid_exists(gone.pid));
    let pid = gone.pid.to_string();
    dump(gone.pid, &dir.join("img"), &[]).fails(NO_SUCH_PROCESS, &[&pid], "dump of a dead pid");
    assert!(
        !dir.join("img").exists(),
        "a failed dump left an image file"
    );
}

#[test]
fn nobody_may_not_dump_a_root_process() {
    let dir = TestDir::new("perm");
    dir.open_to_all();
    let log = dir.join("log");
    let p = start_counter(&dir, &[]);
    let img = dir.s("img");
    let pid = p.pid.to_string();
    let run = spirit_as_nobody(&["dump", &pid, "-o", &img]);
    run.fails(NOT_PERMITTED, &[&pid], "nobody dumps root's process");
    assert!(
        run.error_line().len() > 40,
        "the message should say why: {}",
        run.error_line()
    );
    assert_runs_on(&p, &log, "refused dump");
}

#[test]
fn nobody_dumps_its_own_process() {
    let dir = TestDir::new("own");
    dir.open_to_all();
    let log = dir.join("log");
    let prog = build_c("counter.c", &[]);
    let mut p = Proc::spawn_as_nobody(&prog, &[&dir.s("log"), "10"], &dir, "counter");
    wait_lines(&log, 5);
    let img = dir.s("img");
    let pid = p.pid.to_string();
    spirit_as_nobody(&["dump", &pid, "-o", &img]).ok("nobody dumps its own process");
    p.reap();
    let n = assert_consecutive(&log);
    let restored = restore_ok(Path::new(&img), &[]);
    assert_eq!(restored.pid, p.pid);
    wait_lines(&log, n + 10);
    assert_consecutive(&log);
    let status = fs::read_to_string(format!("/proc/{}/status", restored.pid)).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "a process of nobody, restored by root, must still run as nobody"
    );
}

#[test]
fn dump_refuses_a_pipe_and_leaves_the_process_alone() {
    let dir = TestDir::new("pipefd");
    let log = dir.join("log");
    let mut p = start_counter(&dir, &["pipe"]);
    let img = dir.join("img");
    let pid = p.pid.to_string();
    // A pipe whose both ends the process holds is checkpointed (tests/files_*.rs); with
    // one end left out, the other is a pipe to outside the process: refused.
    dump(p.pid, &img, &["--skip-fd", "4"]).fails(
        UNSUPPORTED_FD,
        &[&pid, "fd 5", "pipe"],
        "skip one",
    );
    assert_runs_on(&p, &log, "dump refused for the other end");
    // Skipping both, the dump goes through and the process comes back.
    dump(p.pid, &img, &["--skip-fd", "4", "--skip-fd", "5"]).ok("dump --skip-fd 4 --skip-fd 5");
    p.reap();
    let n = assert_consecutive(&log);
    let r = restore_ok(&img, &[]);
    wait_lines(&log, n + 10);
    assert_consecutive(&log);
    let fds = fd_listing(r.pid);
    assert!(
        !fds.contains("pipe:"),
        "skipped fds came back as pipes:\n{fds}"
    );
}

#[test]
fn dump_refuses_a_socket_and_leaves_the_process_alone() {
    let dir = TestDir::new("sockfd");
    let log = dir.join("log");
    let p = start_counter(&dir, &["socket"]);
    let pid = p.pid.to_string();
    dump(p.pid, &dir.join("img"), &[]).fails(
        UNSUPPORTED_FD,
        &[&pid, "fd 4", "packet socket"],
        "dump with a packet socket",
    );
    assert_runs_on(&p, &log, "dump refused for a socket");
}

#[test]
fn restore_onto_a_pid_in_use() {
    let dir = TestDir::new("inuse");
    let log = dir.join("log");
    let p = start_counter(&dir, &[]);
    let img = dir.join("img");
    dump(p.pid, &img, &["--leave-running"]).ok("dump --leave-running");
    let pid = p.pid.to_string();
    // The original ran on and grew its log since the checkpoint: accept that, so what
    // is refused is the pid.
    let (run, restored) = restore(&img, &["--allow-changed-files"]);
    drop(restored);
    run.fails(PID_IN_USE, &[&pid], "restore onto a running original");
    assert_eq!(procs_in(dir.path()), vec![p.pid], "only the original runs");
    assert_runs_on(&p, &log, "after the refused restore");
}

#[test]
fn restore_with_the_executable_missing() {
    let dir = TestDir::new("noexe");
    let log = dir.join("log");
    let prog = copy_prog(&build_c("counter.c", &[]), dir.path(), "mycounter");
    let mut p = Proc::spawn(&prog, &[&dir.s("log"), "10"], &dir, "counter");
    wait_lines(&log, 5);
    let img = dir.join("img");
    dump(p.pid, &img, &[]).ok("dump");
    p.reap();
    fs::remove_file(&prog).unwrap();
    let (run, _r) = restore(&img, &[]);
    run.fails(
        FILE_MISSING,
        &[&prog.to_string_lossy()],
        "restore without its binary",
    );
    assert_nothing_restored(&dir, p.pid, "restore without its binary");
    assert_log_still(
        &log,
        Duration::from_millis(100),
        "restore without its binary",
    );
}

#[test]
fn restore_with_the_executable_replaced() {
    let dir = TestDir::new("newexe");
    let log = dir.join("log");
    let prog = copy_prog(&build_c("counter.c", &[]), dir.path(), "mycounter");
    let mut p = Proc::spawn(&prog, &[&dir.s("log"), "10"], &dir, "counter");
    wait_lines(&log, 5);
    let img = dir.join("img");
    dump(p.pid, &img, &[]).ok("dump");
    p.reap();
    // Another program under the same name.
    fs::remove_file(&prog).unwrap();
    copy_prog(&build_c("counter.c", &["-static"]), dir.path(), "mycounter");
    let (run, _r) = restore(&img, &[]);
    run.fails(
        FILE_MISSING,
        &[&prog.to_string_lossy()],
        "restore with another binary",
    );
    assert_nothing_restored(&dir, p.pid, "restore with another binary");
}

#[test]
fn restore_with_an_open_file_missing() {
    let dir = TestDir::new("nolog");
    let (img, pid) = dead_counter_image(&dir);
    let log = dir.join("log");
    fs::rename(&log, dir.join("log.moved")).unwrap();
    let (run, _r) = restore(&img, &[]);
    run.fails(
        FILE_MISSING,
        &[&log.to_string_lossy()],
        "restore without its log file",
    );
    assert_nothing_restored(&dir, pid, "restore without its log file");
    assert!(!log.exists(), "the failed restore created the log file");
}

/// Frame boundaries of an image: (start, length of the whole frame) after the preamble.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = 16;
    while at + 16 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize;
        v.push((at, 16 + len));
        at += 16 + len;
    }
    assert_eq!(at, bytes.len(), "the test misparsed the image frames");
    v
}

#[test]
fn truncated_images_are_refused() {
    let dir = TestDir::new("trunc");
    let (img, pid) = dead_counter_image(&dir);
    let bytes = fs::read(&img).unwrap();
    let fr = frames(&bytes);
    assert!(fr.len() >= 4, "header, process, pages, trailer");
    let (trailer_at, _) = *fr.last().unwrap();
    let mut cuts = vec![0, 5, 8, 12, 15, 16, 20, 31, 32, trailer_at, trailer_at + 8];
    for &(start, len) in &fr {
        cuts.extend([start, start + 16 + (len - 16) / 2, start + len - 1]);
    }
    cuts.push(bytes.len() - 1);
    cuts.sort();
    cuts.dedup();
    let cut_img = dir.join("cut");
    for cut in cuts {
        let what = format!("image cut at {cut} of {}", bytes.len());
        fs::write(&cut_img, &bytes[..cut]).unwrap();
        let (run, _r) = restore(&cut_img, &[]);
        run.fails(TRUNCATED, &[], &what);
        assert_nothing_restored(&dir, pid, &what);
        spirit(&["show", &cut_img.to_string_lossy()]).fails(
            TRUNCATED,
            &[],
            &format!("show {what}"),
        );
    }
    assert_log_still(
        &dir.join("log"),
        Duration::from_millis(50),
        "truncated restores",
    );
}

#[test]
fn flipped_bytes_are_detected() {
    let dir = TestDir::new("flip");
    let (img, pid) = dead_counter_image(&dir);
    let bytes = fs::read(&img).unwrap();
    // Where the length field of a frame header sits: a flip there may make the reader
    // wait for bytes that never come, which it may fairly call a truncation.
    let length_fields: Vec<std::ops::Range<usize>> =
        frames(&bytes).iter().map(|&(s, _)| s + 8..s + 16).collect();
    let n = bytes.len();
    let mut positions: Vec<usize> = (0..n).step_by(997).collect();
    positions.extend(0..64.min(n));
    positions.extend(n.saturating_sub(64)..n);
    positions.sort();
    positions.dedup();
    let bad = dir.join("flipped");
    let mut failures = Vec::new();
    for &at in &positions {
        let mut b = bytes.clone();
        b[at] ^= 0xff;
        fs::write(&bad, &b).unwrap();
        let what = format!("byte {at} of {n} flipped");
        let (run, restored) = restore(&bad, &[]);
        drop(restored);
        run.clean_error(&what);
        let in_length = length_fields.iter().any(|r| r.contains(&at));
        let ok = run.code == CORRUPT || (in_length && run.code == TRUNCATED);
        if !ok {
            failures.push(format!(
                "{what}: restore exit {}: {}",
                run.code,
                run.error_line()
            ));
        }
        assert_nothing_restored(&dir, pid, &what);
        let show = spirit(&["show", &bad.to_string_lossy(), "--json"]);
        show.clean_error(&format!("show, {what}"));
        if show.code != run.code {
            failures.push(format!(
                "{what}: show exit {} but restore exit {}",
                show.code, run.code
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} flips misreported:\n{}",
        failures.len(),
        positions.len(),
        failures.join("\n")
    );
    assert_log_still(
        &dir.join("log"),
        Duration::from_millis(50),
        "corrupt restores",
    );
}

#[test]
fn not_an_image() {
    let dir = TestDir::new("notimg");
    let f = dir.join("text");
    fs::write(
        &f,
        "this is not a spirit image, just some text long enough\n",
    )
    .unwrap();
    let (run, _r) = restore(&f, &[]);
    run.fails(CORRUPT, &[&f.to_string_lossy()], "restore of a text file");
    spirit(&["show", &f.to_string_lossy()]).fails(CORRUPT, &[], "show of a text file");
}

/// The image with its preamble version set to `major.minor` and a valid preamble crc.
fn with_version(bytes: &[u8], major: u16, minor: u16) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[8..10].copy_from_slice(&major.to_le_bytes());
    b[10..12].copy_from_slice(&minor.to_le_bytes());
    let crc = crc32c(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn newer_format_versions_are_refused() {
    let dir = TestDir::new("version");
    let (img, pid) = dead_counter_image(&dir);
    let bytes = fs::read(&img).unwrap();
    assert_eq!(&bytes[..8], b"\x7fSPIRIT\n");
    assert_eq!(
        crc32c(&bytes[..12]).to_le_bytes(),
        bytes[12..16],
        "the test's crc32c agrees with the image"
    );
    // Sanity: rewriting the current version changes nothing.
    let same = dir.join("same");
    fs::write(&same, with_version(&bytes, 1, 0)).unwrap();
    spirit(&["show", &same.to_string_lossy()]).ok("show of a rewritten 1.0 image");
    for (major, minor) in [(1u16, 1u16), (2, 0), (2, 1), (0, 9)] {
        let f = dir.join(&format!("v{major}.{minor}"));
        fs::write(&f, with_version(&bytes, major, minor)).unwrap();
        let v = format!("{major}.{minor}");
        let what = format!("image version {v}");
        let (run, _r) = restore(&f, &[]);
        run.fails(VERSION, &[&v, "1.0"], &what);
        assert_nothing_restored(&dir, pid, &what);
        spirit(&["show", &f.to_string_lossy()]).fails(VERSION, &[&v], &format!("show, {what}"));
    }
}

/// Rewrite an image through the library, changing its header.
fn rewrite_header(from: &Path, to: &Path, change: impl FnOnce(&mut spirit_core::model::Header)) {
    use spirit_core::image::{Frame, ImageReader, ImageWriter};
    let mut r = ImageReader::new(fs::File::open(from).unwrap(), &from.to_string_lossy())
        .expect("read image");
    let out = std::io::BufWriter::new(fs::File::create(to).unwrap());
    let mut w = ImageWriter::new(out).unwrap();
    let mut buf = Vec::new();
    let mut change = Some(change);
    loop {
        match r.next_frame(&mut buf).expect("next frame") {
            Frame::Header(mut h) => {
                (change.take().unwrap())(&mut h);
                w.write_header(&h).unwrap();
            }
            Frame::Process(p) => w.write_process(&p).unwrap(),
            Frame::Pages { pid, addr, data } => w.write_pages(pid, addr, &buf[data]).unwrap(),
            Frame::End(_) => break,
        }
    }
    w.finish().unwrap();
}

#[test]
fn a_cpu_lacking_the_image_features_is_refused() {
    let dir = TestDir::new("cpu");
    let (img, pid) = dead_counter_image(&dir);
    // Sanity: an unchanged rewrite restores (then it is ended again).
    let copy = dir.join("copy");
    rewrite_header(&img, &copy, |_| {});
    {
        let mut r = restore_ok(&copy, &["--new-pid"]);
        r.kill();
    }
    type Change = Box<dyn FnOnce(&mut spirit_core::model::Header)>;
    let cases: [(&str, &str, Change); 2] = [
        (
            "xfeature",
            "xfeature-30",
            Box::new(|h| h.cpu.xfeatures |= 1 << 30),
        ),
        (
            "flag",
            "avx10_9",
            Box::new(|h| h.cpu.flags.push("avx10_9".to_string())),
        ),
    ];
    for (name, missing, change) in cases {
        let f = dir.join(name);
        rewrite_header(&img, &f, change);
        spirit(&["show", &f.to_string_lossy()]).ok("show of the rewritten image");
        let what = format!("image needing {missing}");
        let (run, _r) = restore(&f, &[]);
        run.fails(CPU, &[missing], &what);
        assert_nothing_restored(&dir, pid, &what);
    }
}

#[test]
fn nobody_may_not_restore_a_root_image() {
    let dir = TestDir::new("permrestore");
    dir.open_to_all();
    let (img, pid) = dead_counter_image(&dir);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&img, fs::Permissions::from_mode(0o644)).unwrap();
    for extra in [&[][..], &["--new-pid"][..]] {
        let img_s = img.to_string_lossy();
        let mut args = vec!["restore", &img_s, "--detach"];
        args.extend_from_slice(extra);
        let what = format!("nobody: spirit {}", args.join(" "));
        let run = spirit_as_nobody(&args);
        // Should a process have come back anyway, it is ours to end.
        let _left: Vec<Proc> = run
            .stdout
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .filter(|&p| pid_alive(p) && parent_of(p) == Some(std::process::id() as i32))
            .map(Proc::adopt)
            .collect();
        run.fails(NOT_PERMITTED, &[], &what);
        assert_nothing_restored(&dir, pid, &what);
    }
}

#[test]
fn dump_to_an_unwritable_place_leaves_the_process_alone() {
    let dir = TestDir::new("io");
    let log = dir.join("log");
    let p = start_counter(&dir, &[]);
    let img = dir.join("no/such/dir/img");
    let run = dump(p.pid, &img, &[]);
    run.fails(12, &[], "dump into a missing directory");
    assert_runs_on(&p, &log, "dump that could not write its image");
}
