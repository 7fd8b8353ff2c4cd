//! Signal-driven I/O owners and leases.
//!
//! Owners (`F_SETOWN`/`F_SETOWN_EX`, `F_SETSIG`) of any open file
//! description: who gets SIGIO (or the signal set) and SIGURG. fdinfo does not show
//! them: the dump reads them with `fcntl` on a `pidfd_getfd` copy (the same open file
//! description); the restore sets them again on the rebuilt description, the process's
//! own pid translated to its new one, and O_ASYNC set again at the final descriptor
//! number (the number the signal's `si_fd` reports); an owner that is another process or thread of the
//! tree is refused when pids change (its new number is not known there).
//!
//! Leases (`F_SETLEASE`) are read the same way (`F_GETLEASE` on the copy) and taken
//! again through the rebuilt description once every descriptor is in place (a lease
//! another open of the file conflicts with fails the restore naming the fd).

use crate::files_capnp as s;
use crate::kinds::pseudo::Pids;
use crate::record::{bad, fail, Head};
use serde_json::{json, Value};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::os::fd::OwnedFd;

const F_OWNER_TID: i32 = 0;
const F_OWNER_PGRP: i32 = 2;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// `F_OWNER_TID`, `F_OWNER_PID` or `F_OWNER_PGRP`.
    pub kind: i32,
    /// The thread, process or process group (0: nobody).
    pub id: i32,
    /// The signal sent instead of SIGIO (0: SIGIO).
    pub signal: i32,
}

/// Set O_ASYNC again on fd `h.fd` in place: cleared then set, so that the signal's
/// `si_fd` is this number, not the one the description was built at.
pub fn rearm_async(h: &Head) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(h.fd, FcntlArg::F_GETFL).map_err(|e| fail(h, "F_GETFL", e))?;
    let without = OFlag::from_bits_truncate(flags & !libc::O_ASYNC);
    fcntl(h.fd, FcntlArg::F_SETFL(without)).map_err(|e| fail(h, "clearing O_ASYNC", e))?;
    fcntl(h.fd, FcntlArg::F_SETFL(without | OFlag::O_ASYNC))
        .map_err(|e| fail(h, "setting O_ASYNC", e))?;
    Ok(())
}

impl Owner {
    /// The owner of fd `fd` of `pid` (`copy`: a `pidfd_getfd` copy of it); `None` if it
    /// has none.
    pub fn dump(pid: i32, fd: i32, copy: &OwnedFd) -> Result<Option<Owner>> {
        let err = |e: spirit_kmod::Error| Error::Dump {
            pid,
            msg: format!("fd {fd}: reading its signal owner (F_GETOWN_EX on a copy): {e}"),
        };
        let (kind, id, signal) = kfd::owner(copy).map_err(err)?;
        Ok((id != 0 || signal != 0).then_some(Owner { kind, id, signal }))
    }

    pub fn encode(&self, mut b: s::owner::Builder<'_>) {
        b.set_kind(self.kind);
        b.set_id(self.id);
        b.set_signal(self.signal);
    }

    pub fn decode(r: capnp::Result<s::owner::Reader<'_>>) -> Result<Owner> {
        let r = r.map_err(|e| bad(format!("signal owner: {e}")))?;
        if !(F_OWNER_TID..=F_OWNER_PGRP).contains(&r.get_kind()) || r.get_signal() < 0 {
            return Err(bad(format!(
                "signal owner of unknown type {} or signal {}",
                r.get_kind(),
                r.get_signal()
            )));
        }
        Ok(Owner {
            kind: r.get_kind(),
            id: r.get_id(),
            signal: r.get_signal(),
        })
    }

    /// Set it on fd `h.fd` (in place), the process's own pid translated.
    pub fn restore(&self, h: &Head, pids: &Pids) -> Result<()> {
        let id = if self.kind == F_OWNER_TID
            && self.id != pids.image_pid
            && pids.tree.contains(&self.id)
        {
            return Err(fail(
                h,
                "setting its signal owner",
                format!(
                    "it is thread {} of the tree, which does not exist yet when descriptors are rebuilt (only the main thread can own a descriptor across a restore)",
                    self.id
                ),
            ));
        } else if self.id == pids.image_pid {
            nix::unistd::getpid().as_raw()
        } else if pids.renumbered && pids.tree.contains(&self.id) {
            return Err(fail(
                h,
                "setting its signal owner",
                format!(
                    "it is process or thread {} of the tree, whose new pid is not known here; restore without --new-pid",
                    self.id
                ),
            ));
        } else {
            self.id
        };
        kfd::set_owner(h.fd, self.kind, id, self.signal)
            .map_err(|e| fail(h, &format!("setting its signal owner to {id}"), e))
    }

    pub fn show(&self) -> Value {
        let kind = match self.kind {
            F_OWNER_TID => "tid",
            F_OWNER_PGRP => "pgrp",
            _ => "pid",
        };
        json!({ "type": kind, "id": self.id, "signal": self.signal })
    }
}

/// A lease held through a description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    Read,
    Write,
}

impl Lease {
    /// The lease held through fd `fd` of `pid` (`copy`: a `pidfd_getfd` copy of it).
    pub fn dump(pid: i32, fd: i32, copy: &OwnedFd) -> Result<Option<Lease>> {
        let kind = kfd::lease(copy).map_err(|e| Error::Dump {
            pid,
            msg: format!("fd {fd}: reading its lease (F_GETLEASE on a copy): {e}"),
        })?;
        Ok(match kind {
            libc::F_RDLCK => Some(Lease::Read),
            libc::F_WRLCK => Some(Lease::Write),
            _ => None,
        })
    }

    pub fn code(l: Option<Lease>) -> u8 {
        match l {
            None => 0,
            Some(Lease::Read) => 1,
            Some(Lease::Write) => 2,
        }
    }

    pub fn decode(code: u8) -> Result<Option<Lease>> {
        match code {
            0 => Ok(None),
            1 => Ok(Some(Lease::Read)),
            2 => Ok(Some(Lease::Write)),
            n => Err(bad(format!("unknown lease type {n}"))),
        }
    }

    /// Take it again through fd `h.fd` (in place).
    pub fn restore(self, h: &Head) -> Result<()> {
        let kind = match self {
            Lease::Read => libc::F_RDLCK,
            Lease::Write => libc::F_WRLCK,
        };
        kfd::set_lease(h.fd, kind)
            .map_err(|e| fail(h, &format!("taking its {self:?} lease again"), e))
    }

    pub fn show(self) -> Value {
        json!(match self {
            Lease::Read => "read",
            Lease::Write => "write",
        })
    }
}
