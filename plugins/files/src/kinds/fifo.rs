//! Named pipes (FIFOs), in every open mode: reopened by path without blocking on a
//! missing peer, with their data in flight. At prepare the path must still be a FIFO.
//!
//! Dump: the data in flight lives in the FIFO's pipe buffer, shared by every opener; it
//! is peeked (`tee`, left in place) once per FIFO for the whole tree, through a copy of
//! a readable description (`pidfd_getfd`) or, when the tree only writes to it, through
//! a read-only non-blocking reopen of `/proc/PID/fd/N`, and stored on the FIFO's first
//! record in dump order with the capacity.
//!
//! Restore: a read-write "keeper" is opened first (non-blocking), so that a write-only
//! open finds a reader and a read-only open does not wait for a writer (a read-only
//! description that did not poll POLLHUP and has no data to refill is opened without
//! it: opened non-blocking with no writer, it must not poll POLLHUP until a writer came
//! and went, and the keeper would be that writer); the description
//! is opened non-blocking, the saved data written through the keeper (refused if the
//! FIFO already holds data: someone outside the restored tree has it open), the keeper
//! closed (the description holds the buffer), and the original blocking mode put back.
//! A reader without a peer then reads the data and EOF, a writer without one gets EPIPE.
//!
//! A FIFO removed while open is rebuilt once for all its descriptions (an object, like
//! a deleted file): a FIFO made next to where it was, refilled through a keeper, removed,
//! and each description reopened from the keeper through `/proc/self/fd`.

use crate::files_capnp as s;
use crate::kinds::pipe::peek;
use crate::record::{bad, fail, open_as, Head, PathFile, Probe, SETTABLE};
use serde_json::{json, Map, Value};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fifo {
    pub file: PathFile,
    /// Data in flight (the FIFO's first record in the tree; empty on others).
    pub data: Vec<u8>,
    /// Capacity of its buffer (records carrying data).
    pub capacity: u32,
    /// Removed while open (`file.path` without " (deleted)").
    pub deleted: bool,
    /// A read-only description polling POLLHUP. One opened (non-blocking) while the
    /// FIFO had no writer polls POLLHUP only once a writer came and went; one that does
    /// not poll it, without data to refill, is reopened without the keeper (a writer
    /// that would arm it).
    pub hangup: bool,
}

impl Fifo {
    /// `None` when the path no longer names the open FIFO (left unclaimed).
    pub fn dump(p: &Probe<'_>) -> Result<Option<Fifo>> {
        if let Some(path) = p.entry.target.strip_suffix(" (deleted)") {
            if p.md.nlink() == 0 {
                return Ok(Some(Fifo {
                    file: PathFile::of(path, p.md),
                    deleted: true,
                    ..Fifo::default()
                }));
            }
        }
        let file = PathFile::of(&p.entry.target, p.md);
        Ok(file.still_named().then_some(Fifo {
            file,
            ..Fifo::default()
        }))
    }

    /// The data in flight, through descriptor `h` of `pid` (frozen), left in place.
    pub fn capture(&mut self, pid: i32, h: &Head) -> Result<()> {
        let err = |what: &str, e: &dyn std::fmt::Display| Error::Dump {
            pid,
            msg: format!("fd {}: {what} the FIFO {}: {e}", h.fd, self.file.path),
        };
        let copy = if h.access() == libc::O_WRONLY {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(format!("/proc/{pid}/fd/{}", h.fd))
                .map(OwnedFd::from)
                .map_err(|e| err("opening for reading", &e))?
        } else {
            let pidfd = kfd::pidfd_open(pid).map_err(|e| err("taking a copy of", &e))?;
            kfd::pidfd_getfd(&pidfd, h.fd).map_err(|e| err("taking a copy of", &e))?
        };
        let (data, capacity) = peek(&copy).map_err(|e| err("reading the data in", &e))?;
        self.data = data;
        self.capacity = capacity;
        Ok(())
    }

    /// Owner records of read-only descriptions: whether it polls POLLHUP now.
    pub fn poll_hangup(&mut self, pid: i32, h: &Head) -> Result<()> {
        if h.access() != libc::O_RDONLY || h.flags as i32 & libc::O_PATH != 0 {
            return Ok(());
        }
        let err = |e: spirit_kmod::Error| Error::Dump {
            pid,
            msg: format!("fd {}: polling a copy of the FIFO: {e}", h.fd),
        };
        let copy = kfd::pidfd_getfd(&kfd::pidfd_open(pid).map_err(err)?, h.fd).map_err(err)?;
        self.hangup = kfd::poll_now(&copy, 0).map_err(err)? & libc::POLLHUP != 0;
        Ok(())
    }

    pub fn encode(&self, mut b: s::fifo::Builder<'_>) {
        self.file.encode(b.reborrow().init_file());
        b.set_data(&self.data);
        b.set_capacity(self.capacity);
        b.set_deleted(self.deleted);
        b.set_hangup(self.hangup);
    }

    pub fn decode(r: capnp::Result<s::fifo::Reader<'_>>) -> Result<Fifo> {
        let r = r.map_err(|e| bad(format!("FIFO: {e}")))?;
        Ok(Fifo {
            file: PathFile::decode(r.get_file())?,
            data: r
                .get_data()
                .map_err(|e| bad(format!("FIFO data: {e}")))?
                .to_vec(),
            capacity: r.get_capacity(),
            deleted: r.get_deleted(),
            hangup: r.get_hangup(),
        })
    }

