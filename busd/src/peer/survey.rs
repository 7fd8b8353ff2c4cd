//! What the source tells the target before anything is frozen, so that a migration
//! the target cannot take fails early, with the process never stopped: how many bytes
//! of pages the tree holds (the same count the dump will make: present and swapped
//! pages of the VMAs it copies, read from `/proc/PID/pagemap` while the tree runs) and
//! which files it needs (each process's executable and mapped files, with size and
//! modification time, the identity the restore checks).
//!
//! The target compares the pages with its `MemAvailable` (minus `limits.keep_free_mib`)
//! and the files with its own: a file missing or different there is named in the
//! refusal. (Sending the missing files along is later work; for now they must be
//! installed on the target.)

use serde::{Deserialize, Serialize};
use spirit_core::model::FileId;
use spirit_core::{dump::pages, procinfo};

/// A file the process needs on the target, as the source has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeededFile {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
}

/// Why a tree could not be surveyed.
#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    #[error("surveying pid {pid} before the migration: {source}")]
    Proc {
        pid: i32,
        source: spirit_core::Error,
    },
    #[error("surveying pid {pid} before the migration: its executable: {source}")]
    Exe { pid: i32, source: std::io::Error },
}

/// A tree that does not fit in this host's memory (bytes).
#[derive(Debug, thiserror::Error)]
#[error(
    "not enough free memory here: the process needs {} MiB for its pages, this host has {} MiB available (MemAvailable) and keeps {} MiB free (limits.keep_free_mib)",
    mib(*need),
    available >> 20,
    mib(*keep_free)
)]
pub struct MemoryShort {
    pub need: u64,
    pub available: u64,
    pub keep_free: u64,
}

/// Bytes in MiB, rounded up.
fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

/// The survey of a running tree.
#[derive(Debug, Default)]
pub struct Survey {
    pub page_bytes: u64,
    pub files: Vec<NeededFile>,
}

/// Survey the tree of `pid` (running; nothing is stopped).
pub fn survey(pid: u32) -> Result<Survey, SurveyError> {
    let mut s = Survey::default();
    let mut todo = vec![pid as i32];
    let mut seen = Vec::new();
    while let Some(p) = todo.pop() {
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        let one = (|| -> Result<(u64, Vec<FileId>), SurveyError> {
            let e = |source| SurveyError::Proc { pid: p, source };
            let mut vmas = procinfo::vmas(p).map_err(e)?;
            let runs = pages::plan(p, &mut vmas).map_err(e)?;
            let exe = std::fs::read_link(format!("/proc/{p}/exe"))
                .map(|x| x.to_string_lossy().into_owned())
                .map_err(|source| SurveyError::Exe { pid: p, source })?;
            let bytes = runs.iter().map(|r| r.1 as u64).sum::<u64>();
            Ok((bytes, procinfo::file_ids(p, &exe, &vmas)))
        })();
        let (bytes, files) = match one {
            Ok(x) => x,
            // A descendant may exit while the tree runs on: it is simply not there.
            Err(_)
                if p != pid as i32 && !std::path::Path::new(&format!("/proc/{p}/exe")).exists() =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        s.page_bytes += bytes;
        for f in files {
            if !s.files.iter().any(|n| n.path == f.path) {
                s.files.push(NeededFile {
                    path: f.path,
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                });
            }
        }
        // A child that exits meanwhile is simply not there.
        todo.extend(procinfo::children(p).unwrap_or_default());
    }
    Ok(s)
}

/// The needed files that are missing or different on this host, each with what is
/// wrong (the restore's own rule: size and modification time).
pub fn check_files(files: &[NeededFile]) -> Vec<String> {
    let mut bad = Vec::new();
    for f in files {
        let was = FileId {
            path: f.path.clone(),
            size: f.size,
            mtime_ns: f.mtime_ns,
            ..Default::default()
        };
        match FileId::of(&f.path) {
            Err(e) => bad.push(format!("{} (missing: {e})", f.path)),
            Ok(now) => {
                if let Some(what) = was.differs(&now) {
                    bad.push(format!(
                        "{} (differs from the source's copy: {})",
                        f.path,
                        what.replace("since the checkpoint", "there")
                    ));
                }
            }
        }
    }
    bad
}

/// `MemAvailable` of `/proc/meminfo` text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// May a tree with `need` bytes of pages come here, with `available` bytes available
/// and `keep_free` bytes to be left free?
pub fn check_memory(need: u64, available: u64, keep_free: u64) -> Result<(), MemoryShort> {
    if need.saturating_add(keep_free) <= available {
        return Ok(());
    }
    Err(MemoryShort {
        need,
        available,
        keep_free,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_surveyed() {
        let big = vec![7u8; 8 << 20];
        let s = survey(std::process::id()).unwrap();
        assert!(s.page_bytes >= 8 << 20, "{} bytes", s.page_bytes);
        let exe = std::env::current_exe().unwrap();
        assert!(
            s.files.iter().any(|f| f.path == exe.to_string_lossy()),
            "{:?}",
            s.files
        );
        assert!(check_files(&s.files).is_empty());
        drop(big);
    }

    #[test]
    fn missing_and_changed_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let here = d.path().join("lib.so");
        std::fs::write(&here, b"12345").unwrap();
        let id = FileId::of(here.to_str().unwrap()).unwrap();
        let same = NeededFile {
            path: id.path.clone(),
            size: id.size,
            mtime_ns: id.mtime_ns,
        };
        let bigger = NeededFile {
            size: 9,
            ..same.clone()
        };
        let gone = NeededFile {
            path: d.path().join("gone").to_string_lossy().into_owned(),
            ..same.clone()
        };
        let bad = check_files(&[same, bigger, gone]);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad[0].contains("lib.so") && bad[0].contains("from 9 to 5"),
            "{bad:?}"
        );
        assert!(bad[1].contains("gone (missing"), "{bad:?}");
    }

    #[test]
    fn memory_is_checked_against_mem_available() {
        let info =
            "MemTotal:       24731648 kB\nMemFree:        1000 kB\nMemAvailable:    2097152 kB\n";
        let avail = mem_available(info).unwrap();
        assert_eq!(avail, 2 << 30);
        assert!(check_memory(1 << 30, avail, 64 << 20).is_ok());
        let e = check_memory(2 << 30, avail, 64 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2048 MiB") && e.contains("MemAvailable") && e.contains("64 MiB"),
            "{e}"
        );
        assert_eq!(mem_available("MemFree: 5 kB\n"), None);
    }
}
