//! The files section: model and its Cap'n Proto encoding (`schema/files.capnp`).

use crate::files_capnp as s;
use capnp::message::{Builder, ReaderOptions};
use serde::Serialize;
use spirit_core::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FdKind {
    #[default]
    Regular,
    CharDevice,
    Directory,
    Fifo,
    Pipe,
    DeletedFile,
    Memfd,
    Eventfd,
    Timerfd,
    Signalfd,
    Epoll,
    Inotify,
}

const KINDS: [(FdKind, s::FdKind); 12] = [
    (FdKind::Regular, s::FdKind::Regular),
    (FdKind::CharDevice, s::FdKind::CharDevice),
    (FdKind::Directory, s::FdKind::Directory),
    (FdKind::Fifo, s::FdKind::Fifo),
    (FdKind::Pipe, s::FdKind::Pipe),
    (FdKind::DeletedFile, s::FdKind::DeletedFile),
    (FdKind::Memfd, s::FdKind::Memfd),
    (FdKind::Eventfd, s::FdKind::Eventfd),
    (FdKind::Timerfd, s::FdKind::Timerfd),
    (FdKind::Signalfd, s::FdKind::Signalfd),
    (FdKind::Epoll, s::FdKind::Epoll),
    (FdKind::Inotify, s::FdKind::Inotify),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EpollTarget {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InotifyWatch {
    pub wd: i32,
    pub path: String,
    pub mask: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    Flock,
    Posix,
    Ofd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Lock {
    pub kind: LockKind,
    pub write: bool,
    pub start: u64,
    /// 0: to the end of the file.
    pub len: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Shares the open file description of this lower fd.
    pub dup_of: Option<i32>,
    pub object_id: u64,
    pub data: Vec<u8>,
    pub pipe_size: u32,
    pub seals: u32,
    pub counter: u64,
    pub semaphore: bool,
    pub clock_id: i32,
    pub value_ns: u64,
    pub interval_ns: u64,
    pub sigmask: u64,
    pub epoll: Vec<EpollTarget>,
    pub inotify: Vec<InotifyWatch>,
    pub locks: Vec<Lock>,
    pub hash: Option<u64>,
    /// Tree-wide id of the open file description (owner records; 0: unknown).
    pub desc_id: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesSection {
    pub cwd: String,
    pub root: String,
    pub umask: u32,
    pub fds: Vec<FdRecord>,
}

fn bad(e: capnp::Error) -> Error {
    Error::Restore(format!(
        "malformed files section: {e}; the image is damaged or was not written by spirit"
    ))
}

fn bad_msg(msg: String) -> Error {
    Error::Restore(format!(
        "malformed files section: {msg}; the image is damaged or was not written by spirit"
    ))
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
            let kind = KINDS.iter().find(|(k, _)| *k == f.kind).map(|(_, w)| *w);
            e.set_kind(kind.unwrap_or(s::FdKind::Regular));
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
            e.set_dup_of(f.dup_of.unwrap_or(-1));
            e.set_object_id(f.object_id);
            e.set_data(&f.data);
            e.set_pipe_size(f.pipe_size);
            e.set_seals(f.seals);
            e.set_counter(f.counter);
            e.set_semaphore(f.semaphore);
            e.set_clock_id(f.clock_id);
            e.set_value_ns(f.value_ns);
            e.set_interval_ns(f.interval_ns);
            e.set_sigmask(f.sigmask);
            let mut ep = e.reborrow().init_epoll(f.epoll.len() as u32);
            for (j, t) in f.epoll.iter().enumerate() {
                let mut x = ep.reborrow().get(j as u32);
                x.set_fd(t.fd);
                x.set_events(t.events);
                x.set_data(t.data);
            }
            let mut inw = e.reborrow().init_inotify(f.inotify.len() as u32);
            for (j, w) in f.inotify.iter().enumerate() {
                let mut x = inw.reborrow().get(j as u32);
                x.set_wd(w.wd);
                x.set_path(&w.path);
                x.set_mask(w.mask);
            }
            let mut lk = e.reborrow().init_locks(f.locks.len() as u32);
            for (j, k) in f.locks.iter().enumerate() {
                let mut x = lk.reborrow().get(j as u32);
                x.set_kind(match k.kind {
                    LockKind::Flock => s::LockKind::Flock,
                    LockKind::Posix => s::LockKind::Posix,
                    LockKind::Ofd => s::LockKind::Ofd,
                });
                x.set_write(k.write);
                x.set_start(k.start);
                x.set_len(k.len);
            }
            e.set_hashed(f.hash.is_some());
            e.set_hash(f.hash.unwrap_or(0));
            e.set_desc_id(f.desc_id);
        }
        capnp::serialize::write_message_to_words(&msg)
    }

    pub fn decode(data: &[u8]) -> Result<FilesSection> {
        let mut opts = ReaderOptions::new();
        // Deleted files and memfds up to 64 MiB each travel inside the section: allow
        // traversing the whole section once (and a little more), never amplification.
        opts.traversal_limit_in_words(Some(data.len() / 8 * 2 + (8 << 20)));
        let msg =
            capnp::serialize::read_message_from_flat_slice(&mut &data[..], opts).map_err(bad)?;
        let r = msg.get_root::<s::files::Reader>().map_err(bad)?;
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> Result<String> {
            Ok(t.map_err(bad)?
                .to_str()
                .map_err(|e| bad(e.into()))?
                .to_string())
        };
        let mut fds = Vec::new();
        for f in r.get_fds().map_err(bad)?.iter() {
            let wire = f.get_kind().map_err(|e| bad(e.into()))?;
            let kind = KINDS
                .iter()
                .find(|(_, w)| *w == wire)
                .map(|(k, _)| *k)
                .unwrap_or_default();
            let mut epoll = Vec::new();
            for t in f.get_epoll().map_err(bad)?.iter() {
                epoll.push(EpollTarget {
                    fd: t.get_fd(),
                    events: t.get_events(),
                    data: t.get_data(),
                });
            }
            let mut inotify = Vec::new();
            for w in f.get_inotify().map_err(bad)?.iter() {
                inotify.push(InotifyWatch {
                    wd: w.get_wd(),
                    path: text(w.get_path())?,
                    mask: w.get_mask(),
                });
            }
            let mut locks = Vec::new();
            for k in f.get_locks().map_err(bad)?.iter() {
                locks.push(Lock {
                    kind: match k.get_kind().map_err(|e| bad(e.into()))? {
                        s::LockKind::Flock => LockKind::Flock,
                        s::LockKind::Posix => LockKind::Posix,
                        s::LockKind::Ofd => LockKind::Ofd,
                    },
                    write: k.get_write(),
                    start: k.get_start(),
                    len: k.get_len(),
                });
            }
            let dup = f.get_dup_of();
            fds.push(FdRecord {
                fd: f.get_fd(),
                kind,
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
                dup_of: (dup >= 0).then_some(dup),
                object_id: f.get_object_id(),
                data: f.get_data().map_err(bad)?.to_vec(),
                pipe_size: f.get_pipe_size(),
                seals: f.get_seals(),
                counter: f.get_counter(),
                semaphore: f.get_semaphore(),
                clock_id: f.get_clock_id(),
                value_ns: f.get_value_ns(),
                interval_ns: f.get_interval_ns(),
                sigmask: f.get_sigmask(),
                epoll,
                inotify,
                locks,
                hash: f.get_hashed().then_some(f.get_hash()),
                desc_id: f.get_desc_id(),
            });
        }
        let sec = FilesSection {
            cwd: text(r.get_cwd())?,
            root: text(r.get_root())?,
            umask: r.get_umask(),
            fds,
        };
        sec.validate()?;
        Ok(sec)
    }

    /// Cross-record consistency a restore relies on: fds non-negative and distinct, a
    /// `dup_of` names an earlier fd that owns its description.
    fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for f in &self.fds {
            if f.fd < 0 {
                return Err(bad_msg(format!("negative fd {}", f.fd)));
            }
            if !seen.insert(f.fd) {
                return Err(bad_msg(format!("fd {} listed twice", f.fd)));
            }
        }
        for f in &self.fds {
            if let Some(d) = f.dup_of {
                let owner = self.fds.iter().find(|o| o.fd == d);
                match owner {
                    Some(o) if o.dup_of.is_none() && o.kind == f.kind => {}
                    _ => {
                        return Err(bad_msg(format!(
                            "fd {} shares its file with fd {d}, which is not a description owner of the same kind",
                            f.fd
                        )))
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FilesSection {
        FilesSection {
            cwd: "/tmp".into(),
            root: "/".into(),
            umask: 0o22,
            fds: vec![
                FdRecord {
                    fd: 3,
                    kind: FdKind::Pipe,
                    data: b"hello".to_vec(),
                    object_id: 77,
                    pipe_size: 65536,
                    desc_id: 12,
                    ..Default::default()
                },
                FdRecord {
                    fd: 4,
                    kind: FdKind::Pipe,
                    dup_of: Some(3),
                    ..Default::default()
                },
                FdRecord {
                    fd: 5,
                    kind: FdKind::Epoll,
                    epoll: vec![EpollTarget {
                        fd: 3,
                        events: 1,
                        data: 9,
                    }],
                    locks: vec![Lock {
                        kind: LockKind::Posix,
                        write: true,
                        start: 1,
                        len: 0,
                    }],
                    inotify: vec![InotifyWatch {
                        wd: 1,
                        path: "/x".into(),
                        mask: 2,
                    }],
                    hash: Some(5),
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(FilesSection::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn bad_bytes_never_panic() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            let _ = FilesSection::decode(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xa5;
            let _ = FilesSection::decode(&b);
        }
    }

    #[test]
    fn dangling_dup_refused() {
        let mut s = sample();
        s.fds[1].dup_of = Some(9);
        assert!(FilesSection::decode(&s.encode()).is_err());
    }
}
