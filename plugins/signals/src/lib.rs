//! spirit's signals plugin: signal dispositions, per-thread blocked masks, pending
//! signals (each thread's queue and the process-wide one, with their siginfo),
//! alternate signal stacks, interval timers (`setitimer`, `alarm`) and POSIX timers.
//! One module per kind, each with its dump, restore and show: [`dispositions`],
//! [`pending`], [`altstack`], [`itimer`], [`posix_timer`]; [`section`] is the encoding
//! (`schema/signals.capnp`).
//!
//! Dump, while frozen: everything by injected syscalls in the process (`rt_sigaction`,
//! `sigaltstack`, `getitimer`, `timer_gettime`, `timer_getoverrun`), `/proc/PID/timers`,
//! and ptrace (`PTRACE_GETSIGMASK`, `PTRACE_PEEKSIGINFO`).
//! Restore, once memory is in place (`restore_remote`): dispositions, altstacks,
//! pending signals requeued, then the timers — created with their ids and armed with
//! the remaining time they had at the checkpoint. Arming is this plugin's last step and
//! the plugin is the last one of the pipeline's remote phase: after it only core's
//! security state (which makes no timer tick) and the registers remain, and every
//! signal stays blocked until the process is let go, so a tick cannot reach a
//! half-built process (an early tick just waits, pending). Each thread's final mask is
//! handed to `core`, which sets it last, with the registers.

#[allow(clippy::all, clippy::pedantic)]
mod signals_capnp {
    include!(concat!(env!("OUT_DIR"), "/signals_capnp.rs"));
}

pub mod altstack;
pub mod dispositions;
pub mod itimer;
pub mod pending;
pub mod posix_timer;
mod section;

use section::{SignalsSection, ThreadSignals};
use serde_json::json;
use spirit_core::plugin::{DumpCtx, Plugin, RestoreCtx, TreeState};
use spirit_core::{Error, Result};

pub struct SignalsPlugin;

/// 2: interval and POSIX timers (an older spirit refuses such a section rather than
/// dropping its timers).
const VERSION: u32 = 2;

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

pub(crate) fn signal_name(n: u64) -> String {
    nix::sys::signal::Signal::try_from(n as i32)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIGRT{}", n.saturating_sub(32)))
}

impl Plugin for SignalsPlugin {
    fn name(&self) -> &'static str {
        "signals"
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn dump(&self, _state: &mut TreeState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
        let r = &mut ctx.remote;
        let mut sec = SignalsSection {
            actions: dispositions::dump(r)?,
            ..Default::default()
        };
        sec.shared_pending = r.threads[0]
            .pending_signals(true)?
            .iter()
            .map(|s| s.to_vec())
            .collect();
        for i in 0..r.threads.len() {
            let (altstack_sp, altstack_flags, altstack_size) = altstack::dump(r, i)?;
            let t = &r.threads[i];
            sec.threads.push(ThreadSignals {
                tid: t.tid(),
                blocked: t.original_sigmask(),
                pending: t
                    .pending_signals(false)?
                    .iter()
                    .map(|s| s.to_vec())
                    .collect(),
                altstack_sp,
                altstack_flags,
                altstack_size,
            });
        }
        sec.itimers = itimer::dump(r)?;
        sec.posix_timers = posix_timer::dump(r)?;
        Ok(Some(sec.encode()))
    }

    fn restore_remote(
        &self,
        _state: &mut TreeState,
        ctx: &mut RestoreCtx<'_>,
        data: &[u8],
    ) -> Result<()> {
        let sec = SignalsSection::decode(data)?;
        if sec.threads.len() != ctx.remote.threads.len() {
            return Err(Error::Restore(format!(
                "signals section describes {} threads, the process has {}",
                sec.threads.len(),
                ctx.remote.threads.len()
            )));
        }
        let r = &mut ctx.remote;
        dispositions::restore(r, &sec.actions)?;
        // Ids as the process sees them (it may live in another pid namespace).
        let tgid = r.syscall_ok(0, libc::SYS_getpid, &[], "getpid")? as u64;
        let mut tids = Vec::with_capacity(sec.threads.len());
        for (i, t) in sec.threads.iter().enumerate() {
            altstack::restore(r, i, t)?;
            let tid = r.syscall_ok(i, libc::SYS_gettid, &[], "gettid")? as u64;
            tids.push((t.tid, tid as i32));
            pending::requeue(r, i, tgid, Some(tid), &t.pending)?;
            ctx.final_sigmask[i] = t.blocked;
        }
        pending::requeue(r, 0, tgid, None, &sec.shared_pending)?;
        // Timers last.
        itimer::restore(r, &sec.itimers)?;
        let tid_now = |old: i32| tids.iter().find(|(o, _)| *o == old).map(|(_, n)| *n);
        let orig_pid = sec.threads.first().map_or(0, |t| t.tid);
        posix_timer::restore(r, orig_pid, &sec.posix_timers, &tid_now, tgid as i32)?;
        Ok(())
    }

    fn show(&self, data: &[u8]) -> Result<serde_json::Value> {
        let sec = SignalsSection::decode(data)?;
        Ok(json!({
            "actions": dispositions::show(&sec.actions),
            "shared_pending": sec.shared_pending.iter().map(|i| pending::show(i)).collect::<Vec<_>>(),
            "threads": sec.threads.iter().map(|t| json!({
                "tid": t.tid,
                "blocked": dispositions::mask_names(t.blocked),
                "pending": t.pending.iter().map(|i| pending::show(i)).collect::<Vec<_>>(),
                "altstack": altstack::show(t),
            })).collect::<Vec<_>>(),
            "itimers": itimer::show(&sec.itimers),
            "posix_timers": posix_timer::show(&sec.posix_timers),
        }))
    }
}
