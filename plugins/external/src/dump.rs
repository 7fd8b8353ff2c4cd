//! Checkpoint through an external plugin: each descriptor of the process that the
//! plugin claims (manifest and `Describe` both), not yet claimed by another plugin, is
//! copied out of the frozen process with `pidfd_getfd` and handed to the plugin's
//! `Dump`; its answer becomes one record of the process's section. A descriptor on an
//! object the plugin already has from another descriptor of the tree (the same inode:
//! a queue inherited across fork, or opened twice) is not handed over again: its
//! record names the first one, and whether it shares its open file description
//! (`kcmp`), so the restore makes one object, not two look-alikes. The plugin is
//! started on the first such descriptor of the tree, not before (a tree without any
//! costs nothing), and ended with the dump.

use crate::manifest::Manifest;
use crate::peer::Peer;
use crate::section::{self, FdRecord, Share};
use spirit_core::plugin::{DumpCtx, FdEntry};
use spirit_core::{Error, Result};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use zbus::zvariant::Value;

/// Per dump: the plugin, once started, and the descriptors it took so far in the tree.
#[derive(Default)]
pub struct DumpState {
    pub peer: Option<Peer>,
    seen: Vec<Seen>,
}

/// A descriptor taken earlier in this dump: the object it is on (device, inode).
struct Seen {
    dev: u64,
    ino: u64,
    pid: i32,
    fd: i32,
}

/// The earlier descriptor of the tree on the same object as `e` of `pid`, preferring one
/// sharing its open file description.
fn shared_with(seen: &[Seen], pid: i32, e: &FdEntry) -> Result<Option<Share>> {
    let mut first = None;
    for s in seen.iter().filter(|s| (s.dev, s.ino) == (e.dev, e.ino)) {
        if spirit_kmod::fd::kcmp_same_file(s.pid, s.fd, pid, e.fd)? {
            return Ok(Some(Share {
                pid: s.pid,
                fd: s.fd,
                same_description: true,
            }));
        }
        first = first.or(Some(Share {
            pid: s.pid,
            fd: s.fd,
            same_description: false,
        }));
    }
    Ok(first)
}

fn failed(m: &Manifest, pid: i32, e: &FdEntry, msg: impl std::fmt::Display) -> Error {
    Error::Dump {
        pid,
        msg: format!(
            "external plugin '{}' ({}) on fd {} ({}, {}): {msg}",
            m.name,
            m.exec.display(),
            e.fd,
            e.kind.describe(),
            e.target
        ),
    }
}

fn facts(e: &FdEntry) -> HashMap<&'static str, Value<'_>> {
    HashMap::from([
        ("target", Value::from(e.target.as_str())),
        ("flags", Value::from(e.flags)),
        ("pos", Value::from(e.pos)),
        ("fs_magic", Value::from(e.fs_magic as u64)),
        ("mode", Value::from(e.mode)),
        ("rdev", Value::from(e.rdev)),
    ])
}

pub fn dump(m: &Manifest, st: &mut DumpState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
    let pid = ctx.remote.pid;
    let mut recs = Vec::new();
    let mut pidfd: Option<OwnedFd> = None;
    for e in ctx
        .fds
        .iter_mut()
        .filter(|e| !e.claimed && m.claims.matches(e))
    {
        let peer = match &mut st.peer {
            Some(p) => p,
            none => none.insert(Peer::start(m).map_err(|msg| failed(m, pid, e, msg))?),
        };
        if !peer.described.claims.matches(e) {
            continue;
        }
        let share = shared_with(&st.seen, pid, e)?;
        st.seen.push(Seen {
            dev: e.dev,
            ino: e.ino,
            pid,
            fd: e.fd,
        });
        let mut rec = FdRecord {
            fd: e.fd,
            flags: e.flags,
            cloexec: e.flags & libc::O_CLOEXEC as u32 != 0,
            fs_magic: e.fs_magic,
            file_type: e.mode & libc::S_IFMT,
            target: e.target.clone(),
            data: Vec::new(),
            pos: e.pos,
            share,
        };
        e.claimed = true;
        if share.is_some() {
            recs.push(rec);
            continue;
        }
        let pfd = match &mut pidfd {
            Some(p) => p,
            none => none.insert(spirit_kmod::fd::pidfd_open(pid)?),
        };
        let copy = spirit_kmod::fd::pidfd_getfd(pfd, e.fd)?;
        rec.data = peer
            .dump(pid, e.fd, &copy, facts(e))
            .map_err(|msg| failed(m, pid, e, msg))?;
        recs.push(rec);
    }
    Ok((!recs.is_empty()).then(|| section::encode(&recs)))
}
