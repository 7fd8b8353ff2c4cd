//! Character devices that are not terminals (`/dev/null`, `/dev/urandom`...): reopened
//! by path; at prepare the path must be a character device with the same number.
//! Terminals are core's `FdKind::Terminal`, never claimed here.

use crate::files_capnp as s;
use crate::record::{bad, open_as, Head, PathFile, Probe};
use serde_json::{json, Map, Value};
use spirit_core::Result;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CharDevice {
    pub file: PathFile,
    pub rdev: u64,
}

impl CharDevice {
    /// `None` when the path no longer names the open device node (left unclaimed).
    pub fn dump(p: &Probe<'_>) -> Result<Option<CharDevice>> {
        let file = PathFile::of(&p.entry.target, p.md);
        Ok(file.still_named().then_some(CharDevice {
            file,
            rdev: p.md.rdev(),
        }))
    }

    pub fn encode(&self, mut b: s::char_device::Builder<'_>) {
        self.file.encode(b.reborrow().init_file());
        b.set_rdev(self.rdev);
    }

    pub fn decode(r: capnp::Result<s::char_device::Reader<'_>>) -> Result<CharDevice> {
        let r = r.map_err(|e| bad(format!("character device: {e}")))?;
        Ok(CharDevice {
            file: PathFile::decode(r.get_file())?,
            rdev: r.get_rdev(),
        })
    }

    pub fn check(&self, fd: i32) -> Result<()> {
        self.file
            .check(fd, |m| {
                m.file_type().is_char_device() && m.rdev() == self.rdev
            })
            .map(|_| ())
    }

    /// Devices keep no offset spirit could set back.
    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        open_as(h, &self.file.path)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        self.file.show(m);
        m.insert("rdev".into(), json!(self.rdev));
    }
}
