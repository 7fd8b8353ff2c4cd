//! The files section: a common record per descriptor ([`FdRecord`]: number, flags,
//! offset, description, locks) with its kind's [`Payload`], and the Cap'n Proto
//! encoding (`schema/files.capnp`; each kind encodes its own payload).

use crate::files_capnp as s;
use crate::kinds::lock::Lock;
use crate::kinds::owner::{Lease, Owner};
use crate::kinds::Payload;
use crate::record::{bad, text, within, Head};
use capnp::message::Builder;
use serde_json::{json, Map, Value};
use spirit_core::Result;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdRecord {
    pub head: Head,
    /// Shares the open file description of this lower fd.
    pub dup_of: Option<i32>,
    /// Tree-wide id of the open file description (owner records).
    pub desc_id: u64,
    pub locks: Vec<Lock>,
    /// Signal-driven I/O owner of the description (owner records).
    pub owner: Option<Owner>,
    /// Lease held through the description (owner records).
    pub lease: Option<Lease>,
    pub payload: Payload,
}

impl FdRecord {
    pub fn fd(&self) -> i32 {
        self.head.fd
    }

    pub fn is_owner(&self) -> bool {
        self.dup_of.is_none()
    }

    pub fn is_epoll(&self) -> bool {
        matches!(self.payload, Payload::Epoll(_))
    }

    /// One descriptor for `spirit show`: common fields, then what its kind carries.
    pub fn show(&self) -> Value {
        let mut m = Map::new();
        m.insert("fd".into(), json!(self.head.fd));
        m.insert("kind".into(), json!(self.payload.name()));
        m.insert("flags".into(), json!(self.head.flags));
        m.insert("cloexec".into(), json!(self.head.cloexec));
        m.insert("pos".into(), json!(self.head.pos));
        match self.dup_of {
            Some(d) => {
                m.insert("dup_of".into(), json!(d));
            }
            None if self.desc_id != 0 => {
                m.insert("desc".into(), json!(self.desc_id));
            }
            None => {}
        }
        self.payload.show(&self.head, &mut m);
        if !self.locks.is_empty() {
            m.insert("locks".into(), Lock::show(&self.locks));
        }
        if let Some(o) = &self.owner {
            m.insert("owner".into(), o.show());
        }
        if let Some(l) = self.lease {
            m.insert("lease".into(), l.show());
        }
        Value::Object(m)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesSection {
    pub cwd: String,
    pub root: String,
    pub umask: u32,
    pub fds: Vec<FdRecord>,
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
            e.set_fd(f.head.fd);
            e.set_flags(f.head.flags);
            e.set_cloexec(f.head.cloexec);
            e.set_pos(f.head.pos);
            e.set_dup_of(f.dup_of.unwrap_or(-1));
            e.set_desc_id(f.desc_id);
            let mut lk = e.reborrow().init_locks(f.locks.len() as u32);
            for (j, k) in f.locks.iter().enumerate() {
                k.encode(lk.reborrow().get(j as u32));
            }
            if let Some(o) = &f.owner {
                o.encode(e.reborrow().init_owner());
            }
            e.set_lease(Lease::code(f.lease));
            f.payload.encode(e.init_kind());
        }
        capnp::serialize::write_message_to_words(&msg)
    }

    pub fn decode(data: &[u8]) -> Result<FilesSection> {
        // Deleted files and memfds up to 64 MiB each travel inside the section: the limit
        // follows the section's size (twice its words, at least 64 Ki words), never a
        // fixed floor a list of zero-sized elements could amplify (found by fuzzing).
        let opts = spirit_core::codec::reader_options_for(data.len());
        let msg = capnp::serialize::read_message_from_flat_slice(&mut &data[..], opts)
            .map_err(|e| bad(format!("message: {e}")))?;
        let r = msg
            .get_root::<s::files::Reader>()
            .map_err(|e| bad(format!("root: {e}")))?;
        let mut fds = Vec::new();
        for f in r
            .get_fds()
            .map_err(|e| bad(format!("descriptor list: {e}")))?
            .iter()
        {
            let fd = f.get_fd();
            let at = |e| within(e, &format!("fd {fd}"));
            let mut locks = Vec::new();
            for k in f
                .get_locks()
                .map_err(|e| bad(format!("fd {fd}: locks: {e}")))?
                .iter()
            {
                locks.push(Lock::decode(k).map_err(at)?);
            }
            let dup = f.get_dup_of();
            fds.push(FdRecord {
                head: Head {
                    fd,
                    flags: f.get_flags(),
                    cloexec: f.get_cloexec(),
                    pos: f.get_pos(),
                },
                dup_of: (dup >= 0).then_some(dup),
                desc_id: f.get_desc_id(),
                locks,
                owner: match f.has_owner() {
                    true => Some(Owner::decode(f.get_owner()).map_err(at)?),
                    false => None,
                },
                lease: Lease::decode(f.get_lease()).map_err(at)?,
                payload: Payload::decode(f.get_kind()).map_err(at)?,
            });
        }
        let sec = FilesSection {
            cwd: text(r.get_cwd(), "cwd")?,
            root: text(r.get_root(), "root")?,
            umask: r.get_umask(),
            fds,
        };
        sec.validate()?;
        Ok(sec)
    }

