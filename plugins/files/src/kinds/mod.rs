//! One module per descriptor kind, each holding that kind's whole life side by side:
//! dump (from the [`FdEntry`] core classified — the kind is core's, never guessed again
//! here), its payload's encoding, prepare-time check, restore and show. This module only
//! dispatches on [`Payload`]. The kinds depend on `record.rs` alone (and pipes on core's
//! frozen-tree view); nothing here knows about other processes of the tree.

pub mod chardev;
pub mod deleted;
pub mod directory;
pub mod epoll;
pub mod eventfd;
pub mod fifo;
pub mod inotify;
pub mod lock;
pub mod memfd;
pub mod owner;
pub mod pipe;
pub mod pseudo;
pub mod regular;
pub mod signalfd;
pub mod timerfd;

use crate::files_capnp::fd::kind as wire;
use crate::record::{bad, fail, Head, Probe};
use serde_json::{Map, Value};
use spirit_core::plugin::FdKind;
use spirit_core::Result;
use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

/// What a descriptor's kind carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Regular(regular::Regular),
    Pseudo(pseudo::Pseudo),
    Directory(directory::Directory),
    CharDevice(chardev::CharDevice),
    Fifo(fifo::Fifo),
    Deleted(deleted::Deleted),
    Memfd(memfd::Memfd),
    Pipe(pipe::Pipe),
    Eventfd(eventfd::Eventfd),
    Timerfd(timerfd::Timerfd),
    Signalfd(signalfd::Signalfd),
    Epoll(epoll::Epoll),
    Inotify(inotify::Inotify),
}

/// An object behind several descriptions, rebuilt once for all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Object {
    /// A pipe, by inode.
    Pipe(u64),
    /// A deleted file or memfd, by device and inode.
    File(u64, u64),
}

