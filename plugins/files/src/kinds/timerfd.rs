//! timerfd: clock, remaining time, interval and unread expirations (fdinfo); made again
//! with `timerfd_create`, armed with the remaining time (relative) and given back its
//! pending ticks (`TFD_IOC_SET_TICKS`).

use crate::files_capnp as s;
use crate::record::{bad, fail, Head, Probe, SETTABLE};
use serde_json::{json, Map, Value};
use spirit_core::Result;
use spirit_kmod::fd as kfd;
use std::os::fd::OwnedFd;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timerfd {
    pub clock_id: i32,
    pub ticks: u64,
    pub value_ns: u64,
    pub interval_ns: u64,
}

/// `(SEC, NSEC)` as printed in timerfd fdinfo, in nanoseconds.
fn timespec_ns(v: Option<&str>) -> Option<u64> {
    let inner = v?.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (s, ns) = inner.split_once(',')?;
    let s: u64 = s.trim().parse().ok()?;
    let ns: u64 = ns.trim().parse().ok()?;
    s.checked_mul(1_000_000_000)?.checked_add(ns)
}

impl Timerfd {
    pub fn dump(p: &Probe<'_>) -> Result<Option<Timerfd>> {
        let i = p.info;
        Ok(Some(Timerfd {
            clock_id: i
                .num("clockid", 10)
                .ok_or_else(|| p.unexpected("clockid"))? as i32,
            ticks: i.num("ticks", 10).unwrap_or(0),
            value_ns: timespec_ns(i.field("it_value")).ok_or_else(|| p.unexpected("it_value"))?,
            interval_ns: timespec_ns(i.field("it_interval"))
                .ok_or_else(|| p.unexpected("it_interval"))?,
        }))
    }

    pub fn encode(&self, mut b: s::timerfd::Builder<'_>) {
        b.set_clock_id(self.clock_id);
        b.set_ticks(self.ticks);
        b.set_value_ns(self.value_ns);
        b.set_interval_ns(self.interval_ns);
    }

    pub fn decode(r: capnp::Result<s::timerfd::Reader<'_>>) -> Result<Timerfd> {
        let r = r.map_err(|e| bad(format!("timerfd: {e}")))?;
        Ok(Timerfd {
            clock_id: r.get_clock_id(),
            ticks: r.get_ticks(),
            value_ns: r.get_value_ns(),
            interval_ns: r.get_interval_ns(),
        })
    }

    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let fd = kfd::timerfd_create(self.clock_id, libc::TFD_CLOEXEC)
            .map_err(|e| fail(h, &format!("timerfd on clock {}", self.clock_id), e))?;
        // Armed periodic timers never show 0 remaining for long; keep them armed.
        let value = if self.value_ns == 0 && self.interval_ns > 0 {
            1
        } else {
            self.value_ns
        };
        if value > 0 {
            kfd::timerfd_settime(&fd, value, self.interval_ns)
                .map_err(|e| fail(h, "arming the timer", e))?;
        }
        if self.ticks > 0 {
            kfd::timerfd_set_ticks(&fd, self.ticks)
                .map_err(|e| fail(h, &format!("setting {} pending expirations", self.ticks), e))?;
        }
        kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        m.insert("clock".into(), json!(self.clock_id));
        m.insert("remaining_ns".into(), json!(self.value_ns));
        m.insert("interval_ns".into(), json!(self.interval_ns));
        m.insert("ticks".into(), json!(self.ticks));
    }
}
