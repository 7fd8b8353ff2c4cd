//! POSIX timers (`timer_create`). Dump: ids, clock and sigevent from
//! `/proc/PID/timers`, remaining time and interval by injected `timer_gettime`, the
//! overrun count by `timer_getoverrun`. Restore: each timer is created again with its
//! id (`prctl(PR_TIMER_CREATE_RESTORE_IDS)` on while they are created, off again before
//! anything else runs), its clock and sigevent (a SIGEV_THREAD_ID target follows its
//! thread to its new tid), then armed with the remaining time as it was at the
//! checkpoint (relative: the time spent frozen does not count, so no burst of missed
//! expiries and no lost interval). The overrun count cannot be set (the kernel has no
//! call for it): it is shown. A timer signal pending at the checkpoint is requeued with
//! its siginfo (timer id, value) as a signal of its own; the expiries the kernel counted
//! while it waited are lost (they reach `si_overrun` only at delivery).

use serde_json::{json, Value};
use spirit_core::plugin::Remote;
use spirit_core::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    pub signo: i32,
    pub sival: u64,
    pub notify: i32,
    pub target_tid: i32,
    pub interval_ns: u64,
    pub value_ns: u64,
    pub overrun: i32,
}

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
/// Per-thread CPU clock bit of a clockid (CPUCLOCK_PERTHREAD_MASK).
const CPUCLOCK_PERTHREAD: i32 = 4;

/// Parse `/proc/PID/timers`.
pub fn parse(pid: i32, text: &str) -> Result<Vec<PosixTimer>> {
    let bad = |l: &str| Error::Dump {
        pid,
        msg: format!("unreadable line in /proc/{pid}/timers: {l:?}"),
    };
    let mut out: Vec<PosixTimer> = Vec::new();
    for l in text.lines() {
        let Some((key, val)) = l.split_once(':') else {
            continue;
        };
        let val = val.trim();
        if key == "ID" {
            out.push(PosixTimer {
                id: val.parse().map_err(|_| bad(l))?,
                ..Default::default()
            });
            continue;
        }
        let Some(t) = out.last_mut() else {
            return Err(bad(l));
        };
        match key {
            "signal" => {
                let (sig, ptr) = val.split_once('/').ok_or_else(|| bad(l))?;
                t.signo = sig.parse().map_err(|_| bad(l))?;
                t.sival = u64::from_str_radix(ptr, 16).map_err(|_| bad(l))?;
            }
            "notify" => {
                let (kind, target) = val.split_once('/').ok_or_else(|| bad(l))?;
                t.notify = match kind {
                    "signal" => SIGEV_SIGNAL,
                    "none" => SIGEV_NONE,
                    "thread" => SIGEV_THREAD,
                    _ => return Err(bad(l)),
                };
                let (how, id) = target.split_once('.').ok_or_else(|| bad(l))?;
                if how == "tid" {
                    t.notify |= SIGEV_THREAD_ID;
                    t.target_tid = id.parse().map_err(|_| bad(l))?;
                }
            }
            "ClockID" => t.clock = val.parse().map_err(|_| bad(l))?,
            _ => {}
        }
    }
    out.sort_by_key(|t| t.id);
    Ok(out)
}

fn ns_at(b: &[u8], off: usize) -> u64 {
    let sec = i64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"));
    let nsec = i64::from_le_bytes(b[off + 8..off + 16].try_into().expect("8 bytes"));
    (sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec.max(0) as u64)
}

fn timespec(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
    b[8..].copy_from_slice(&((ns % 1_000_000_000) as i64).to_le_bytes());
    b
}

/// The process's POSIX timers with their remaining time, interval and overrun.
pub fn dump(r: &mut Remote<'_>) -> Result<Vec<PosixTimer>> {
    let path = format!("/proc/{}/timers", r.pid);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Dump {
        pid: r.pid,
        msg: format!("reading {path}: {e}"),
    })?;
    let mut timers = parse(r.pid, &text)?;
    for t in &mut timers {
        r.syscall_ok(
            0,
            libc::SYS_timer_gettime,
            &[t.id as u64, r.scratch],
            "timer_gettime",
        )?;
        let b = r.read(r.scratch, 32)?;
        t.interval_ns = ns_at(&b, 0);
        t.value_ns = ns_at(&b, 16);
        t.overrun = r.syscall_ok(
            0,
            libc::SYS_timer_getoverrun,
            &[t.id as u64],
            "timer_getoverrun",
        )? as i32;
    }
    Ok(timers)
}

/// A tid (as the dump saw it) → the same thread's tid now, as the process sees it.
pub type TidMap<'a> = &'a dyn Fn(i32) -> Option<i32>;

/// The clock with a CPU clock's pid or tid mapped to the restored process.
fn clock_now(pid: i32, t: &PosixTimer, tid_now: TidMap<'_>, pid_now: i32) -> Result<i32> {
    if t.clock >= 0 {
        return Ok(t.clock);
    }
    let owner = !(t.clock >> 3);
    if owner == 0 {
        return Ok(t.clock);
    }
    let new = if t.clock & CPUCLOCK_PERTHREAD != 0 {
        tid_now(owner)
    } else {
        (owner == pid).then_some(pid_now)
    }
    .ok_or_else(|| {
        Error::Restore(format!(
            "process {pid}: POSIX timer {} counts the CPU time of task {owner}, which is not part of the process",
            t.id
        ))
    })?;
    Ok((!new << 3) | (t.clock & 7))
}

