//! One process's restore, in its restore child: every open file description is
//! rebuilt once by its kind and parked at a high descriptor number (or, when shared
//! with other processes, taken from the number its creator parked it at, `tree.rs`),
//! then moved to its own number(s) with `dup3` (dup'ed fds get the same description
//! again); epoll instances come last, once the descriptors they watch are in place;
//! then signal owners (and O_ASYNC again at the final number), and locks and leases
//! after the parking descriptors are closed (closing any descriptor of a file drops the
//! process's POSIX locks on it).

use crate::kinds::pseudo::Pids;
use crate::kinds::{Built, Object, Payload};
use crate::record::{fail, park};
use crate::section::{FdRecord, FilesSection};
use spirit_core::Result;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};

/// Rebuild the descriptors of `sec`. `shared` maps the fds whose open file description
/// other processes of the tree share to the number it was parked at by their common
/// ancestor; `inherited` lists every parked number this process inherited, closed once
/// its own descriptors are in place.
pub fn restore(
    sec: &FilesSection,
    shared: &HashMap<i32, i32>,
    inherited: &[i32],
    pids: &Pids,
) -> Result<Vec<i32>> {
    let base = sec.fds.iter().map(|f| f.fd()).max().unwrap_or(0) + 1;
    let mut objects: HashMap<Object, (Built, &FdRecord)> = HashMap::new();
    let mut staged: HashMap<i32, OwnedFd> = HashMap::new();
    let owners = || sec.fds.iter().filter(|f| f.is_owner());
    for f in owners().filter(|f| !f.is_epoll() && !shared.contains_key(&f.fd())) {
        let fd = match f.payload.object() {
            Some(key) => {
                let (obj, _) = match objects.entry(key) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => v.insert((make_object(sec, f, key)?, f)),
                };
                obj.take(&f.head, &f.payload)?
            }
            None => f.payload.open(&f.head, pids)?,
        };
        staged.insert(f.fd(), park(fd, base)?);
    }
    // Memfd seals only once every description of it exists (a write seal would stop
    // reopening it for writing).
    for (obj, first) in objects.values() {
        if let Payload::Memfd(m) = &first.payload {
            obj.seal(&first.head, m.seals)?;
        }
    }
    drop(objects);
    let place = |f: &FdRecord, src: i32| -> Result<()> {
        let flags = if f.head.cloexec {
            nix::fcntl::OFlag::O_CLOEXEC
        } else {
            nix::fcntl::OFlag::empty()
        };
        nix::unistd::dup3(src, f.fd(), flags).map_err(|e| {
            if shared.get(&f.fd()) == Some(&src) {
                fail(
                    &f.head,
                    &format!("dup3 of the description shared with other processes of the tree, which should have been inherited at descriptor {src}"),
                    e,
                )
            } else {
                fail(&f.head, "dup3 into place", e)
            }
        })?;
        Ok(())
    };
    let owner_of = |f: &FdRecord| f.dup_of.unwrap_or(f.fd());
    for f in sec.fds.iter().filter(|f| !f.is_epoll()) {
        let src = match shared.get(&owner_of(f)) {
            Some(&slot) => slot,
            None => staged
                .get(&owner_of(f))
                .ok_or_else(|| {
                    fail(
                        &f.head,
                        "placing",
                        "its open file description was not rebuilt",
                    )
                })?
                .as_raw_fd(),
        };
        place(f, src)?;
    }
    drop(staged);
    for &slot in inherited {
        let _ = nix::unistd::close(slot);
    }
    // Epoll instances, each once everything it watches is in place (an epoll set may
    // watch another).
    let mut pending: Vec<(&FdRecord, &crate::kinds::epoll::Epoll)> = owners()
        .filter_map(|f| match &f.payload {
            Payload::Epoll(e) => Some((f, e)),
            _ => None,
        })
        .collect();
    let mut placed: HashSet<i32> = sec
        .fds
        .iter()
        .filter(|f| !f.is_epoll())
        .map(|f| f.fd())
        .collect();
    while !pending.is_empty() {
        let Some(i) = pending.iter().position(|(_, e)| e.ready(&placed)) else {
            return Err(fail(
                &pending[0].0.head,
                "rebuilding the epoll set",
                "it watches descriptors that are not in the image (or epoll sets watch each other in a cycle)",
            ));
        };
        let (f, e) = pending.remove(i);
        let ep = park(e.open(&f.head)?, base)?;
        for d in sec.fds.iter().filter(|d| owner_of(d) == f.fd()) {
            place(d, ep.as_raw_fd())?;
            placed.insert(d.fd());
        }
    }
    // Signal owners, on the descriptions in place; O_ASYNC set again at the final
    // number (the kernel reports the number it was set at as the signal's si_fd).
    for f in owners() {
        if let Some(o) = &f.owner {
            o.restore(&f.head, pids)?;
        }
        if f.head.flags as i32 & libc::O_ASYNC != 0 {
            crate::kinds::owner::rearm_async(&f.head)?;
        }
    }
    // Locks, now that no parking descriptor is left to close; leases last.
    for f in owners() {
        for l in &f.locks {
            l.take(&f.head)?;
        }
    }
    for f in owners() {
        if let Some(l) = f.lease {
            l.restore(&f.head)?;
        }
    }
    Ok(sec.fds.iter().map(|f| f.fd()).collect())
}

/// The object (pipe, deleted file, memfd) behind owner record `f`, made from every
/// record of it in this process: content from the one that has it, a pipe's capacity
/// and packet mode.
fn make_object(sec: &FilesSection, f: &FdRecord, key: Object) -> Result<Built> {
    let of_it = || {
        sec.fds
            .iter()
            .filter(move |o| o.payload.object() == Some(key))
    };
    if let Some(o) = of_it().find(|o| !o.payload.same_kind(&f.payload)) {
        return Err(fail(
            &o.head,
            "rebuilding",
            format!(
                "the same object as fd {} is listed as another kind of file",
                f.fd()
            ),
        ));
    }
    let data = of_it()
        .map(|o| o.payload.content())
        .find(|d| !d.is_empty())
        .unwrap_or(&[]);
    let packet = of_it().any(|o| o.head.flags as i32 & libc::O_DIRECT != 0);
    let capacity = match &f.payload {
        Payload::Pipe(p) => p.capacity,
        Payload::Fifo(_) => of_it()
            .filter_map(|o| match &o.payload {
                Payload::Fifo(x) => Some(x.capacity),
                _ => None,
            })
            .max()
            .unwrap_or(0),
        _ => 0,
    };
    Built::make(&f.payload, &f.head, data, capacity, packet)
}
