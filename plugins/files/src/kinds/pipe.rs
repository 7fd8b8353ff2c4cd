//! Anonymous pipes: each record is one end (which end: its access mode), named by the
//! pipe's inode. Each end must be held somewhere in the tree or closed everywhere (an
//! end held only outside it, or left out with `--skip-fd`, is refused naming the fd); a
//! pipe whose other end is closed everywhere comes back so (its read end gives the data
//! then EOF, its write end EPIPE). The data in
//! flight is captured once per pipe for the whole tree (peeked with `tee` from a
//! `pidfd_getfd` copy of a read end held by this process or another of the tree, left in
//! place) and stored on the pipe's first record in dump order; every record carries the
//! capacity. Restore makes one pipe per inode with its capacity and data, and hands out
//! its ends as descriptions ([`Ends`]); an end no record takes is closed when the
//! [`Ends`] are dropped (before any child is forked).

use crate::files_capnp as s;
use crate::record::{bad, fail, reopen, write_all, Head, Probe, SETTABLE};
use serde_json::{json, Map, Value};
use spirit_core::plugin::{DumpTree, FdEntry, FdKind};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pipe {
    pub inode: u64,
    pub capacity: u32,
    /// Data in flight (on the pipe's first record in dump order).
    pub data: Vec<u8>,
}

/// One end of a pipe as core saw it in a process of the frozen tree.
#[derive(Clone, Copy, Debug)]
struct End {
    pid: i32,
    fd: i32,
    read: bool,
    write: bool,
}

/// What the dump of one tree knows of its pipes across its processes.
pub struct TreePipes {
    /// Pipe inode → every end held in the tree.
    ends: HashMap<u64, Vec<End>>,
    /// Pipes whose data in flight is already in an earlier record.
    captured: HashSet<u64>,
}

impl TreePipes {
    pub fn new(tree: &DumpTree) -> TreePipes {
        let mut ends: HashMap<u64, Vec<End>> = HashMap::new();
        for (pid, f) in tree.all_fds() {
            if f.kind != FdKind::Pipe {
                continue;
            }
            let acc = f.flags as i32 & libc::O_ACCMODE;
            ends.entry(f.ino).or_default().push(End {
                pid,
                fd: f.fd,
                read: acc != libc::O_WRONLY,
                write: acc != libc::O_RDONLY,
            });
        }
        TreePipes {
            ends,
            captured: HashSet::new(),
        }
    }

    /// The pipe records of process `pid` (every record of a pipe end, dups included):
    /// check both ends of each pipe are in the tree, capture its data in flight once
    /// for the tree, record its capacity.
    pub fn capture(
        &mut self,
        pid: i32,
        recs: &mut [(&Head, &mut Pipe)],
        entries: &HashMap<i32, &FdEntry>,
    ) -> Result<()> {
        let mut pidfd = None;
        let mut seen = HashSet::new();
        for i in 0..recs.len() {
            let id = recs[i].1.inode;
            if !seen.insert(id) {
                continue;
            }
            let reader = recs
                .iter()
                .find(|(h, p)| p.inode == id && h.access() != libc::O_WRONLY)
                .map(|(h, _)| h.fd);
            let writer = recs
                .iter()
                .any(|(h, p)| p.inode == id && h.access() != libc::O_RDONLY);
            let ends = self.ends.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            for (write, name, mine) in [(false, "read", reader.is_some()), (true, "write", writer)]
            {
                let holds = |e: &&End| if write { e.write } else { e.read };
                if mine || ends.iter().filter(holds).any(|e| e.pid != pid) {
                    continue;
                }
                let fd = recs[i].0.fd;
                let why = match ends.iter().filter(holds).find(|e| e.pid == pid) {
                    Some(e) => format!(
                        "its {name} end, fd {}, is left out of the checkpoint; keep both ends or leave both out",
                        e.fd
                    ),
                    None if closed_everywhere(pid, fd, write)? => continue,
                    None => format!(
                        "its {name} end is held by a process outside the tree: checkpoint the process tree that holds both ends"
                    ),
                };
                return Err(Error::UnsupportedFd {
                    pid,
                    fd,
                    kind: format!("one end of a pipe (inode {id}): {why}"),
                    target: entries
                        .get(&fd)
                        .map(|e| e.target.clone())
                        .unwrap_or_default(),
                });
            }
            let any_fd = recs[i].0.fd;
            if pidfd.is_none() {
                pidfd = Some(kfd::pidfd_open(pid)?);
            }
            let getfd = |fd: i32| {
                kfd::pidfd_getfd(pidfd.as_ref().expect("set above"), fd).map_err(|e| {
                    dump_err(
                        pid,
                        format!("fd {fd}: taking a copy of the pipe with pidfd_getfd: {e}"),
                    )
                })
            };
            let capacity = if self.captured.contains(&id) {
                size_of(&getfd(any_fd)?).map_err(|e| dump_err(pid, format!("fd {any_fd}: {e}")))?
            } else {
                let (data, size) = match reader {
                    Some(fd) => peek(&getfd(fd)?).map_err(|e| {
                        dump_err(
                            pid,
                            format!("fd {fd}: reading the pipe's data in flight: {e}"),
                        )
                    })?,
                    None => match self.peek_elsewhere(pid, id)? {
                        Some(p) => p,
                        None => (Vec::new(), size_of(&getfd(any_fd)?)?),
                    },
                };
                self.captured.insert(id);
                recs[i].1.data = data;
                size
            };
            for (_, p) in recs.iter_mut().filter(|(_, p)| p.inode == id) {
                p.capacity = capacity;
            }
        }
        Ok(())
    }

