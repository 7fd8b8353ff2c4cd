//! eventfd: its count and semaphore mode (fdinfo), made again with `eventfd(2)`.

use crate::files_capnp as s;
use crate::record::{bad, fail, Head, Probe, SETTABLE};
use serde_json::{json, Map, Value};
use spirit_core::Result;
use spirit_kmod::fd as kfd;
use std::os::fd::OwnedFd;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Eventfd {
    pub count: u64,
    pub semaphore: bool,
}

impl Eventfd {
    pub fn dump(p: &Probe<'_>) -> Result<Option<Eventfd>> {
        Ok(Some(Eventfd {
            count: p
                .info
                .num("eventfd-count", 16)
                .ok_or_else(|| p.unexpected("eventfd-count"))?,
            semaphore: p.info.num("eventfd-semaphore", 10) == Some(1),
        }))
    }

    pub fn encode(&self, mut b: s::eventfd::Builder<'_>) {
        b.set_count(self.count);
        b.set_semaphore(self.semaphore);
    }

    pub fn decode(r: capnp::Result<s::eventfd::Reader<'_>>) -> Result<Eventfd> {
        let r = r.map_err(|e| bad(format!("eventfd: {e}")))?;
        Ok(Eventfd {
            count: r.get_count(),
            semaphore: r.get_semaphore(),
        })
    }

    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let sem = if self.semaphore {
            libc::EFD_SEMAPHORE
        } else {
            0
        };
        let fd = kfd::eventfd(self.count, libc::EFD_CLOEXEC | sem)
            .map_err(|e| fail(h, &format!("eventfd with count {}", self.count), e))?;
        kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        m.insert("count".into(), json!(self.count));
        m.insert("semaphore".into(), json!(self.semaphore));
    }
}