/// Create every timer with its id, then arm them.
pub fn restore(
    r: &mut Remote<'_>,
    orig_pid: i32,
    timers: &[PosixTimer],
    tid_now: TidMap<'_>,
    pid_now: i32,
) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let ids_kept = r.syscall(
        0,
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0],
    )? == 0;
    let made = create_all(r, orig_pid, timers, tid_now, pid_now, ids_kept);
    if ids_kept {
        r.syscall_ok(
            0,
            libc::SYS_prctl,
            &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0],
            "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)",
        )?;
    }
    made?;
    for t in timers.iter().filter(|t| t.value_ns != 0) {
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&timespec(t.interval_ns));
        b.extend_from_slice(&timespec(t.value_ns));
        r.write(r.scratch, &b)?;
        r.syscall_ok(
            0,
            libc::SYS_timer_settime,
            &[t.id as u64, 0, r.scratch, 0],
            "timer_settime",
        )?;
    }
    Ok(())
}

fn create_all(
    r: &mut Remote<'_>,
    orig_pid: i32,
    timers: &[PosixTimer],
    tid_now: TidMap<'_>,
    pid_now: i32,
    ids_kept: bool,
) -> Result<()> {
    for t in timers {
        let mut sev = [0u8; 64];
        sev[..8].copy_from_slice(&t.sival.to_le_bytes());
        sev[8..12].copy_from_slice(&t.signo.to_le_bytes());
        sev[12..16].copy_from_slice(&t.notify.to_le_bytes());
        if t.notify & SIGEV_THREAD_ID != 0 {
            let tid = tid_now(t.target_tid).ok_or_else(|| {
                Error::Restore(format!(
                    "process {orig_pid}: POSIX timer {} signals thread {}, which is not in the image",
                    t.id, t.target_tid
                ))
            })?;
            sev[16..20].copy_from_slice(&tid.to_le_bytes());
        }
        r.write(r.scratch, &sev)?;
        r.write(r.scratch + 64, &t.id.to_le_bytes())?;
        let clock = clock_now(orig_pid, t, tid_now, pid_now)?;
        r.syscall_ok(
            0,
            libc::SYS_timer_create,
            &[clock as u32 as u64, r.scratch, r.scratch + 64],
            "timer_create",
        )?;
        let got = i32::from_le_bytes(r.read(r.scratch + 64, 4)?.try_into().expect("4 bytes"));
        if got != t.id {
            return Err(Error::Restore(format!(
                "process {orig_pid}: POSIX timer {} came back as timer {got}{}",
                t.id,
                if ids_kept {
                    ""
                } else {
                    " (this kernel has no PR_TIMER_CREATE_RESTORE_IDS to keep ids)"
                }
            )));
        }
    }
    Ok(())
}

pub fn validate(t: &PosixTimer) -> Result<()> {
    let kind = t.notify & !SIGEV_THREAD_ID;
    let ok = t.id >= 0
        && (0..=64).contains(&t.signo)
        && matches!(kind, SIGEV_SIGNAL | SIGEV_NONE | SIGEV_THREAD)
        && t.interval_ns <= i64::MAX as u64
        && t.value_ns <= i64::MAX as u64;
    if !ok {
        return Err(Error::Restore(format!(
            "malformed signals section: POSIX timer {t:?}"
        )));
    }
    Ok(())
}

pub fn show(timers: &[PosixTimer]) -> Value {
    Value::Array(
        timers
            .iter()
            .map(|t| {
                let kind = match t.notify & !SIGEV_THREAD_ID {
                    SIGEV_NONE => "none",
                    SIGEV_THREAD => "thread",
                    _ => "signal",
                };
                json!({
                    "id": t.id,
                    "clock": t.clock,
                    "notify": kind,
                    "thread_id": (t.notify & SIGEV_THREAD_ID != 0).then_some(t.target_tid),
                    "signo": t.signo,
                    "sival": format!("{:#x}", t.sival),
                    "remaining_ns": t.value_ns,
                    "interval_ns": t.interval_ns,
                    "overrun": t.overrun,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_timers_are_parsed() {
        let text = "ID: 2\nsignal: 35/00000000000010e2\nnotify: signal/tid.77\nClockID: 1\nID: 1\nsignal: 14/0000000000000000\nnotify: signal/pid.70\nClockID: 0\n";
        let t = parse(70, text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].id, t[0].signo, t[0].notify, t[0].clock),
            (1, 14, 0, 0)
        );
        assert_eq!(
            (
                t[1].id,
                t[1].signo,
                t[1].sival,
                t[1].notify,
                t[1].target_tid
            ),
            (2, 35, 0x10e2, 4, 77)
        );
        assert!(parse(70, "signal: 1/0\n").is_err());
    }
}
