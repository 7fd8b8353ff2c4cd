//! memfds (core's `FdKind::Memfd`): name, content (≤ 64 MiB, else refused naming the
//! fd) and seals; restore makes a new memfd of that name with the content, opens each
//! description of it with its flags and offset, and seals it once all exist (a write
//! seal would stop reopening it for writing).

use crate::files_capnp as s;
use crate::record::{
    bad, fail, fill_new_file, reopen, saved_content, seek, show_content, Head, PathFile, Probe,
};
use serde_json::{json, Map, Value};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memfd {
    /// path: "/memfd:NAME".
    pub file: PathFile,
    /// Content (owner records of the first description; empty on others).
    pub data: Vec<u8>,
    pub seals: u32,
}

impl Memfd {
    pub fn dump(p: &Probe<'_>) -> Result<Option<Memfd>> {
        let t = p.entry.target.as_str();
        let path = t.strip_suffix(" (deleted)").unwrap_or(t);
        Ok(Some(Memfd {
            file: PathFile::of(path, p.md),
            data: Vec::new(),
            seals: 0,
        }))
    }

    /// Owner records: content and seals.
    pub fn fill(&mut self, p: &Probe<'_>) -> Result<()> {
        self.data = saved_content(p, "a memfd")?;
        let path = format!("/proc/{}/fd/{}", p.pid, p.entry.fd);
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let seals = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GET_SEALS)
            .map_err(|e| Error::io(&path, e.into()))?;
        self.seals = seals as u32;
        Ok(())
    }

    pub fn encode(&self, mut b: s::memfd::Builder<'_>) {
        self.file.encode(b.reborrow().init_file());
        b.set_data(&self.data);
        b.set_seals(self.seals);
    }

    pub fn decode(r: capnp::Result<s::memfd::Reader<'_>>) -> Result<Memfd> {
        let r = r.map_err(|e| bad(format!("memfd: {e}")))?;
        Ok(Memfd {
            file: PathFile::decode(r.get_file())?,
            data: r
                .get_data()
                .map_err(|e| bad(format!("memfd content: {e}")))?
                .to_vec(),
            seals: r.get_seals(),
        })
    }

    /// The memfd, with `data` as its content (not sealed yet).
    pub fn make(&self, h: &Head, data: &[u8]) -> Result<OwnedFd> {
        let name = self
            .file
            .path
            .strip_prefix("/memfd:")
            .unwrap_or(&self.file.path);
        let mut name: String = name.chars().take(240).collect();
        name.retain(|c| c != '\0');
        let fd = kfd::memfd_create(&name, libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
            .map_err(|e| fail(h, "memfd_create", e))?;
        fill_new_file(fd, data, self.file.mode, h)
    }

    /// A description of the rebuilt memfd `obj` with the flags and offset of `h`.
    pub fn open(h: &Head, obj: &OwnedFd) -> Result<OwnedFd> {
        let fd = reopen(h, obj)?;
        seek(&fd, h)?;
        Ok(fd)
    }

    /// Seal memfd `obj` (once every description of it exists).
    pub fn seal(h: &Head, obj: &OwnedFd, seals: u32) -> Result<()> {
        let flags = nix::fcntl::SealFlag::from_bits_truncate(seals as i32);
        nix::fcntl::fcntl(obj.as_raw_fd(), nix::fcntl::FcntlArg::F_ADD_SEALS(flags))
            .map_err(|e| fail(h, &format!("sealing the memfd ({seals:#x})"), e))?;
        Ok(())
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        self.file.show(m);
        show_content(&self.data, m);
        m.insert("seals".into(), json!(self.seals));
    }
}
