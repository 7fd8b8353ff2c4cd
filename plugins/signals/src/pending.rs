//! Blocked masks and pending signals: each thread's own queue and the process-wide one,
//! every entry with its whole siginfo (real-time values, sender pid and uid, si_code,
//! a timer's si_overrun). Dump through ptrace (`PTRACE_GETSIGMASK`,
//! `PTRACE_PEEKSIGINFO`, which do not dequeue); restore by the process sending them to
//! itself (`rt_tgsigqueueinfo` / `rt_sigqueueinfo`, allowed for any si_code from
//! inside), in queue order; each thread's final mask goes to `core`, which sets it last,
//! with the registers.

use crate::signal_name;
use serde_json::{json, Value};
use spirit_core::plugin::Remote;
use spirit_core::Result;

pub fn signo_of(siginfo: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes(
        siginfo[..4].try_into().expect("4 bytes"),
    ))
}

/// Requeue `queue` to thread `i` (tid as the process sees it), or process-wide.
pub fn requeue(
    r: &mut Remote<'_>,
    i: usize,
    tgid: u64,
    tid: Option<u64>,
    queue: &[Vec<u8>],
) -> Result<()> {
    for info in queue {
        r.write(r.scratch, info)?;
        match tid {
            Some(tid) => r.syscall_ok(
                i,
                libc::SYS_rt_tgsigqueueinfo,
                &[tgid, tid, signo_of(info), r.scratch],
                "rt_tgsigqueueinfo",
            )?,
            None => r.syscall_ok(
                i,
                libc::SYS_rt_sigqueueinfo,
                &[tgid, signo_of(info), r.scratch],
                "rt_sigqueueinfo",
            )?,
        };
    }
    Ok(())
}

/// One queued signal: number, si_code, and for queued (sigqueue / timer) signals the
/// sender and value.
pub fn show(info: &[u8]) -> Value {
    let i32_at = |o: usize| i32::from_le_bytes(info[o..o + 4].try_into().expect("4 bytes"));
    let code = i32_at(8);
    let mut v = json!({ "signo": signal_name(signo_of(info)), "code": code });
    // SI_QUEUE (-1), SI_TIMER (-2), SI_MESGQ (-3): the union holds a value.
    if (-3..=-1).contains(&code) {
        let val = u64::from_le_bytes(info[24..32].try_into().expect("8 bytes"));
        v["value"] = json!(format!("{val:#x}"));
        if code == -1 || code == -3 {
            v["sender_pid"] = json!(i32_at(16));
            v["sender_uid"] = json!(i32_at(20) as u32);
        } else {
            v["timer_id"] = json!(i32_at(16));
            v["overrun"] = json!(i32_at(20));
        }
    }
    v
}
