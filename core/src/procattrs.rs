//! Process and thread attributes set by `prctl`, the scheduler and /proc: nice value,
//! scheduling policy and priority, CPU affinity, timer slack (per thread); child
//! subreaper, THP disable, I/O priority, `oom_score_adj` (per process); and whether the
//! process was stopped (job control) when it was checkpointed.
//!
//! Dump (the process frozen): per-thread values from `/proc/PID/task/TID/stat` (through
//! the one /proc layer) and `sched_getaffinity`, the rest by injected `prctl` /
//! `ioprio_get` in the process itself. Restore: by injected calls in each thread, in
//! the remote phase before credentials are dropped (a negative nice value or a realtime
//! policy needs the restorer's privilege), `oom_score_adj` written by the restorer; a
//! stopped process is stopped again as the tree resumes.

use crate::error::{Error, Result};
use crate::plugin::Remote;
use crate::procinfo;
use spirit_kmod::{write_memory, Tracee};

const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_GET_THP_DISABLE: u64 = 42;
const PR_SET_THP_DISABLE: u64 = 41;
const PR_GET_TIMERSLACK: u64 = 30;
const PR_SET_TIMERSLACK: u64 = 29;
const IOPRIO_WHO_PROCESS: u64 = 1;
const PRIO_PROCESS: u64 = 0;

/// One thread's scheduling attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ThreadAttrs {
    pub nice: i32,
    /// SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5.
    pub policy: u32,
    /// Realtime priority (FIFO/RR), 0 otherwise.
    pub rt_priority: u32,
    /// CPU affinity mask, 64 CPUs per word.
    pub affinity: Vec<u64>,
    pub timer_slack_ns: u64,
}

/// The process's attributes (threads in the order of its thread list).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcAttrs {
    pub threads: Vec<ThreadAttrs>,
    pub child_subreaper: bool,
    pub thp_disable: bool,
    /// `ioprio_get(IOPRIO_WHO_PROCESS)` value (class << 13 | data).
    pub ioprio: u32,
    pub oom_score_adj: i32,
    /// Stopped by a signal (state T) at checkpoint: stopped again after restore.
    pub stopped: bool,
}

fn thread_attrs(pid: i32, tid: i32, remote: &mut Remote<'_>, t: usize) -> Result<ThreadAttrs> {
    let st = procfs::process::Process::new(pid)
        .and_then(|p| p.task_from_tid(tid))
        .and_then(|t| t.stat())
        .map_err(|e| procinfo::proc_err(pid, e))?;
    let affinity = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(tid))
        .map(|set| {
            let cpus = nix::sched::CpuSet::count();
            let mut words = vec![0u64; cpus.div_ceil(64)];
            for cpu in 0..cpus {
                if set.is_set(cpu).unwrap_or(false) {
                    words[cpu / 64] |= 1 << (cpu % 64);
                }
            }
            while words.len() > 1 && words.last() == Some(&0) {
                words.pop();
            }
            words
        })
        .map_err(|e| Error::Dump {
            pid,
            msg: format!("sched_getaffinity of thread {tid}: {e}"),
        })?;
    let slack = remote.syscall_ok(
        t,
        libc::SYS_prctl,
        &[PR_GET_TIMERSLACK],
        "prctl(PR_GET_TIMERSLACK)",
    )?;
    Ok(ThreadAttrs {
        nice: st.nice as i32,
        policy: st.policy.unwrap_or(0),
        rt_priority: st.rt_priority.unwrap_or(0),
        affinity,
        timer_slack_ns: slack as u64,
    })
}

/// Collect the attributes of frozen process `pid` (threads in `remote`'s order), but
/// `stopped`, which only the state before the freeze tells.
pub(crate) fn dump(pid: i32, remote: &mut Remote<'_>) -> Result<ProcAttrs> {
    let mut a = ProcAttrs::default();
    for t in 0..remote.threads.len() {
        let tid = remote.threads[t].tid();
        a.threads.push(thread_attrs(pid, tid, remote, t)?);
    }
    remote.syscall_ok(
        0,
        libc::SYS_prctl,
        &[PR_GET_CHILD_SUBREAPER, remote.scratch],
        "prctl(PR_GET_CHILD_SUBREAPER)",
    )?;
    let v = remote.read(remote.scratch, 4)?;
    a.child_subreaper = v.iter().any(|&b| b != 0);
    a.thp_disable = remote.syscall_ok(
        0,
        libc::SYS_prctl,
        &[PR_GET_THP_DISABLE],
        "prctl(PR_GET_THP_DISABLE)",
    )? != 0;
    a.ioprio = remote.syscall_ok(
        0,
        libc::SYS_ioprio_get,
        &[IOPRIO_WHO_PROCESS, 0],
        "ioprio_get",
    )? as u32;
    let path = format!("/proc/{pid}/oom_score_adj");
    a.oom_score_adj = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(&path, e))?
        .trim()
        .parse()
        .map_err(|_| Error::Dump {
            pid,
            msg: format!("unreadable {path}"),
        })?;
    // `stopped` is known only from before the freeze: the dump sets it.
    Ok(a)
}

