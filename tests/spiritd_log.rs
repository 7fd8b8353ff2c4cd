//! spiritd's log format: journald's (`<N>` priority prefix, no timestamp) when systemd
//! started it (`JOURNAL_STREAM` set), the usual timestamped lines otherwise. Its first
//! start in a fresh state directory logs the key it created, then the bus is missing.

use std::process::Command;

fn first_start(journal: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spiritd"));
    cmd.arg("--bus")
        .arg(format!("unix:path={}/no-bus", dir.path().display()))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("SPIRIT_LOG")
        .env_remove("JOURNAL_STREAM");
    if journal {
        cmd.env("JOURNAL_STREAM", "8:12345");
    }
    let o = cmd.output().expect("run spiritd");
    assert_eq!(o.status.code(), Some(1), "spiritd without a bus must fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn journal_lines_under_systemd_timestamps_otherwise() {
    let j = first_start(true);
    let line = j
        .lines()
        .find(|l| l.contains("identity key"))
        .unwrap_or_else(|| panic!("no key line under journald:\n{j}"));
    assert!(line.starts_with("<6>"), "not a journald line: {line}");
    assert!(!line.contains("INFO") && !line.contains("Z "), "{line}");
    let plain = first_start(false);
    let line = plain
        .lines()
        .find(|l| l.contains("identity key"))
        .unwrap_or_else(|| panic!("no key line:\n{plain}"));
    assert!(line.contains("INFO") && line.starts_with("20"), "{line}");
}