    /// An image from before FIFOs carried their data.
    pub fn decode_old(r: capnp::Result<s::path_file::Reader<'_>>) -> Result<Fifo> {
        Ok(Fifo {
            file: PathFile::decode(r)?,
            ..Fifo::default()
        })
    }

    pub fn check(&self, fd: i32) -> Result<()> {
        if self.deleted {
            return Ok(());
        }
        self.file.check(fd, |m| m.file_type().is_fifo()).map(|_| ())
    }

    /// Reopen it (see the module doc), refilling the data in flight if this record
    /// carries it.
    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let path = &self.file.path;
        if h.flags as i32 & libc::O_PATH != 0 {
            // Never blocks, never reaches the buffer.
            return open_as(h, path);
        }
        if h.access() == libc::O_RDONLY && !self.hangup && self.data.is_empty() {
            let nonblocking = Head {
                flags: h.flags | libc::O_NONBLOCK as u32,
                ..h.clone()
            };
            let fd = open_as(&nonblocking, path)?;
            kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
            return Ok(fd);
        }
        let keeper = self.keeper(h)?;
        let nonblocking = Head {
            flags: h.flags | libc::O_NONBLOCK as u32,
            ..h.clone()
        };
        let fd = open_as(&nonblocking, path)?;
        if !self.data.is_empty() {
            self.refill(h, &keeper)?;
        }
        drop(keeper);
        kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
        Ok(fd)
    }

    /// A removed FIFO rebuilt for all its descriptions: a FIFO made next to where it
    /// was (else in $TMPDIR or /tmp), a read-write keeper opened on it and refilled
    /// with `data`, the FIFO removed. Descriptions are taken from the keeper
    /// ([`Fifo::take`]); it is closed once they all exist.
    pub fn make_deleted(&self, h: &Head, data: &[u8], capacity: u32) -> Result<OwnedFd> {
        let orig = std::path::Path::new(&self.file.path);
        let tmp =
            std::env::var_os("TMPDIR").map_or_else(|| "/tmp".into(), std::path::PathBuf::from);
        let mut last = nix::errno::Errno::ENOENT;
        for d in orig
            .parent()
            .map(|p| p.to_path_buf())
            .into_iter()
            .chain([tmp])
        {
            for n in 0..100u32 {
                let p = d.join(format!(".spirit-removed-fifo-{}-{n}", std::process::id()));
                let mode = nix::sys::stat::Mode::from_bits_truncate(self.file.mode & 0o7777);
                match nix::unistd::mkfifo(&p, mode) {
                    Ok(()) => {
                        let fifo = Fifo {
                            file: PathFile {
                                path: p.to_string_lossy().into_owned(),
                                ..self.file.clone()
                            },
                            data: data.to_vec(),
                            capacity,
                            deleted: false,
                            hangup: false,
                        };
                        let keeper = fifo.keeper(h);
                        let filled = keeper.and_then(|k| {
                            if !data.is_empty() {
                                fifo.refill(h, &k)?;
                            }
                            Ok(k)
                        });
                        let _ = std::fs::remove_file(&p);
                        return filled;
                    }
                    Err(nix::errno::Errno::EEXIST) => continue,
                    Err(e) => {
                        last = e;
                        break;
                    }
                }
            }
        }
        Err(fail(
            h,
            &format!("making a FIFO to stand for removed {}", self.file.path),
            last,
        ))
    }

    /// A description of the rebuilt removed FIFO held by `keeper`, with the flags of `h`.
    pub fn take(&self, h: &Head, keeper: &OwnedFd) -> Result<OwnedFd> {
        if h.flags as i32 & libc::O_PATH != 0 {
            return crate::record::reopen(h, keeper);
        }
        let nonblocking = Head {
            flags: h.flags | libc::O_NONBLOCK as u32,
            ..h.clone()
        };
        let fd = crate::record::reopen(&nonblocking, keeper)?;
        kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
        Ok(fd)
    }

    fn keeper(&self, h: &Head) -> Result<OwnedFd> {
        let path = &self.file.path;
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| fail(h, &format!("opening the FIFO {path} read-write"), e))?
            .into())
    }

    fn refill(&self, h: &Head, keeper: &OwnedFd) -> Result<()> {
        let path = &self.file.path;
        let there = kfd::pipe_pending(keeper)?;
        if there > 0 {
            return Err(fail(
                h,
                &format!("refilling the FIFO {path}"),
                format!("it already holds {there} bytes: a process outside the restored tree has it open"),
            ));
        }
        let cap = self.capacity as usize;
        if cap > 0 && cap != kfd_pipe_size(keeper)? {
            nix::fcntl::fcntl(
                keeper.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(self.capacity as i32),
            )
            .map_err(|e| fail(h, &format!("setting the capacity of the FIFO {path}"), e))?;
        }
        let mut done = 0;
        while done < self.data.len() {
            match nix::unistd::write(keeper, &self.data[done..]) {
                Ok(n) if n > 0 => done += n,
                Ok(_) => return Err(fail(h, "refilling the FIFO", "wrote nothing")),
                Err(e) => return Err(fail(h, &format!("refilling the FIFO {path}"), e)),
            }
        }
        Ok(())
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        self.file.show(m);
        m.insert("in_flight".into(), json!(self.data.len()));
        if self.capacity > 0 {
            m.insert("capacity".into(), json!(self.capacity));
        }
        if self.deleted {
            m.insert("deleted".into(), json!(true));
        }
    }
}

fn kfd_pipe_size(fd: &OwnedFd) -> Result<usize> {
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ)
        .map(|s| s as usize)
        .map_err(|e| Error::Restore(format!("F_GETPIPE_SZ: {e}")))
}