    /// A pipe's data in flight through a read end held by another process of the tree
    /// (frozen); `None` if no process of the tree holds one.
    fn peek_elsewhere(&self, pid: i32, ino: u64) -> Result<Option<(Vec<u8>, u32)>> {
        let Some(end) = self
            .ends
            .get(&ino)
            .and_then(|v| v.iter().find(|e| e.pid != pid && e.read))
        else {
            return Ok(None);
        };
        let err = |what: &str, e: &dyn std::fmt::Display| {
            dump_err(
                pid,
                format!(
                    "pipe {ino}: {what} fd {} of process {} (its read end): {e}",
                    end.fd, end.pid
                ),
            )
        };
        let pidfd = kfd::pidfd_open(end.pid).map_err(|e| err("opening", &e))?;
        let theirs = kfd::pidfd_getfd(&pidfd, end.fd).map_err(|e| err("taking a copy of", &e))?;
        peek(&theirs)
            .map(Some)
            .map_err(|e| err("reading the data in flight through", &e))
    }
}

/// Whether the pipe of fd `fd` of `pid` has its other end (`write`: the write end)
/// closed in every process, not just outside the tree: the read end then polls
/// `POLLHUP` (no writers), the write end `POLLERR` (no readers). Such a pipe is
/// rebuilt with that end closed (data then EOF, or EPIPE).
fn closed_everywhere(pid: i32, fd: i32, write: bool) -> Result<bool> {
    let err =
        |e: spirit_kmod::Error| dump_err(pid, format!("fd {fd}: polling a copy of the pipe: {e}"));
    let copy = kfd::pidfd_getfd(&kfd::pidfd_open(pid).map_err(err)?, fd).map_err(err)?;
    let want = if write { libc::POLLHUP } else { libc::POLLERR };
    Ok(kfd::poll_now(&copy, 0).map_err(err)? & want != 0)
}

fn dump_err(pid: i32, msg: String) -> Error {
    Error::Dump { pid, msg }
}

fn size_of(fd: &OwnedFd) -> Result<u32> {
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ)
        .map(|s| s as u32)
        .map_err(|e| Error::Restore(format!("F_GETPIPE_SZ: {e}")))
}

