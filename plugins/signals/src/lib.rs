//! spirit's signals plugin: signal dispositions, per-thread blocked masks, pending
//! signals (each thread's queue and the process-wide one, with their siginfo) and
//! alternate signal stacks. (Interval and POSIX timers and signalfd come later.)
//!
//! Dump, while frozen: dispositions by injected `rt_sigaction(sig, NULL, &old)`,
//! altstacks by injected `sigaltstack(NULL, &old)` per thread, masks and queues through
//! ptrace (`PTRACE_GETSIGMASK`, `PTRACE_PEEKSIGINFO`, which do not dequeue).
//! Restore, once memory is in place: `rt_sigaction` for every signal (the restore
//! child's own handlers must not survive), `sigaltstack` per thread, queued signals
//! re-sent by the process to itself (`rt_tgsigqueueinfo`/`rt_sigqueueinfo`, allowed for
//! any si_code from inside), and each thread's final mask handed to `core`, which sets
//! it last, with the registers.

#[allow(clippy::all, clippy::pedantic)]
mod signals_capnp {
    include!(concat!(env!("OUT_DIR"), "/signals_capnp.rs"));
}

mod section;

use section::{Action, SignalsSection, ThreadSignals};
use serde_json::json;
use spirit_core::plugin::{DumpCtx, Plugin, RestoreCtx, TreeState};
use spirit_core::{Error, Result};

pub struct SignalsPlugin;

const VERSION: u32 = 1;
const SS_DISABLE: i32 = 2;
const SS_ONSTACK: i32 = 1;

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn signo_of(siginfo: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes(
        siginfo[..4].try_into().expect("4 bytes"),
    ))
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
        let scratch = r.scratch;
        let mut sec = SignalsSection::default();
        for signo in (1u8..=64).filter(|&s| s != 9 && s != 19) {
            r.syscall_ok(
                0,
                libc::SYS_rt_sigaction,
                &[u64::from(signo), 0, scratch, 8],
                "rt_sigaction (read)",
            )?;
            let b = r.read(scratch, 32)?;
            sec.actions.push(Action {
                signo,
                handler: u64_at(&b, 0),
                flags: u64_at(&b, 8),
                restorer: u64_at(&b, 16),
                mask: u64_at(&b, 24),
            });
        }
        sec.shared_pending = r.threads[0]
            .pending_signals(true)?
            .iter()
            .map(|s| s.to_vec())
            .collect();
        for i in 0..r.threads.len() {
            r.syscall_ok(
                i,
                libc::SYS_sigaltstack,
                &[0, scratch],
                "sigaltstack (read)",
            )?;
            let b = r.read(scratch, 24)?;
            let t = &r.threads[i];
            sec.threads.push(ThreadSignals {
                tid: t.tid(),
                blocked: t.original_sigmask(),
                pending: t
                    .pending_signals(false)?
                    .iter()
                    .map(|s| s.to_vec())
                    .collect(),
                altstack_sp: u64_at(&b, 0),
                altstack_flags: i32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
                altstack_size: u64_at(&b, 16),
            });
        }
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
        let scratch = r.scratch;
        for a in &sec.actions {
            let bytes: Vec<u8> = [a.handler, a.flags, a.restorer, a.mask]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            r.write(scratch, &bytes)?;
            r.syscall_ok(
                0,
                libc::SYS_rt_sigaction,
                &[u64::from(a.signo), scratch, 0, 8],
                "rt_sigaction",
            )?;
        }
        // Ids as the process sees them (it may live in another pid namespace).
        let tgid = r.syscall_ok(0, libc::SYS_getpid, &[], "getpid")? as u64;
        for (i, t) in sec.threads.iter().enumerate() {
            // SS_ONSTACK is the kernel's observation (the thread was running on the
            // altstack), not a flag one can set; the registers bring that back.
            let disabled = t.altstack_flags & SS_DISABLE != 0;
            let flags = if disabled {
                SS_DISABLE
            } else {
                t.altstack_flags & !SS_ONSTACK & !SS_DISABLE
            };
            let mut b = Vec::with_capacity(24);
            b.extend_from_slice(&(if disabled { 0 } else { t.altstack_sp }).to_le_bytes());
            b.extend_from_slice(&(flags as i64).to_le_bytes());
            b.extend_from_slice(&(if disabled { 0 } else { t.altstack_size }).to_le_bytes());
            r.write(scratch, &b)?;
            r.syscall_ok(i, libc::SYS_sigaltstack, &[scratch, 0], "sigaltstack")?;
            let tid = r.syscall_ok(i, libc::SYS_gettid, &[], "gettid")? as u64;
            for info in &t.pending {
                r.write(scratch, info)?;
                r.syscall_ok(
                    i,
                    libc::SYS_rt_tgsigqueueinfo,
                    &[tgid, tid, signo_of(info), scratch],
                    "rt_tgsigqueueinfo",
                )?;
            }
            ctx.final_sigmask[i] = t.blocked;
        }
        for info in &sec.shared_pending {
            r.write(scratch, info)?;
            r.syscall_ok(
                0,
                libc::SYS_rt_sigqueueinfo,
                &[tgid, signo_of(info), scratch],
                "rt_sigqueueinfo",
            )?;
        }
        Ok(())
    }

    fn show(&self, data: &[u8]) -> Result<serde_json::Value> {
        let sec = SignalsSection::decode(data)?;
        let name = |n: u64| {
            nix::sys::signal::Signal::try_from(n as i32)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("SIGRT{}", n.saturating_sub(32)))
        };
        let mask = |m: u64| -> Vec<String> {
            (1..=64)
                .filter(|b| m & (1u64 << (b - 1)) != 0)
                .map(name)
                .collect()
        };
        let info = |i: &Vec<u8>| json!({ "signo": name(signo_of(i)), "code": i32::from_le_bytes(i[8..12].try_into().expect("4 bytes")) });
        Ok(json!({
            "actions": sec.actions.iter().filter(|a| *a != &Action { signo: a.signo, ..Default::default() }).map(|a| json!({
                "signal": name(u64::from(a.signo)),
                "handler": match a.handler { 0 => "SIG_DFL".to_string(), 1 => "SIG_IGN".to_string(), h => format!("{h:#x}") },
                "flags": format!("{:#x}", a.flags),
                "mask": mask(a.mask),
            })).collect::<Vec<_>>(),
            "shared_pending": sec.shared_pending.iter().map(info).collect::<Vec<_>>(),
            "threads": sec.threads.iter().map(|t| json!({
                "tid": t.tid,
                "blocked": mask(t.blocked),
                "pending": t.pending.iter().map(info).collect::<Vec<_>>(),
                "altstack": if t.altstack_flags & SS_DISABLE != 0 { json!("disabled") } else {
                    json!({"sp": format!("{:#x}", t.altstack_sp), "size": t.altstack_size, "flags": t.altstack_flags})
                },
            })).collect::<Vec<_>>(),
        }))
    }
}
