//! Interval timers (`setitimer`; `alarm` is ITIMER_REAL): real, virtual and prof are
//! process-wide. Dump by injected `getitimer` (remaining time and interval), restore by
//! injected `setitimer` with the remaining time as it was at the checkpoint: the time
//! the process spent frozen or in the image does not count (no burst of missed ticks,
//! no lost interval; a real timer fires that much later in wall time).
//!
//! A periodic real timer whose SIGALRM is pending reads as 0 remaining: the kernel
//! re-arms it only when the signal is dequeued. It is kept, and re-armed at one
//! interval (its signal comes back through the pending queue): dropping it would stop
//! the ticks for good after the restore.

use serde_json::{json, Value};
use spirit_core::plugin::Remote;
use spirit_core::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimer {
    pub which: u8,
    pub interval_us: u64,
    pub value_us: u64,
}

const NAMES: [&str; 3] = ["real", "virtual", "prof"];
const ITIMER_REAL: u8 = 0;

fn to_us(sec: i64, usec: i64) -> u64 {
    (sec.max(0) as u64)
        .saturating_mul(1_000_000)
        .saturating_add(usec.max(0) as u64)
}

fn timeval(us: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&((us / 1_000_000) as i64).to_le_bytes());
    b[8..].copy_from_slice(&((us % 1_000_000) as i64).to_le_bytes());
    b
}

fn i64_at(b: &[u8], off: usize) -> i64 {
    i64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// The three interval timers (those armed or periodic).
pub fn dump(r: &mut Remote<'_>) -> Result<Vec<Itimer>> {
    let mut out = Vec::new();
    for which in 0u8..3 {
        r.syscall_ok(
            0,
            libc::SYS_getitimer,
            &[u64::from(which), r.scratch],
            "getitimer",
        )?;
        let b = r.read(r.scratch, 32)?;
        let t = Itimer {
            which,
            interval_us: to_us(i64_at(&b, 0), i64_at(&b, 8)),
            value_us: to_us(i64_at(&b, 16), i64_at(&b, 24)),
        };
        if t.value_us != 0 || t.interval_us != 0 {
            out.push(t);
        }
    }
    Ok(out)
}

/// Set every interval timer: the recorded ones armed, the others off (the restore
/// child may have inherited the restorer's).
pub fn restore(r: &mut Remote<'_>, timers: &[Itimer]) -> Result<()> {
    for which in 0u8..3 {
        let t = timers
            .iter()
            .find(|t| t.which == which)
            .copied()
            .unwrap_or_default();
        let value = if t.value_us == 0 && t.which == ITIMER_REAL {
            t.interval_us
        } else {
            t.value_us
        };
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&timeval(t.interval_us));
        b.extend_from_slice(&timeval(value));
        r.write(r.scratch, &b)?;
        r.syscall_ok(
            0,
            libc::SYS_setitimer,
            &[u64::from(which), r.scratch, 0],
            "setitimer",
        )?;
    }
    Ok(())
}

pub fn validate(t: &Itimer) -> Result<()> {
    if t.which > 2 || t.interval_us > i64::MAX as u64 || t.value_us > i64::MAX as u64 {
        return Err(Error::Restore(format!(
            "malformed signals section: interval timer {t:?}"
        )));
    }
    Ok(())
}

pub fn show(timers: &[Itimer]) -> Value {
    Value::Array(
        timers
            .iter()
            .map(|t| {
                json!({
                    "which": NAMES.get(t.which as usize).copied().unwrap_or("?"),
                    "remaining_us": t.value_us,
                    "interval_us": t.interval_us,
                })
            })
            .collect(),
    )
}
