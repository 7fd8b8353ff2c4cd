//! A process's security state, per thread: capabilities (effective, permitted,
//! inheritable, bounding, ambient), securebits, no_new_privs, seccomp (strict mode, or
//! filters with their flags) and syscall user dispatch. Dump, restore and show side by
//! side.
//!
//! Dump, while frozen: capabilities and NoNewPrivs from `/proc/PID/task/TID/status`,
//! securebits by an injected `prctl(PR_GET_SECUREBITS)`, filters by
//! `PTRACE_SECCOMP_GET_FILTER` (index 0 is the oldest) and their flags by
//! `PTRACE_SECCOMP_GET_METADATA` (both need CAP_SYS_ADMIN: without it a filtered process
//! is refused, never dumped without its filters). A thread under seccomp has its
//! filters suspended for the dump's own injected syscalls (`PTRACE_O_SUSPEND_SECCOMP`,
//! see `dump::freeze`).
//!
//! Restore, after every plugin's remote step (timers included), just before the
//! registers: the restorer's privileges are used while they last, then given up —
//! inheritable set, bounding set drops, ambient raises → no_new_privs (only where the
//! thread had it) → seccomp filters in index order (the filters every thread shares
//! once, from the main thread with TSYNC, so the threads keep one filter tree; then each
//! thread's own) → securebits → the final capability sets → strict mode. The filters
//! are installed while the thread still holds CAP_SYS_ADMIN, so a thread that had no
//! no_new_privs does not get it. The restorer suspends the filters it installs for its
//! own later injected syscalls when it may (CAP_SYS_ADMIN); otherwise they pass through
//! the filters, and one the filter refuses fails the restore. Every thread's state is
//! then read back from /proc and compared: a restore never lets a process run with
//! fewer restrictions (or other capabilities) than it had. Syscall user dispatch is set
//! by ptrace after the last injected syscall (`restore::tasks::release`).

mod restore;

pub(crate) use restore::{keep_caps_across_setuid, restore, restore_sud, Target};

use crate::error::{Error, Result};
use crate::model::{SeccompFilter, ThreadSecurity};
use serde_json::{json, Value};

pub(crate) const PR_GET_SECUREBITS: u64 = 27;

/// What /proc says of a thread now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub inh: u64,
    pub prm: u64,
    pub eff: u64,
    pub bnd: u64,
    pub amb: u64,
    pub nnp: bool,
    pub seccomp: u8,
    pub filters: usize,
}

pub(crate) fn status(pid: i32, tid: i32) -> Result<Status> {
    let task = crate::procinfo::open(pid)?
        .task_from_tid(tid)
        .map_err(|e| crate::procinfo::proc_err(pid, e))?;
    let st = task
        .status()
        .map_err(|e| crate::procinfo::proc_err(pid, e))?;
    // procfs does not parse Seccomp_filters.
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .map_err(|e| Error::io(format!("/proc/{pid}/task/{tid}/status"), e))?;
    let filters = text
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Status {
        inh: st.capinh,
        prm: st.capprm,
        eff: st.capeff,
        bnd: st.capbnd.unwrap_or(0),
        amb: st.capamb.unwrap_or(0),
        nnp: st.nonewprivs.unwrap_or(0) != 0,
        seccomp: st.seccomp.unwrap_or(0) as u8,
        filters,
    })
}

/// Whether a thread of `pid` is under seccomp (its injected syscalls would pass through
/// the filters).
pub(crate) fn under_seccomp(pid: i32, tid: i32) -> Result<bool> {
    Ok(status(pid, tid)?.seccomp != 0)
}

pub(crate) fn has(set: u64, cap: u32) -> bool {
    set & (1u64 << cap) != 0
}

/// Collect the security state of thread `i` of a frozen process (`sud`: its syscall
/// user dispatch configuration as found at the freeze).
pub(crate) fn dump_thread(
    pid: i32,
    remote: &mut crate::plugin::Remote<'_>,
    i: usize,
) -> Result<ThreadSecurity> {
    let tid = remote.threads[i].tid();
    let st = status(pid, tid)?;
    let securebits = remote.syscall_ok(
        i,
        libc::SYS_prctl,
        &[PR_GET_SECUREBITS],
        "prctl(PR_GET_SECUREBITS)",
    )? as u32;
    let t = &remote.threads[i];
    let mut filters = Vec::new();
    if st.seccomp == 2 {
        let refuse = |e: spirit_kmod::Error| {
            match e.errno() {
            Some(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) => Error::Dump {
                pid,
                msg: format!(
                    "thread {tid} runs under {} seccomp filter(s); reading them needs CAP_SYS_ADMIN (run spirit as root): without them the process would come back unfiltered",
                    st.filters
                ),
            },
            _ => e.into(),
        }
        };
        let mut index = 0;
        while let Some(program) = t.seccomp_filter(index).map_err(refuse)? {
            let flags = t.seccomp_flags(index).map_err(refuse)?;
            filters.push(SeccompFilter { flags, program });
            index += 1;
        }
        if filters.len() != st.filters {
            return Err(Error::Dump {
                pid,
                msg: format!(
                    "thread {tid}: /proc counts {} seccomp filters, ptrace gave {}",
                    st.filters,
                    filters.len()
                ),
            });
        }
    }
    Ok(ThreadSecurity {
        cap_inheritable: st.inh,
        cap_permitted: st.prm,
        cap_effective: st.eff,
        cap_bounding: st.bnd,
        cap_ambient: st.amb,
        securebits,
        no_new_privs: st.nnp,
        seccomp_mode: st.seccomp,
        filters,
        sud: t.original_sud(),
    })
}

const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

pub(crate) fn cap_name(c: u32) -> String {
    CAP_NAMES
        .get(c as usize)
        .map(|n| format!("cap_{n}"))
        .unwrap_or_else(|| format!("cap_{c}"))
}

/// The security state as JSON for `spirit show`.
pub fn show(sec: &[ThreadSecurity], tids: &[i32]) -> Value {
    let hex = |v: u64| format!("{v:#x}");
    Value::Array(
        sec.iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "tid": tids.get(i).copied().unwrap_or(0),
                    "cap_effective": hex(s.cap_effective),
                    "cap_permitted": hex(s.cap_permitted),
                    "cap_inheritable": hex(s.cap_inheritable),
                    "cap_bounding": hex(s.cap_bounding),
                    "cap_ambient": hex(s.cap_ambient),
                    "securebits": hex(u64::from(s.securebits)),
                    "no_new_privs": s.no_new_privs,
                    "seccomp": match s.seccomp_mode { 0 => "off", 1 => "strict", 2 => "filter", _ => "?" },
                    "filters": s.filters.iter().map(|f| json!({
                        "flags": hex(f.flags),
                        "instructions": f.program.chunks_exact(8).map(|c| format!(
                            "{:04x} {:02x} {:02x} {:08x}",
                            u16::from_le_bytes([c[0], c[1]]), c[2], c[3],
                            u32::from_le_bytes([c[4], c[5], c[6], c[7]])
                        )).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "syscall_user_dispatch": if s.sud.mode == 0 { json!("off") } else {
                        json!({"mode": s.sud.mode, "selector": hex(s.sud.selector), "offset": hex(s.sud.offset), "len": s.sud.len})
                    },
                })
            })
            .collect(),
    )
}
