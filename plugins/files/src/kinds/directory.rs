//! Directories: reopened by path with their flags and offset (a `getdents` position);
//! at prepare the path must still be a directory.

use crate::files_capnp as s;
use crate::record::{open_as, seek, Head, PathFile, Probe};
use serde_json::{Map, Value};
use spirit_core::Result;
use std::os::fd::OwnedFd;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    pub file: PathFile,
}

impl Directory {
    /// `None` when the path no longer names the open directory (left unclaimed).
    pub fn dump(p: &Probe<'_>) -> Result<Option<Directory>> {
        let file = PathFile::of(&p.entry.target, p.md);
        Ok(file.still_named().then_some(Directory { file }))
    }

    pub fn encode(&self, b: s::path_file::Builder<'_>) {
        self.file.encode(b);
    }

    pub fn decode(r: capnp::Result<s::path_file::Reader<'_>>) -> Result<Directory> {
        Ok(Directory {
            file: PathFile::decode(r)?,
        })
    }

    pub fn check(&self, fd: i32) -> Result<()> {
        self.file.check(fd, |m| m.is_dir()).map(|_| ())
    }

    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let fd = open_as(h, &self.file.path)?;
        seek(&fd, h)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        self.file.show(m);
    }
}