impl Payload {
    /// The kind's name in `spirit show`.
    pub fn name(&self) -> &'static str {
        match self {
            Payload::Regular(_) => "regular",
            Payload::Pseudo(_) => "pseudo",
            Payload::Directory(_) => "directory",
            Payload::CharDevice(_) => "char_device",
            Payload::Fifo(_) => "fifo",
            Payload::Deleted(_) => "deleted_file",
            Payload::Memfd(_) => "memfd",
            Payload::Pipe(_) => "pipe",
            Payload::Eventfd(_) => "eventfd",
            Payload::Timerfd(_) => "timerfd",
            Payload::Signalfd(_) => "signalfd",
            Payload::Epoll(_) => "epoll",
            Payload::Inotify(_) => "inotify",
        }
    }

    pub fn same_kind(&self, other: &Payload) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// The payload of a descriptor of a kind this plugin handles, as core classified
    /// it; `None` leaves the descriptor unclaimed (core then refuses it).
    pub fn dump(p: &Probe<'_>) -> Result<Option<Payload>> {
        Ok(match p.entry.kind {
            FdKind::Regular => regular::Regular::dump(p)?.map(Payload::Regular),
            FdKind::Pseudo => pseudo::Pseudo::dump(p)?.map(Payload::Pseudo),
            FdKind::Directory => directory::Directory::dump(p)?.map(Payload::Directory),
            FdKind::CharDevice => chardev::CharDevice::dump(p)?.map(Payload::CharDevice),
            FdKind::Fifo => fifo::Fifo::dump(p)?.map(Payload::Fifo),
            // Unlinked but with other links left: reopened through one of them.
            FdKind::Deleted if p.md.nlink() > 0 => {
                Some(Payload::Regular(deleted::Deleted::other_link(p)?))
            }
            FdKind::Deleted => deleted::Deleted::dump(p)?.map(Payload::Deleted),
            FdKind::Memfd => memfd::Memfd::dump(p)?.map(Payload::Memfd),
            FdKind::Pipe => pipe::Pipe::dump(p)?.map(Payload::Pipe),
            FdKind::Eventfd => eventfd::Eventfd::dump(p)?.map(Payload::Eventfd),
            FdKind::Timerfd => timerfd::Timerfd::dump(p)?.map(Payload::Timerfd),
            FdKind::Signalfd => signalfd::Signalfd::dump(p)?.map(Payload::Signalfd),
            FdKind::Epoll => epoll::Epoll::dump(p)?.map(Payload::Epoll),
            FdKind::Inotify => inotify::Inotify::dump(p)?.map(Payload::Inotify),
            _ => None,
        })
    }

    /// What only the owner record of a description carries (content, hash, watched
    /// descriptors); `mine` are the fds of the process this plugin restores and its
    /// sockets (what an epoll set may watch).
    pub fn fill(&mut self, p: &Probe<'_>, mine: &HashSet<i32>) -> Result<()> {
        match self {
            Payload::Regular(r) => r.fill(p),
            Payload::Deleted(d) => d.fill(p),
            Payload::Memfd(m) => m.fill(p),
            Payload::Epoll(e) => e.fill(p, mine),
            Payload::Inotify(i) => i.fill(p),
            _ => Ok(()),
        }
    }

    pub fn encode(&self, b: wire::Builder<'_>) {
        match self {
            Payload::Regular(x) => x.encode(b.init_regular()),
            Payload::Pseudo(x) => x.encode(b.init_pseudo()),
            Payload::Directory(x) if x.deleted => x.encode(b.init_deleted_directory()),
            Payload::Directory(x) => x.encode(b.init_directory()),
            Payload::CharDevice(x) => x.encode(b.init_char_device()),
            Payload::Fifo(x) => x.encode(b.init_named_pipe()),
            Payload::Deleted(x) => x.encode(b.init_deleted()),
            Payload::Memfd(x) => x.encode(b.init_memfd()),
            Payload::Pipe(x) => x.encode(b.init_pipe()),
            Payload::Eventfd(x) => x.encode(b.init_eventfd()),
            Payload::Timerfd(x) => x.encode(b.init_timerfd()),
            Payload::Signalfd(x) => x.encode(b.init_signalfd()),
            Payload::Epoll(x) => x.encode(b.init_epoll()),
            Payload::Inotify(x) => x.encode(b.init_inotify()),
        }
    }

    pub fn decode(r: wire::Reader<'_>) -> Result<Payload> {
        use wire::Which as W;
        let which = r
            .which()
            .map_err(|e| bad(format!("unknown descriptor kind {}", e.0)))?;
        Ok(match which {
            W::Regular(x) => Payload::Regular(regular::Regular::decode(x)?),
            W::Pseudo(x) => Payload::Pseudo(pseudo::Pseudo::decode(x)?),
            W::Directory(x) => Payload::Directory(directory::Directory::decode(x, false)?),
            W::DeletedDirectory(x) => Payload::Directory(directory::Directory::decode(x, true)?),
            W::CharDevice(x) => Payload::CharDevice(chardev::CharDevice::decode(x)?),
            W::Fifo(x) => Payload::Fifo(fifo::Fifo::decode_old(x)?),
            W::NamedPipe(x) => Payload::Fifo(fifo::Fifo::decode(x)?),
            W::Deleted(x) => Payload::Deleted(deleted::Deleted::decode(x)?),
            W::Memfd(x) => Payload::Memfd(memfd::Memfd::decode(x)?),
            W::Pipe(x) => Payload::Pipe(pipe::Pipe::decode(x)?),
            W::Eventfd(x) => Payload::Eventfd(eventfd::Eventfd::decode(x)?),
            W::Timerfd(x) => Payload::Timerfd(timerfd::Timerfd::decode(x)?),
            W::Signalfd(x) => Payload::Signalfd(signalfd::Signalfd::decode(x)?),
            W::Epoll(x) => Payload::Epoll(epoll::Epoll::decode(x)?),
            W::Inotify(x) => Payload::Inotify(inotify::Inotify::decode(x)?),
        })
    }

    /// Prepare, on the restoring host: what the kind needs is there.
    pub fn check(&self, fd: i32, allow_changed: bool) -> Result<()> {
        match self {
            Payload::Regular(r) => r.check(fd, allow_changed),
            Payload::Pseudo(p) => p.check(fd),
            Payload::Directory(d) => d.check(fd),
            Payload::CharDevice(c) => c.check(fd),
            Payload::Fifo(f) => f.check(fd),
            Payload::Inotify(i) => i.check(fd),
            _ => Ok(()),
        }
    }

    /// The kind's fields for `spirit show`.
    pub fn show(&self, h: &Head, m: &mut Map<String, Value>) {
        match self {
            Payload::Regular(x) => x.show(m),
            Payload::Pseudo(x) => x.show(m),
            Payload::Directory(x) => x.show(m),
            Payload::CharDevice(x) => x.show(m),
            Payload::Fifo(x) => x.show(m),
            Payload::Deleted(x) => x.show(m),
            Payload::Memfd(x) => x.show(m),
            Payload::Pipe(x) => x.show(h, m),
            Payload::Eventfd(x) => x.show(m),
            Payload::Timerfd(x) => x.show(m),
            Payload::Signalfd(x) => x.show(m),
            Payload::Epoll(x) => x.show(m),
            Payload::Inotify(x) => x.show(m),
        }
    }

    /// The object several descriptions share (pipes, deleted files, memfds).
    pub fn object(&self) -> Option<Object> {
        match self {
            Payload::Pipe(p) => Some(Object::Pipe(p.inode)),
            Payload::Deleted(d) => Some(Object::File(d.file.dev, d.file.inode)),
            Payload::Fifo(f) if f.deleted => Some(Object::File(f.file.dev, f.file.inode)),
            Payload::Memfd(m) => Some(Object::File(m.file.dev, m.file.inode)),
            _ => None,
        }
    }

    /// The content that travels with the object (pipe or FIFO data in flight, a deleted
    /// file's or memfd's content).
    pub fn content(&self) -> &[u8] {
        match self {
            Payload::Pipe(p) => &p.data,
            Payload::Fifo(f) => &f.data,
            Payload::Deleted(d) => &d.data,
            Payload::Memfd(m) => &m.data,
            _ => &[],
        }
    }

    /// The same payload with `data` as its content (a FIFO shared across fork, whose
    /// data travels in the group that creates it).
    pub fn with_content(&self, data: &[u8]) -> Payload {
        let mut p = self.clone();
        if let Payload::Fifo(x) = &mut p {
            x.data = data.to_vec();
        }
        p
    }

    /// The same payload without its content (records of a description already kept).
    pub fn without_content(&self) -> Payload {
        let mut p = self.clone();
        match &mut p {
            Payload::Pipe(x) => x.data = Vec::new(),
            Payload::Fifo(x) => x.data = Vec::new(),
            Payload::Deleted(x) => x.data = Vec::new(),
            Payload::Memfd(x) => x.data = Vec::new(),
            _ => {}
        }
        p
    }

    /// Rebuild a description that stands alone (no pipe, deleted file or memfd behind
    /// it, no epoll set: those are rebuilt with what they share, or last).
    pub fn open(&self, h: &Head, pids: &pseudo::Pids) -> Result<OwnedFd> {
        match self {
            Payload::Regular(x) => x.open(h),
            Payload::Pseudo(x) => x.open(h, pids),
            Payload::Directory(x) => x.open(h),
            Payload::CharDevice(x) => x.open(h),
            Payload::Fifo(x) => x.open(h),
            Payload::Eventfd(x) => x.open(h),
            Payload::Timerfd(x) => x.open(h),
            Payload::Signalfd(x) => x.open(h),
            Payload::Inotify(x) => x.open(h),
            Payload::Pipe(_) | Payload::Deleted(_) | Payload::Memfd(_) | Payload::Epoll(_) => {
                Err(fail(
                    h,
                    "rebuilding",
                    "pipes, deleted files, memfds and epoll sets are rebuilt with what they share",
                ))
            }
        }
    }
}

