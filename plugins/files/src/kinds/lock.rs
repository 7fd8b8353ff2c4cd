//! flock, POSIX and OFD locks held through an open file description (`lock:` lines of
//! its fdinfo). flock and OFD locks belong to the description, POSIX locks to the
//! process (only this process's are kept). Taken again at the very end of a process's
//! restore (closing any descriptor of a file drops the process's POSIX locks on it).
//! Leases are kept by `owner.rs`, except one being broken; delegations are refused
//! naming the fd.

use crate::files_capnp as s;
use crate::record::{bad, fail, Head, Probe};
use serde::Serialize;
use serde_json::Value;
use spirit_core::Result;
use spirit_kmod::fd as kfd;

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

impl Lock {
    /// The locks held through the description of `p`.
    pub fn dump(p: &Probe<'_>) -> Result<Vec<Lock>> {
        let mut out = Vec::new();
        for l in p.info.lines("lock:") {
            // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 8 {
                continue;
            }
            let kind = match w[1] {
                "FLOCK" => LockKind::Flock,
                "POSIX" => LockKind::Posix,
                "OFDLCK" => LockKind::Ofd,
                // Leases are read with F_GETLEASE (`owner.rs`), unless being broken.
                "LEASE" if w[2] == "ACTIVE" => continue,
                "LEASE" => return Err(p.refuse("a file whose lease is being broken".into())),
                other => {
                    return Err(p.refuse(format!(
                        "a file holding a {} (lease or delegation)",
                        other.to_lowercase()
                    )))
                }
            };
            if kind == LockKind::Posix && w[4].parse::<i32>().ok() != Some(p.pid) {
                continue;
            }
            let write = match w[3] {
                "WRITE" => true,
                "READ" => false,
                _ => continue,
            };
            let start: u64 = w[6].parse().unwrap_or(0);
            let len = match w[7] {
                "EOF" => 0,
                end => end
                    .parse::<u64>()
                    .map_or(0, |e| e.saturating_add(1).saturating_sub(start)),
            };
            out.push(Lock {
                kind,
                write,
                start,
                len,
            });
        }
        Ok(out)
    }

    pub fn encode(&self, mut b: s::lock::Builder<'_>) {
        b.set_kind(match self.kind {
            LockKind::Flock => s::LockKind::Flock,
            LockKind::Posix => s::LockKind::Posix,
            LockKind::Ofd => s::LockKind::Ofd,
        });
        b.set_write(self.write);
        b.set_start(self.start);
        b.set_len(self.len);
    }

    pub fn decode(r: s::lock::Reader<'_>) -> Result<Lock> {
        Ok(Lock {
            kind: match r.get_kind().map_err(|e| bad(format!("lock kind: {e}")))? {
                s::LockKind::Flock => LockKind::Flock,
                s::LockKind::Posix => LockKind::Posix,
                s::LockKind::Ofd => LockKind::Ofd,
            },
            write: r.get_write(),
            start: r.get_start(),
            len: r.get_len(),
        })
    }

    /// Take the lock again through fd `h.fd`, now in place.
    pub fn take(&self, h: &Head) -> Result<()> {
        let res = match self.kind {
            LockKind::Flock => kfd::flock(
                h.fd,
                libc::LOCK_NB
                    | if self.write {
                        libc::LOCK_EX
                    } else {
                        libc::LOCK_SH
                    },
            ),
            LockKind::Posix => {
                kfd::range_lock(h.fd, libc::F_SETLK, self.write, self.start, self.len)
            }
            LockKind::Ofd => {
                kfd::range_lock(h.fd, libc::F_OFD_SETLK, self.write, self.start, self.len)
            }
        };
        res.map_err(|e| {
            fail(
                h,
                &format!(
                    "taking its {:?} {} lock again (is the checkpointed process, or another, still holding it?)",
                    self.kind,
                    if self.write { "write" } else { "read" }
                ),
                e,
            )
        })
    }

    pub fn show(locks: &[Lock]) -> Value {
        serde_json::to_value(locks).unwrap_or(Value::Null)
    }
}
