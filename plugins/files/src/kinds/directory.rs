//! Directories: reopened by path with their flags and offset (a `getdents` position);
//! at prepare the path must still be a directory.
//!
//! A directory removed while open (its link reads "PATH (deleted)", `st_nlink` 0) is
//! empty for good: restore makes a new directory next to where it was (or in $TMPDIR
//! or /tmp), opens it with the saved flags and removes it. The same is done for a
//! removed working directory ([`enter_deleted`]). Several descriptions of one removed
//! directory come back as as many removed directories (each empty, each its own inode).

use crate::files_capnp as s;
use crate::record::{fail, open_as, seek, Head, PathFile, Probe};
use serde_json::{json, Map, Value};
use spirit_core::{Error, Result};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    pub file: PathFile,
    /// Removed while open (`file.path` without " (deleted)").
    pub deleted: bool,
}

impl Directory {
    /// `None` when the path no longer names the open directory and it was not removed
    /// (left unclaimed).
    pub fn dump(p: &Probe<'_>) -> Result<Option<Directory>> {
        if let Some(path) = p.entry.target.strip_suffix(" (deleted)") {
            if p.md.nlink() == 0 {
                return Ok(Some(Directory {
                    file: PathFile::of(path, p.md),
                    deleted: true,
                }));
            }
        }
        let file = PathFile::of(&p.entry.target, p.md);
        Ok(file.still_named().then_some(Directory {
            file,
            deleted: false,
        }))
    }

    pub fn encode(&self, b: s::path_file::Builder<'_>) {
        self.file.encode(b);
    }

    pub fn decode(r: capnp::Result<s::path_file::Reader<'_>>, deleted: bool) -> Result<Directory> {
        Ok(Directory {
            file: PathFile::decode(r)?,
            deleted,
        })
    }

    pub fn check(&self, fd: i32) -> Result<()> {
        if self.deleted {
            return Ok(());
        }
        self.file.check(fd, |m| m.is_dir()).map(|_| ())
    }

    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        if self.deleted {
            let dir = make_removable(&self.file.path, self.file.mode).map_err(|e| {
                fail(
                    h,
                    &format!("making a directory to stand for removed {}", self.file.path),
                    e,
                )
            })?;
            let fd = open_as(h, &dir.to_string_lossy());
            let _ = std::fs::remove_dir(&dir);
            return fd;
        }
        let fd = open_as(h, &self.file.path)?;
        seek(&fd, h)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        self.file.show(m);
        if self.deleted {
            m.insert("deleted".into(), json!(true));
        }
    }
}

/// Enter a new directory standing for the removed working directory `path` (as the
/// kernel shows it, " (deleted)" included) and remove it.
pub fn enter_deleted(path: &str) -> Result<()> {
    let orig = path.strip_suffix(" (deleted)").unwrap_or(path);
    let err = |e: &dyn std::fmt::Display| {
        Error::Restore(format!(
            "working directory {orig} (removed at checkpoint): making one to stand for it: {e}"
        ))
    };
    let dir = make_removable(orig, 0o700).map_err(|e| err(&e))?;
    let entered = nix::unistd::chdir(&dir);
    let _ = std::fs::remove_dir(&dir);
    entered.map_err(|e| err(&e))
}

/// A new empty directory next to where `orig` was (else in $TMPDIR or /tmp).
fn make_removable(orig: &str, mode: u32) -> std::io::Result<PathBuf> {
    let parent = Path::new(orig).parent().map(Path::to_path_buf);
    let tmp = std::env::var_os("TMPDIR").map_or_else(|| "/tmp".into(), PathBuf::from);
    let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
    for d in parent.into_iter().chain([tmp]) {
        for n in 0..100u32 {
            let p = d.join(format!(".spirit-removed-dir-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(mode & 0o7777).create(&p) {
                Ok(()) => return Ok(p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
    }
    Err(last)
}
