//! The signals section: model and its Cap'n Proto encoding (`schema/signals.capnp`).

use crate::itimer::{self, Itimer};
use crate::posix_timer::{self, PosixTimer};
use crate::signals_capnp as s;
use capnp::message::Builder;
use serde::Serialize;
use spirit_core::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Action {
    pub signo: u8,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadSignals {
    pub tid: i32,
    pub blocked: u64,
    pub pending: Vec<Vec<u8>>,
    pub altstack_sp: u64,
    pub altstack_flags: i32,
    pub altstack_size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignalsSection {
    pub actions: Vec<Action>,
    pub shared_pending: Vec<Vec<u8>>,
    pub threads: Vec<ThreadSignals>,
    pub itimers: Vec<Itimer>,
    pub posix_timers: Vec<PosixTimer>,
}

fn bad(e: capnp::Error) -> Error {
    Error::Restore(format!("malformed signals section: {e}"))
}

impl SignalsSection {
    pub fn encode(&self) -> Vec<u8> {
        let mut msg = Builder::new_default();
        let mut b = msg.init_root::<s::signals::Builder>();
        let mut acts = b.reborrow().init_actions(self.actions.len() as u32);
        for (i, a) in self.actions.iter().enumerate() {
            let mut e = acts.reborrow().get(i as u32);
            e.set_signo(a.signo);
            e.set_handler(a.handler);
            e.set_flags(a.flags);
            e.set_restorer(a.restorer);
            e.set_mask(a.mask);
        }
        let mut sp = b
            .reborrow()
            .init_shared_pending(self.shared_pending.len() as u32);
        for (i, p) in self.shared_pending.iter().enumerate() {
            sp.set(i as u32, p);
        }
        let mut it = b.reborrow().init_itimers(self.itimers.len() as u32);
        for (i, t) in self.itimers.iter().enumerate() {
            let mut e = it.reborrow().get(i as u32);
            e.set_which(t.which);
            e.set_interval_us(t.interval_us);
            e.set_value_us(t.value_us);
        }
        let mut pt = b
            .reborrow()
            .init_posix_timers(self.posix_timers.len() as u32);
        for (i, t) in self.posix_timers.iter().enumerate() {
            let mut e = pt.reborrow().get(i as u32);
            e.set_id(t.id);
            e.set_clock(t.clock);
            e.set_signo(t.signo);
            e.set_sival(t.sival);
            e.set_notify(t.notify);
            e.set_target_tid(t.target_tid);
            e.set_interval_ns(t.interval_ns);
            e.set_value_ns(t.value_ns);
            e.set_overrun(t.overrun);
        }
        let mut th = b.init_threads(self.threads.len() as u32);
        for (i, t) in self.threads.iter().enumerate() {
            let mut e = th.reborrow().get(i as u32);
            e.set_tid(t.tid);
            e.set_blocked(t.blocked);
            e.set_altstack_sp(t.altstack_sp);
            e.set_altstack_flags(t.altstack_flags);
            e.set_altstack_size(t.altstack_size);
            let mut p = e.init_pending(t.pending.len() as u32);
            for (j, x) in t.pending.iter().enumerate() {
                p.set(j as u32, x);
            }
        }
        capnp::serialize::write_message_to_words(&msg)
    }

    pub fn decode(data: &[u8]) -> Result<SignalsSection> {
        // The traversal limit follows the section's size (not capnp's 8 Mi-word default,
        // which a list of zero-sized elements could amplify).
        let opts = spirit_core::codec::reader_options_for(data.len());
        let msg =
            capnp::serialize::read_message_from_flat_slice(&mut &data[..], opts).map_err(bad)?;
        let r = msg.get_root::<s::signals::Reader>().map_err(bad)?;
        let siginfo = |d: capnp::Result<capnp::data::Reader<'_>>| -> Result<Vec<u8>> {
            let d = d.map_err(bad)?;
            if d.len() != 128 {
                return Err(Error::Restore(format!(
                    "malformed signals section: siginfo of {} bytes",
                    d.len()
                )));
            }
            Ok(d.to_vec())
        };
        let mut out = SignalsSection::default();
        for a in r.get_actions().map_err(bad)?.iter() {
            if !(1..=64).contains(&a.get_signo()) {
                return Err(Error::Restore(format!(
                    "malformed signals section: signal {}",
                    a.get_signo()
                )));
            }
            out.actions.push(Action {
                signo: a.get_signo(),
                handler: a.get_handler(),
                flags: a.get_flags(),
                restorer: a.get_restorer(),
                mask: a.get_mask(),
            });
        }
        for p in r.get_shared_pending().map_err(bad)?.iter() {
            out.shared_pending.push(siginfo(p)?);
        }
        for t in r.get_threads().map_err(bad)?.iter() {
            let mut pending = Vec::new();
            for p in t.get_pending().map_err(bad)?.iter() {
                pending.push(siginfo(p)?);
            }
            out.threads.push(ThreadSignals {
                tid: t.get_tid(),
                blocked: t.get_blocked(),
                pending,
                altstack_sp: t.get_altstack_sp(),
                altstack_flags: t.get_altstack_flags(),
                altstack_size: t.get_altstack_size(),
            });
        }
        for t in r.get_itimers().map_err(bad)?.iter() {
            let t = Itimer {
                which: t.get_which(),
                interval_us: t.get_interval_us(),
                value_us: t.get_value_us(),
            };
            itimer::validate(&t)?;
            out.itimers.push(t);
        }
        for t in r.get_posix_timers().map_err(bad)?.iter() {
            let t = PosixTimer {
                id: t.get_id(),
                clock: t.get_clock(),
                signo: t.get_signo(),
                sival: t.get_sival(),
                notify: t.get_notify(),
                target_tid: t.get_target_tid(),
                interval_ns: t.get_interval_ns(),
                value_ns: t.get_value_ns(),
                overrun: t.get_overrun(),
            };
            posix_timer::validate(&t)?;
            out.posix_timers.push(t);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_round_trips() {
        let sec = SignalsSection {
            actions: vec![Action {
                signo: 10,
                handler: 0x1000,
                flags: 0x1400_0004,
                restorer: 0x2000,
                mask: 1 << 14,
            }],
            shared_pending: vec![vec![7; 128]],
            threads: vec![ThreadSignals {
                tid: 5,
                blocked: 3,
                pending: vec![],
                altstack_sp: 0x9000,
                altstack_flags: 0,
                altstack_size: 8192,
            }],
            itimers: vec![Itimer {
                which: 0,
                interval_us: 100_000,
                value_us: 42,
            }],
            posix_timers: vec![PosixTimer {
                id: 3,
                clock: 1,
                signo: 35,
                sival: 4242,
                notify: 4,
                target_tid: 5,
                interval_ns: 1,
                value_ns: 2,
                overrun: 1,
            }],
        };
        assert_eq!(SignalsSection::decode(&sec.encode()).unwrap(), sec);
        assert!(SignalsSection::decode(&[1, 2, 3]).is_err());
    }
}