/// An object rebuilt for several descriptions: a pipe's two ends, a deleted file or a
/// memfd. Each description is handed out with [`Built::take`].
pub enum Built {
    Pipe(pipe::Ends),
    File(OwnedFd),
}

impl Built {
    /// The object behind `first` (a record of a pipe, deleted file or memfd), with the
    /// object's content and, for pipes, its capacity and packet mode.
    pub fn make(
        first: &Payload,
        h: &Head,
        data: &[u8],
        capacity: u32,
        packet: bool,
    ) -> Result<Built> {
        match first {
            Payload::Pipe(_) => pipe::Pipe::make(h, packet, capacity, data).map(Built::Pipe),
            Payload::Deleted(d) => d.make(h, data).map(Built::File),
            Payload::Fifo(f) if f.deleted => f.make_deleted(h, data, capacity).map(Built::File),
            Payload::Memfd(m) => m.make(h, data).map(Built::File),
            _ => Err(fail(h, "rebuilding", "not a pipe, deleted file or memfd")),
        }
    }

    /// Move what it holds to numbers ≥ `base`.
    pub fn park(self, base: i32) -> Result<Built> {
        Ok(match self {
            Built::Pipe(e) => Built::Pipe(e.park(base)?),
            Built::File(f) => Built::File(crate::record::park(f, base)?),
        })
    }

    /// A description of it with the flags (and offset) of record `h`.
    pub fn take(&mut self, h: &Head, p: &Payload) -> Result<OwnedFd> {
        match (self, p) {
            (Built::Pipe(e), Payload::Pipe(_)) => e.take(h),
            (Built::File(f), Payload::Deleted(_)) => deleted::Deleted::open(h, f),
            (Built::File(f), Payload::Fifo(x)) => x.take(h, f),
            (Built::File(f), Payload::Memfd(_)) => memfd::Memfd::open(h, f),
            _ => Err(fail(
                h,
                "rebuilding",
                "the same object is listed as two kinds",
            )),
        }
    }

    /// Seal a memfd once every description of it exists (0: nothing to do).
    pub fn seal(&self, h: &Head, seals: u32) -> Result<()> {
        match self {
            Built::File(f) if seals != 0 => memfd::Memfd::seal(h, f, seals),
            _ => Ok(()),
        }
    }
}
