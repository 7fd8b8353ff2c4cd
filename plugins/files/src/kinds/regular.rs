//! Regular files reached by path: reopened with their flags and offset; at prepare the
//! file must be the same as at checkpoint (size, mtime, and for files up to 1 MiB an
//! xxh3 hash of the content) unless the restore allows changed files. Hashing reads
//! with `O_NOATIME` where permitted: neither the dump nor the restore moves the file's
//! access time (reopening alone never does).

use crate::files_capnp as s;
use crate::record::{bad, open_as, seek, Head, PathFile, Probe};
use serde_json::{json, Map, Value};
use spirit_core::{Error, Result};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

/// Regular files up to this size get a content hash for the identity check.
pub const HASH_LIMIT: u64 = 1 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regular {
    pub file: PathFile,
    pub size: u64,
    pub mtime_ns: i64,
    /// xxh3-64 of the content at checkpoint (owner records of files ≤ 1 MiB).
    pub hash: Option<u64>,
}

impl Regular {
    /// `None` when the path no longer names the open file (left unclaimed: refused).
    pub fn dump(p: &Probe<'_>) -> Result<Option<Regular>> {
        let r = Regular {
            file: PathFile::of(&p.entry.target, p.md),
            size: p.md.size(),
            mtime_ns: p.md.mtime() * 1_000_000_000 + p.md.mtime_nsec(),
            hash: None,
        };
        Ok(r.file.still_named().then_some(r))
    }

    /// Owner records: the content hash.
    pub fn fill(&mut self, p: &Probe<'_>) -> Result<()> {
        if self.size <= HASH_LIMIT {
            if let Some(data) = p.content(HASH_LIMIT)? {
                self.hash = Some(xxhash_rust::xxh3::xxh3_64(&data));
            }
        }
        Ok(())
    }

    pub fn encode(&self, mut b: s::regular::Builder<'_>) {
        self.file.encode(b.reborrow().init_file());
        b.set_size(self.size);
        b.set_mtime_ns(self.mtime_ns);
        b.set_hashed(self.hash.is_some());
        b.set_hash(self.hash.unwrap_or(0));
    }

    pub fn decode(r: capnp::Result<s::regular::Reader<'_>>) -> Result<Regular> {
        let r = r.map_err(|e| bad(format!("regular file: {e}")))?;
        Ok(Regular {
            file: PathFile::decode(r.get_file())?,
            size: r.get_size(),
            mtime_ns: r.get_mtime_ns(),
            hash: r.get_hashed().then_some(r.get_hash()),
        })
    }

    /// Prepare: there, a regular file, unchanged since the checkpoint.
    pub fn check(&self, fd: i32, allow_changed: bool) -> Result<()> {
        let md = self.file.check(fd, |m| m.is_file())?;
        if allow_changed {
            return Ok(());
        }
        let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
        let changed = if md.size() != self.size {
            Some(format!(
                "its size is {} bytes, was {}",
                md.size(),
                self.size
            ))
        } else if mtime != self.mtime_ns {
            Some("it was modified (mtime differs)".to_string())
        } else if let Some(h) = self.hash {
            let now = crate::record::read_quietly(&self.file.path, HASH_LIMIT + 1)
                .map_err(|e| Error::io(&self.file.path, e))?;
            (xxhash_rust::xxh3::xxh3_64(&now) != h).then(|| "its content differs".to_string())
        } else {
            None
        };
        match changed {
            Some(why) => Err(Error::FileMismatch {
                path: self.file.path.clone(),
                what: format!(
                    "open as fd {fd} at checkpoint, but changed since: {why}; restore with --allow-changed-files to accept it"
                ),
            }),
            None => Ok(()),
        }
    }

    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let fd = open_as(h, &self.file.path)?;
        seek(&fd, h)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        self.file.show(m);
        m.insert("size".into(), json!(self.size));
        m.insert("mtime_ns".into(), json!(self.mtime_ns));
        if let Some(h) = self.hash {
            m.insert("xxh3".into(), json!(format!("{h:016x}")));
        }
    }
}