/// The bytes waiting in pipe `theirs` (left in place) and its capacity.
pub fn peek(theirs: &OwnedFd) -> Result<(Vec<u8>, u32)> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let size = size_of(theirs)?;
    let pending = kfd::pipe_pending(theirs)?;
    if pending == 0 {
        return Ok((Vec::new(), size));
    }
    let (ours_r, ours_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| Error::Restore(format!("pipe2: {e}")))?;
    // Our pipe holds at least as many buffers as theirs, so one tee takes everything.
    fcntl(ours_w.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size as i32))
        .map_err(|e| Error::Restore(format!("F_SETPIPE_SZ {size}: {e}")))?;
    let copied = kfd::tee(theirs, &ours_w, pending)?;
    if copied != pending {
        return Err(Error::Restore(format!(
            "tee copied {copied} of the {pending} bytes in the pipe"
        )));
    }
    drop(ours_w);
    let mut data = Vec::with_capacity(pending);
    std::fs::File::from(ours_r)
        .read_to_end(&mut data)
        .map_err(|e| Error::Restore(format!("reading the copy of the pipe: {e}")))?;
    if data.len() != pending {
        return Err(Error::Restore(format!(
            "read {} of the {pending} bytes copied from the pipe",
            data.len()
        )));
    }
    Ok((data, size))
}

impl Pipe {
    pub fn dump(p: &Probe<'_>) -> Result<Option<Pipe>> {
        Ok(Some(Pipe {
            inode: p.entry.ino,
            capacity: 0,
            data: Vec::new(),
        }))
    }

    pub fn encode(&self, mut b: s::pipe::Builder<'_>) {
        b.set_inode(self.inode);
        b.set_capacity(self.capacity);
        b.set_data(&self.data);
    }

    pub fn decode(r: capnp::Result<s::pipe::Reader<'_>>) -> Result<Pipe> {
        let r = r.map_err(|e| bad(format!("pipe: {e}")))?;
        Ok(Pipe {
            inode: r.get_inode(),
            capacity: r.get_capacity(),
            data: r
                .get_data()
                .map_err(|e| bad(format!("pipe data: {e}")))?
                .to_vec(),
        })
    }

    /// A new pipe (non-blocking while it is refilled; `packet`: O_DIRECT) of
    /// `capacity` (0: the default), holding `data`.
    pub fn make(h: &Head, packet: bool, capacity: u32, data: &[u8]) -> Result<Ends> {
        let mut flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        if packet {
            flags |= nix::fcntl::OFlag::O_DIRECT;
        }
        let (r, w) = nix::unistd::pipe2(flags).map_err(|e| fail(h, "pipe2", e))?;
        if capacity > 0 {
            nix::fcntl::fcntl(
                w.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(capacity as i32),
            )
            .map_err(|e| fail(h, &format!("setting the pipe's capacity to {capacity}"), e))?;
        }
        let w = write_all(w, data, h)?;
        Ok(Ends {
            r,
            w,
            used_r: false,
            used_w: false,
        })
    }

    pub fn show(&self, h: &Head, m: &mut Map<String, Value>) {
        m.insert("pipe".into(), json!(self.inode));
        let end = match h.access() {
            libc::O_RDONLY => "read",
            libc::O_WRONLY => "write",
            _ => "read+write",
        };
        m.insert("end".into(), json!(end));
        m.insert("capacity".into(), json!(self.capacity));
        m.insert("in_flight".into(), json!(self.data.len()));
    }
}

/// The two ends of a rebuilt pipe, handed out as descriptions: the first description
/// of each end is the end itself, others reopen it through `/proc/self/fd`.
pub struct Ends {
    r: OwnedFd,
    w: OwnedFd,
    used_r: bool,
    used_w: bool,
}

impl Ends {
    /// Move both ends to numbers ≥ `base`.
    pub fn park(self, base: i32) -> Result<Ends> {
        Ok(Ends {
            r: crate::record::park(self.r, base)?,
            w: crate::record::park(self.w, base)?,
            ..self
        })
    }

    /// The description of record `h` (its end from its access mode), with its status
    /// flags.
    pub fn take(&mut self, h: &Head) -> Result<OwnedFd> {
        let (end, used) = if h.access() == libc::O_WRONLY {
            (&self.w, &mut self.used_w)
        } else {
            (&self.r, &mut self.used_r)
        };
        let fd = if *used {
            // Another description of the same end (reopened through /proc): its own flags.
            reopen(h, end)?
        } else {
            *used = true;
            end.try_clone().map_err(|e| fail(h, "dup", e))?
        };
        kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
        Ok(fd)
    }
}
