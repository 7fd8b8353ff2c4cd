//! The section spirit keeps per process for one external plugin: one record per
//! descriptor the plugin took (number, flags, what kind of file it was, the plugin's
//! opaque bytes, or which earlier record of the tree is the same object), in Cap'n Proto (`schema/external.capnp`).

use crate::external_capnp::{external_section, fd_record};
use spirit_core::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdRecord {
    pub fd: i32,
    pub flags: u32,
    pub cloexec: bool,
    pub fs_magic: i64,
    pub file_type: u32,
    pub target: String,
    pub data: Vec<u8>,
    /// The earlier record (pid, fd) of the same object, and whether it is the same
    /// open file description.
    pub share: Option<Share>,
    pub pos: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub pid: i32,
    pub fd: i32,
    pub same_description: bool,
}

pub fn encode(recs: &[FdRecord]) -> Vec<u8> {
    let mut msg = capnp::message::Builder::new_default();
    let root = msg.init_root::<external_section::Builder>();
    let mut list = root.init_fds(recs.len() as u32);
    for (i, r) in recs.iter().enumerate() {
        let mut b: fd_record::Builder = list.reborrow().get(i as u32);
        b.set_fd(r.fd);
        b.set_flags(r.flags);
        b.set_cloexec(r.cloexec);
        b.set_fs_magic(r.fs_magic);
        b.set_file_type(r.file_type);
        b.set_target(r.target.as_str());
        b.set_data(&r.data);
        b.set_pos(r.pos);
        if let Some(sh) = r.share {
            b.set_shared(true);
            b.set_share_pid(sh.pid);
            b.set_share_fd(sh.fd);
            b.set_same_description(sh.same_description);
        }
    }
    let mut out = Vec::new();
    capnp::serialize::write_message(&mut out, &msg).expect("writing to a Vec cannot fail");
    out
}

fn corrupt(plugin: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        path: format!("section of plugin '{plugin}'"),
        offset: 0,
        what: e.to_string(),
    }
}

pub fn decode(plugin: &str, bytes: &[u8]) -> Result<Vec<FdRecord>> {
    let mut slice = bytes;
    let msg = capnp::serialize::read_message_from_flat_slice(
        &mut slice,
        capnp::message::ReaderOptions::new(),
    )
    .map_err(|e| corrupt(plugin, e))?;
    let root = msg
        .get_root::<external_section::Reader>()
        .map_err(|e| corrupt(plugin, e))?;
    let list = root.get_fds().map_err(|e| corrupt(plugin, e))?;
    let mut recs = Vec::with_capacity(list.len() as usize);
    for r in list.iter() {
        let target = r
            .get_target()
            .and_then(|t| t.to_string().map_err(Into::into))
            .map_err(|e| corrupt(plugin, e))?;
        recs.push(FdRecord {
            fd: r.get_fd(),
            flags: r.get_flags(),
            cloexec: r.get_cloexec(),
            fs_magic: r.get_fs_magic(),
            file_type: r.get_file_type(),
            target,
            data: r.get_data().map_err(|e| corrupt(plugin, e))?.to_vec(),
            pos: r.get_pos(),
            share: r.get_shared().then(|| Share {
                pid: r.get_share_pid(),
                fd: r.get_share_fd(),
                same_description: r.get_same_description(),
            }),
        });
    }
    Ok(recs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let r = FdRecord {
            fd: 5,
            flags: 0o2004002,
            cloexec: true,
            fs_magic: 0x1980_0202,
            file_type: libc::S_IFREG,
            target: "/q (deleted)".into(),
            data: vec![1, 2, 3],
            pos: 9,
            share: Some(Share {
                pid: 7,
                fd: 4,
                same_description: true,
            }),
        };
        assert_eq!(
            decode("x", &encode(std::slice::from_ref(&r))).unwrap(),
            vec![r]
        );
        assert!(decode("x", b"garbage!").is_err());
        assert!(decode("x", &[]).is_err());
    }
}