/// Give the restored process its attributes back, by injected calls in each thread
/// (`scratch` is a writable area of the process, `gadget` a syscall instruction).
pub(crate) fn restore(
    threads: &mut [Tracee],
    gadget: u64,
    scratch: u64,
    a: &ProcAttrs,
) -> Result<()> {
    if a.threads.is_empty() {
        return Ok(()); // an image without attributes
    }
    let pid = threads[0].tid();
    let refused = |what: String, e: spirit_kmod::Error| match e.errno() {
        Some(nix::errno::Errno::EPERM) => Error::RestoreNotPermitted {
            reason: format!("process {pid}: setting its {what} is not permitted here"),
        },
        _ => e.into(),
    };
    for (t, ta) in threads.iter_mut().zip(&a.threads) {
        let tid = t.tid();
        t.syscall_ok(
            gadget,
            libc::SYS_setpriority,
            &[PRIO_PROCESS, 0, ta.nice as i64 as u64],
            "setpriority",
        )
        .map_err(|e| refused(format!("nice value {} (thread {tid})", ta.nice), e))?;
        write_memory(pid, &ta.rt_priority.to_le_bytes(), &[(scratch, 4)])?;
        t.syscall_ok(
            gadget,
            libc::SYS_sched_setscheduler,
            &[0, u64::from(ta.policy), scratch],
            "sched_setscheduler",
        )
        .map_err(|e| refused(format!("scheduling policy {} (thread {tid})", ta.policy), e))?;
        if !ta.affinity.is_empty() {
            let bytes: Vec<u8> = ta.affinity.iter().flat_map(|w| w.to_le_bytes()).collect();
            write_memory(pid, &bytes, &[(scratch, bytes.len())])?;
            let r = t.syscall(
                gadget,
                libc::SYS_sched_setaffinity,
                &[0, bytes.len() as u64, scratch],
            )?;
            // EINVAL: none of those CPUs exists here (another host): keep the default.
            if r < 0 && r != -(libc::EINVAL as i64) {
                return Err(Error::Restore(format!(
                    "process {pid}: sched_setaffinity for thread {tid} failed (errno {})",
                    -r
                )));
            }
        }
        t.syscall_ok(
            gadget,
            libc::SYS_prctl,
            &[PR_SET_TIMERSLACK, ta.timer_slack_ns],
            "prctl(PR_SET_TIMERSLACK)",
        )?;
    }
    let main = &mut threads[0];
    if a.child_subreaper {
        main.syscall_ok(
            gadget,
            libc::SYS_prctl,
            &[PR_SET_CHILD_SUBREAPER, 1],
            "prctl(PR_SET_CHILD_SUBREAPER)",
        )?;
    }
    if a.thp_disable {
        main.syscall_ok(
            gadget,
            libc::SYS_prctl,
            &[PR_SET_THP_DISABLE, 1, 0, 0, 0],
            "prctl(PR_SET_THP_DISABLE)",
        )?;
    }
    main.syscall_ok(
        gadget,
        libc::SYS_ioprio_set,
        &[IOPRIO_WHO_PROCESS, 0, u64::from(a.ioprio)],
        "ioprio_set",
    )
    .map_err(|e| refused(format!("I/O priority {:#x}", a.ioprio), e))?;
    let path = format!("/proc/{pid}/oom_score_adj");
    let now = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    if now.trim() == a.oom_score_adj.to_string() {
        return Ok(());
    }
    std::fs::write(&path, a.oom_score_adj.to_string()).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => Error::RestoreNotPermitted {
            reason: format!(
                "process {pid}: setting oom_score_adj {} needs CAP_SYS_RESOURCE",
                a.oom_score_adj
            ),
        },
        _ => Error::io(&path, e),
    })?;
    Ok(())
}

pub(crate) fn encode(a: &ProcAttrs, mut b: crate::core_capnp::proc_attrs::Builder<'_>) {
    b.set_child_subreaper(a.child_subreaper);
    b.set_thp_disable(a.thp_disable);
    b.set_ioprio(a.ioprio);
    b.set_oom_score_adj(a.oom_score_adj);
    b.set_stopped(a.stopped);
    let mut ts = b.init_threads(a.threads.len() as u32);
    for (i, t) in a.threads.iter().enumerate() {
        let mut e = ts.reborrow().get(i as u32);
        e.set_nice(t.nice);
        e.set_policy(t.policy);
        e.set_rt_priority(t.rt_priority);
        e.set_timer_slack_ns(t.timer_slack_ns);
        let mut m = e.init_affinity(t.affinity.len() as u32);
        for (j, w) in t.affinity.iter().enumerate() {
            m.set(j as u32, *w);
        }
    }
}

pub(crate) fn decode(r: crate::core_capnp::proc_attrs::Reader<'_>) -> capnp::Result<ProcAttrs> {
    let mut threads = Vec::new();
    for t in r.get_threads()?.iter() {
        threads.push(ThreadAttrs {
            nice: t.get_nice(),
            policy: t.get_policy(),
            rt_priority: t.get_rt_priority(),
            affinity: t.get_affinity()?.iter().collect(),
            timer_slack_ns: t.get_timer_slack_ns(),
        });
    }
    Ok(ProcAttrs {
        threads,
        child_subreaper: r.get_child_subreaper(),
        thp_disable: r.get_thp_disable(),
        ioprio: r.get_ioprio(),
        oom_score_adj: r.get_oom_score_adj(),
        stopped: r.get_stopped(),
    })
}
