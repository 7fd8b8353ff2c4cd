//! Memory objects no path gives back: files deleted while mapped, memfds mapped and
//! closed, shared anonymous memory shared across fork come back as they were; SysV
//! shared memory is refused by name.

mod common;

use common::*;

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
        .to_string()
}

fn count_of(line: &str) -> u64 {
    field(line, "child").parse().expect("child count")
}

#[test]
fn deleted_mapped_files_and_shared_anonymous_memory_come_back() {
    init();
    let dir = TestDir::new("mapped");
    let log = dir.join("log");
    let prog = build_c("mapped.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), &dir.s("")], &dir, "mapped");
    let before = wait_lines(&log, 5).last().cloned().unwrap();
    for key in ["priv", "shared", "memfd"] {
        assert_eq!(field(&before, key), "1", "{key} before: {before}");
    }
    assert!(count_of(&before) > 0, "the child counts in the shared page");
    let child = procs_in(dir.path())
        .into_iter()
        .find(|&p| p != orig.pid)
        .expect("the counting child");
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    // The child, re-parented to this test (the subreaper), is reaped so its pid is free.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    let n = log_lines(&log).len();
    let at_dump = count_of(log_lines(&log).last().unwrap());
    let show = spirit(&["show", &img.to_string_lossy(), "--json"]);
    show.ok("show");
    assert!(show.stdout.contains("\"mapped\""), "{}", show.stdout);
    let _restored = restore_ok(&img, &[]);
    let lines = wait_lines(&log, n + 10);
    let after = lines.last().unwrap();
    for key in ["priv", "shared", "memfd"] {
        assert_eq!(field(after, key), "1", "{key} after restore: {after}");
    }
    // The child's increments still reach the parent: the page is shared again.
    assert!(
        count_of(after) > at_dump + 2,
        "shared anonymous memory no longer shared: {at_dump} at dump, {after}"
    );
    for p in procs_in(dir.path()) {
        Proc::adopt(p).kill();
    }
}

#[test]
fn sysv_shared_memory_is_refused_by_name() {
    init();
    let dir = TestDir::new("sysv");
    let py = "import ctypes,time,sys\nlibc=ctypes.CDLL(None)\nlibc.shmat.restype=ctypes.c_void_p\n\
              i=libc.shmget(0,4096,0o1600)\nlibc.shmat(i,None,0)\nlibc.shmctl(i,0,None)\n\
              open(sys.argv[1],'w').write('ready\\n')\ntime.sleep(60)\n";
    std::fs::write(dir.join("shm.py"), py).unwrap();
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.arg(dir.join("shm.py")).arg(dir.join("ready"));
    let mut p = Proc::start(cmd, &dir, "sysv");
    wait_lines(&dir.join("ready"), 1);
    dump(p.pid, &dir.join("img.spirit"), &[]).fails(5, &["SysV shared memory", "0x"], "dump");
    assert!(p.alive(), "a refused checkpoint leaves the process running");
    p.kill();
}
