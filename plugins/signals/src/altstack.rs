//! Alternate signal stacks, per thread: injected `sigaltstack(NULL, &old)` at dump,
//! `sigaltstack(&ss, NULL)` at restore (while the injection's stack pointer is on the
//! syscall page, never on the altstack, so no EPERM).

use crate::section::ThreadSignals;
use crate::u64_at;
use serde_json::{json, Value};
use spirit_core::plugin::Remote;
use spirit_core::Result;

const SS_DISABLE: i32 = 2;
const SS_ONSTACK: i32 = 1;

/// (sp, flags, size) of thread `i`.
pub fn dump(r: &mut Remote<'_>, i: usize) -> Result<(u64, i32, u64)> {
    r.syscall_ok(
        i,
        libc::SYS_sigaltstack,
        &[0, r.scratch],
        "sigaltstack (read)",
    )?;
    let b = r.read(r.scratch, 24)?;
    Ok((
        u64_at(&b, 0),
        i32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
        u64_at(&b, 16),
    ))
}

pub fn restore(r: &mut Remote<'_>, i: usize, t: &ThreadSignals) -> Result<()> {
    // SS_ONSTACK is the kernel's observation (the thread was running on the altstack),
    // not a flag one can set; the registers bring that back.
    let disabled = t.altstack_flags & SS_DISABLE != 0;
    let flags = if disabled {
        SS_DISABLE
    } else {
        t.altstack_flags & !SS_ONSTACK & !SS_DISABLE
    };
    let mut b = Vec::with_capacity(24);
    b.extend_from_slice(&(if disabled { 0 } else { t.altstack_sp }).to_le_bytes());
    b.extend_from_slice(&i64::from(flags).to_le_bytes());
    b.extend_from_slice(&(if disabled { 0 } else { t.altstack_size }).to_le_bytes());
    r.write(r.scratch, &b)?;
    r.syscall_ok(i, libc::SYS_sigaltstack, &[r.scratch, 0], "sigaltstack")?;
    Ok(())
}

pub fn show(t: &ThreadSignals) -> Value {
    if t.altstack_flags & SS_DISABLE != 0 {
        json!("disabled")
    } else {
        json!({"sp": format!("{:#x}", t.altstack_sp), "size": t.altstack_size, "flags": t.altstack_flags})
    }
}
