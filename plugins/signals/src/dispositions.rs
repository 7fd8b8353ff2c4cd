//! Signal dispositions: handler, flags (SA_RESTART, SA_ONSTACK, SA_NODEFER,
//! SA_RESETHAND, SA_SIGINFO... kept verbatim), restorer and mask of every signal but
//! SIGKILL and SIGSTOP. Dump by injected `rt_sigaction(sig, NULL, &old)`, restore by
//! `rt_sigaction(sig, &act, NULL)` for every signal (the restore child's own handlers
//! must not survive). `sa_restorer` is written as it was: the C library is mapped at the
//! same address, so its `__restore_rt` stays valid.

use crate::section::Action;
use crate::{signal_name, u64_at};
use serde_json::{json, Value};
use spirit_core::plugin::Remote;
use spirit_core::Result;

pub fn dump(r: &mut Remote<'_>) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    for signo in (1u8..=64).filter(|&s| s != 9 && s != 19) {
        r.syscall_ok(
            0,
            libc::SYS_rt_sigaction,
            &[u64::from(signo), 0, r.scratch, 8],
            "rt_sigaction (read)",
        )?;
        let b = r.read(r.scratch, 32)?;
        out.push(Action {
            signo,
            handler: u64_at(&b, 0),
            flags: u64_at(&b, 8),
            restorer: u64_at(&b, 16),
            mask: u64_at(&b, 24),
        });
    }
    Ok(out)
}

pub fn restore(r: &mut Remote<'_>, actions: &[Action]) -> Result<()> {
    for a in actions {
        let bytes: Vec<u8> = [a.handler, a.flags, a.restorer, a.mask]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        r.write(r.scratch, &bytes)?;
        r.syscall_ok(
            0,
            libc::SYS_rt_sigaction,
            &[u64::from(a.signo), r.scratch, 0, 8],
            "rt_sigaction",
        )?;
    }
    Ok(())
}

const FLAGS: [(u64, &str); 7] = [
    (libc::SA_NOCLDSTOP as u64, "SA_NOCLDSTOP"),
    (libc::SA_NOCLDWAIT as u64, "SA_NOCLDWAIT"),
    (libc::SA_SIGINFO as u64, "SA_SIGINFO"),
    (libc::SA_ONSTACK as u64, "SA_ONSTACK"),
    (libc::SA_RESTART as u64, "SA_RESTART"),
    (libc::SA_NODEFER as u64, "SA_NODEFER"),
    (libc::SA_RESETHAND as u64, "SA_RESETHAND"),
];

/// A signal mask as signal names.
pub fn mask_names(m: u64) -> Vec<String> {
    (1..=64)
        .filter(|b| m & (1u64 << (b - 1)) != 0)
        .map(signal_name)
        .collect()
}

/// Every action that is not the default one.
pub fn show(actions: &[Action]) -> Value {
    Value::Array(
        actions
            .iter()
            .filter(|a| {
                **a != Action {
                    signo: a.signo,
                    ..Default::default()
                }
            })
            .map(|a| {
                json!({
                    "signal": signal_name(u64::from(a.signo)),
                    "handler": match a.handler { 0 => "SIG_DFL".to_string(), 1 => "SIG_IGN".to_string(), h => format!("{h:#x}") },
                    "flags": format!("{:#x}", a.flags),
                    "flag_names": FLAGS.iter().filter(|(f, _)| a.flags & f != 0).map(|(_, n)| *n).collect::<Vec<_>>(),
                    "mask": mask_names(a.mask),
                })
            })
            .collect(),
    )
}
