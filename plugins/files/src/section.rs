//! The files section: model and its Cap'n Proto encoding (`schema/files.capnp`).

use crate::files_capnp as s;
use capnp::message::{Builder, ReaderOptions};
use serde::Serialize;
use spirit_core::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FdKind {
    Regular,
    CharDevice,
    Directory,
    Fifo,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FdRecord {
    pub fd: i32,
    pub kind: FdKind,
    pub path: String,
    pub flags: u32,
    pub cloexec: bool,
    pub pos: u64,
    pub rdev: u64,
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub dev: u64,
    pub inode: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FilesSection {
    pub cwd: String,
    pub root: String,
    pub umask: u32,
    pub fds: Vec<FdRecord>,
}

fn bad(e: capnp::Error) -> Error {
    Error::Restore(format!("malformed files section: {e}"))
}

impl FilesSection {
    pub fn encode(&self) -> Vec<u8> {
        let mut msg = Builder::new_default();
        let mut b = msg.init_root::<s::files::Builder>();
        b.set_cwd(&self.cwd);
        b.set_root(&self.root);
        b.set_umask(self.umask);
        let mut l = b.init_fds(self.fds.len() as u32);
        for (i, f) in self.fds.iter().enumerate() {
            let mut e = l.reborrow().get(i as u32);
            e.set_fd(f.fd);
            e.set_kind(match f.kind {
                FdKind::Regular => s::FdKind::Regular,
                FdKind::CharDevice => s::FdKind::CharDevice,
                FdKind::Directory => s::FdKind::Directory,
                FdKind::Fifo => s::FdKind::Fifo,
            });
            e.set_path(&f.path);
            e.set_flags(f.flags);
            e.set_cloexec(f.cloexec);
            e.set_pos(f.pos);
            e.set_rdev(f.rdev);
            e.set_mode(f.mode);
            e.set_size(f.size);
            e.set_mtime_ns(f.mtime_ns);
            e.set_dev(f.dev);
            e.set_inode(f.inode);
        }
        capnp::serialize::write_message_to_words(&msg)
    }

    pub fn decode(data: &[u8]) -> Result<FilesSection> {
        let msg =
            capnp::serialize::read_message_from_flat_slice(&mut &data[..], ReaderOptions::new())
                .map_err(bad)?;
        let r = msg.get_root::<s::files::Reader>().map_err(bad)?;
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> Result<String> {
            Ok(t.map_err(bad)?
                .to_str()
                .map_err(|e| bad(e.into()))?
                .to_string())
        };
        let mut fds = Vec::new();
        for f in r.get_fds().map_err(bad)?.iter() {
            fds.push(FdRecord {
                fd: f.get_fd(),
                kind: match f.get_kind().map_err(|e| bad(e.into()))? {
                    s::FdKind::Regular => FdKind::Regular,
                    s::FdKind::CharDevice => FdKind::CharDevice,
                    s::FdKind::Directory => FdKind::Directory,
                    s::FdKind::Fifo => FdKind::Fifo,
                },
                path: text(f.get_path())?,
                flags: f.get_flags(),
                cloexec: f.get_cloexec(),
                pos: f.get_pos(),
                rdev: f.get_rdev(),
                mode: f.get_mode(),
                size: f.get_size(),
                mtime_ns: f.get_mtime_ns(),
                dev: f.get_dev(),
                inode: f.get_inode(),
            });
        }
        if fds.iter().any(|f| f.fd < 0) {
            return Err(Error::Restore(
                "malformed files section: negative fd".into(),
            ));
        }
        Ok(FilesSection {
            cwd: text(r.get_cwd())?,
            root: text(r.get_root())?,
            umask: r.get_umask(),
            fds,
        })
    }
}
