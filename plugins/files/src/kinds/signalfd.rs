//! signalfd: its signal mask (fdinfo), made again with `signalfd(2)`.

use crate::files_capnp as s;
use crate::record::{bad, fail, Head, Probe, SETTABLE};
use serde_json::{json, Map, Value};
use spirit_core::Result;
use spirit_kmod::fd as kfd;
use std::os::fd::OwnedFd;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signalfd {
    pub sigmask: u64,
}

impl Signalfd {
    pub fn dump(p: &Probe<'_>) -> Result<Option<Signalfd>> {
        Ok(Some(Signalfd {
            sigmask: p
                .info
                .num("sigmask", 16)
                .ok_or_else(|| p.unexpected("sigmask"))?,
        }))
    }

    pub fn encode(&self, mut b: s::signalfd::Builder<'_>) {
        b.set_sigmask(self.sigmask);
    }

    pub fn decode(r: capnp::Result<s::signalfd::Reader<'_>>) -> Result<Signalfd> {
        let r = r.map_err(|e| bad(format!("signalfd: {e}")))?;
        Ok(Signalfd {
            sigmask: r.get_sigmask(),
        })
    }

    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let fd = kfd::signalfd(self.sigmask, libc::SFD_CLOEXEC)
            .map_err(|e| fail(h, &format!("signalfd for mask {:#x}", self.sigmask), e))?;
        kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        m.insert("sigmask".into(), json!(self.sigmask));
    }
}
