//! Named pipes (FIFOs): reopened by path without blocking on a missing peer (data in
//! flight is not kept yet); at prepare the path must still be a FIFO.

use crate::files_capnp as s;
use crate::record::{fail, open_as, Head, PathFile, Probe, SETTABLE};
use serde_json::{Map, Value};
use spirit_core::Result;
use spirit_kmod::fd as kfd;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fifo {
    pub file: PathFile,
}

impl Fifo {
    /// `None` when the path no longer names the open FIFO (left unclaimed).
    pub fn dump(p: &Probe<'_>) -> Result<Option<Fifo>> {
        let file = PathFile::of(&p.entry.target, p.md);
        Ok(file.still_named().then_some(Fifo { file }))
    }

    pub fn encode(&self, b: s::path_file::Builder<'_>) {
        self.file.encode(b);
    }

    pub fn decode(r: capnp::Result<s::path_file::Reader<'_>>) -> Result<Fifo> {
        Ok(Fifo {
            file: PathFile::decode(r)?,
        })
    }

    pub fn check(&self, fd: i32) -> Result<()> {
        self.file.check(fd, |m| m.file_type().is_fifo()).map(|_| ())
    }

    /// A non-blocking open, with a read-write "keeper" held meanwhile so a write-only
    /// open finds a reader; then the original blocking mode is put back.
    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let path = &self.file.path;
        let keeper = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| fail(h, &format!("opening the FIFO {path} read-write"), e))?;
        let nonblocking = Head {
            flags: h.flags | libc::O_NONBLOCK as u32,
            ..h.clone()
        };
        let fd = open_as(&nonblocking, path)?;
        drop(keeper);
        kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        self.file.show(m);
    }
}