    /// Cross-record consistency a restore relies on: fds non-negative and distinct, a
    /// `dup_of` names an earlier fd that owns its description, of the same kind.
    fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for f in &self.fds {
            if f.fd() < 0 {
                return Err(bad(format!("negative fd {}", f.fd())));
            }
            if !seen.insert(f.fd()) {
                return Err(bad(format!("fd {} listed twice", f.fd())));
            }
        }
        for f in &self.fds {
            if let Some(d) = f.dup_of {
                match self.fds.iter().find(|o| o.fd() == d) {
                    Some(o) if o.is_owner() && o.payload.same_kind(&f.payload) => {}
                    _ => {
                        return Err(bad(format!(
                            "fd {} shares its file with fd {d}, which is not a description owner of the same kind",
                            f.fd()
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
    use crate::kinds::epoll::{Epoll, Target};
    use crate::kinds::inotify::{Inotify, Watch};
    use crate::kinds::lock::LockKind;
    use crate::kinds::pipe::Pipe;
    use crate::kinds::pseudo::Pseudo;
    use crate::kinds::regular::Regular;

    fn rec(fd: i32, payload: Payload) -> FdRecord {
        FdRecord {
            head: Head {
                fd,
                ..Default::default()
            },
            dup_of: None,
            desc_id: 0,
            locks: Vec::new(),
            owner: None,
            lease: None,
            payload,
        }
    }

    fn sample() -> FilesSection {
        let pipe = Payload::Pipe(Pipe {
            inode: 77,
            capacity: 65536,
            data: b"hello".to_vec(),
        });
        let mut dup = rec(4, pipe.without_content());
        dup.dup_of = Some(3);
        let mut p = rec(3, pipe);
        p.desc_id = 12;
        let mut ep = rec(
            5,
            Payload::Epoll(Epoll {
                targets: vec![Target {
                    fd: 3,
                    events: 1,
                    data: 9,
                    socket: true,
                }],
            }),
        );
        ep.locks = vec![Lock {
            kind: LockKind::Posix,
            write: true,
            start: 1,
            len: 0,
        }];
        let ino = rec(
            6,
            Payload::Inotify(Inotify {
                watches: vec![Watch {
                    wd: 1,
                    path: "/x".into(),
                    mask: 2,
                }],
            }),
        );
        let mut reg = Regular {
            hash: Some(5),
            size: 9,
            ..Default::default()
        };
        reg.file.path = "/etc/hostname".into();
        FilesSection {
            cwd: "/tmp".into(),
            root: "/".into(),
            umask: 0o22,
            fds: vec![
                p,
                dup,
                ep,
                ino,
                rec(7, Payload::Regular(reg)),
                rec(
                    8,
                    Payload::Pseudo(Pseudo {
                        path: "/proc/1/status".into(),
                    }),
                ),
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
            for x in [0xa5u8, 0xff, 0x01] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let _ = FilesSection::decode(&b);
            }
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let e = FilesSection::decode(&[1, 2, 3]).unwrap_err().to_string();
        assert!(e.contains("malformed files section"), "{e}");
        let mut s = sample();
        s.fds[1].dup_of = Some(9);
        let e = FilesSection::decode(&s.encode()).unwrap_err().to_string();
        assert!(e.contains("fd 4 shares its file with fd 9"), "{e}");
        // A bad part of a record: named, with its fd, once.
        let mut s = sample();
        if let Payload::Pseudo(p) = &mut s.fds[5].payload {
            p.path = "/proc/XYZW".into();
        }
        let mut bytes = s.encode();
        let at = bytes.windows(4).position(|w| w == b"XYZW").unwrap();
        bytes[at] = 0xff;
        let e = FilesSection::decode(&bytes).unwrap_err().to_string();
        assert_eq!(e.matches("malformed").count(), 1, "{e}");
        assert!(
            e.contains("malformed files section: fd 8: /proc or /sys file path"),
            "{e}"
        );
        // A dup of another kind than its owner.
        let mut s = sample();
        s.fds[1].payload = Payload::Pseudo(Pseudo::default());
        assert!(FilesSection::decode(&s.encode()).is_err());
    }

    /// Found by fuzzing (fuzz target `section_files`): ~120-byte sections whose lists
    /// of zero-sized elements claimed millions of entries took seconds and a gigabyte
    /// each to decode. They are refused at once.
    #[test]
    fn fuzz_regression_sections_claiming_millions_of_entries() {
        for input in [
            &include_bytes!("testdata/fuzz-slow-unit-533febce17")[..],
            &include_bytes!("testdata/fuzz-slow-unit-793799ab48")[..],
            &include_bytes!("testdata/fuzz-slow-unit-fd2236a5e8")[..],
        ] {
            let t = std::time::Instant::now();
            let _ = FilesSection::decode(input);
            assert!(
                t.elapsed() < std::time::Duration::from_millis(500),
                "decoding {} bytes took {:?}",
                input.len(),
                t.elapsed()
            );
        }
    }
}
