//! Threads of the restored process: creating them with their original tids, their
//! per-thread kernel state, and finally their registers (KERNEL-NOTES steps 11–12).

use super::memory::{Area, AREA_LEN};
use crate::error::{Error, Result};
use crate::header::adapt_xstate;
use crate::model::{CpuInfo, ProcessImage, ThreadState};
use spirit_kmod::{
    fixup_restart, read_memory, regs_from_array, write_memory, RestartPolicy, Tracee,
};

const CLONE_ARGS_SIZE: u64 = 88;

/// Create every thread but the main one, inside the process, by injected `clone3`
/// (with `set_tid` when `keep_tids`). Returns all threads, main first.
pub(crate) fn create_threads(
    mut main: Tracee,
    area: &Area,
    proc: &ProcessImage,
    keep_tids: bool,
) -> Result<Vec<Tracee>> {
    let pid = main.tid();
    let mut out = Vec::with_capacity(proc.threads.len());
    let mut made = Vec::new();
    for t in proc.threads.iter().skip(1) {
        let flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM) as u64;
        let tid_addr = area.scratch() + 256;
        let mut args = [0u64; 11];
        args[0] = flags;
        if keep_tids {
            args[8] = tid_addr;
            args[9] = 1;
            write_memory(pid, &(t.tid as i64).to_le_bytes(), &[(tid_addr, 8)])?;
        }
        let bytes: Vec<u8> = args.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_memory(pid, &bytes, &[(area.scratch(), bytes.len())])?;
        let r = main.syscall(
            area.gadget(),
            libc::SYS_clone3,
            &[area.scratch(), CLONE_ARGS_SIZE],
        );
        let new_tid = match r {
            Ok(n) if n > 0 => n as i32,
            Ok(n) if keep_tids && n == -(libc::EEXIST as i64) => {
                return Err(Error::PidInUse { pid: t.tid })
            }
            Ok(n) => {
                return Err(Error::Restore(format!(
                    "creating thread {} failed: {}",
                    t.tid,
                    nix::errno::Errno::from_raw(-n as i32)
                )))
            }
            Err(e) => return Err(e.into()),
        };
        // The syscall returns the tid inside the process's pid namespace; ptrace
        // reported it as we see it (they differ under --pid-ns).
        let seen = main.take_cloned().last().copied().unwrap_or(new_tid);
        made.push(Tracee::adopt_clone(pid, seen)?);
        refresh_tid_cache(pid, t, new_tid)?;
    }
    out.push(main);
    out.extend(made);
    Ok(out)
}

/// With new tids, the C library's cached tid must follow (pthread_kill, raise and PI
/// futexes use it).
pub(crate) fn refresh_tid_cache(pid: i32, t: &ThreadState, new_tid: i32) -> Result<()> {
    if t.tid_cache_addr != 0 && new_tid != t.tid {
        write_memory(pid, &new_tid.to_le_bytes(), &[(t.tid_cache_addr, 4)])?;
    }
    Ok(())
}

/// Robust list, clear-child-tid address and rseq of every thread.
pub(crate) fn thread_state(threads: &mut [Tracee], area: &Area, proc: &ProcessImage) -> Result<()> {
    let g = area.gadget();
    for (t, st) in threads.iter_mut().zip(&proc.threads) {
        if st.robust_head != 0 {
            t.syscall_ok(
                g,
                libc::SYS_set_robust_list,
                &[st.robust_head, st.robust_len],
                "set_robust_list",
            )?;
        }
        t.syscall_ok(
            g,
            libc::SYS_set_tid_address,
            &[st.tid_address],
            "set_tid_address",
        )?;
        if !st.name.is_empty() {
            // PR_SET_NAME takes at most 15 bytes and a NUL.
            let mut name: Vec<u8> = st.name.bytes().take(15).collect();
            name.push(0);
            write_memory(t.tid(), &name, &[(area.scratch(), name.len())])?;
            t.syscall_ok(
                g,
                libc::SYS_prctl,
                &[libc::PR_SET_NAME as u64, area.scratch()],
                "prctl(PR_SET_NAME)",
            )?;
        }
        if let Some(r) = st.rseq {
            t.syscall_ok(
                g,
                libc::SYS_rseq,
                &[r.ptr, u64::from(r.len), 0, u64::from(r.sig)],
                "rseq",
            )?;
        }
    }
    Ok(())
}

/// Who the process runs as: supplementary groups, gids, uids of every thread (raw
/// set*id syscalls act on the calling thread only), then the dumpable flag, which a
/// uid change resets (a process left undumpable could not be checkpointed again by its
/// owner). Comes after PR_SET_MM_MAP, which needs the restorer's privileges.
pub(crate) fn credentials(threads: &mut [Tracee], area: &Area, proc: &ProcessImage) -> Result<()> {
    let c = &proc.creds;
    if c.uids == [0; 4] && c.gids == [0; 4] && c.groups.is_empty() && c.dumpable == 0 {
        return Ok(()); // an image without credentials (older writer)
    }
    let pid = threads[0].tid();
    let g = area.gadget();
    let groups: Vec<u8> = c.groups.iter().flat_map(|v| v.to_le_bytes()).collect();
    if groups.len() as u64 > area.scratch_len() {
        return Err(Error::Restore(format!(
            "{} supplementary groups are too many",
            c.groups.len()
        )));
    }
    write_memory(pid, &groups, &[(area.scratch(), groups.len())])?;
    let refused = |what: &str, e: spirit_kmod::Error| match e.errno() {
        Some(nix::errno::Errno::EPERM) => Error::RestoreNotPermitted {
            reason: format!(
                "the process ran as uid {} gid {}; setting its {what} needs root",
                c.uids[0], c.gids[0]
            ),
        },
        _ => e.into(),
    };
    let as_u64 = |v: u32| u64::from(v);
    crate::security::keep_caps_across_setuid(
        &mut crate::security::Target {
            threads,
            gadget: g,
            scratch: area.scratch(),
            scratch_len: area.scratch_len(),
        },
        proc,
    )?;
    for t in threads.iter_mut() {
        let now = nix::unistd::getgroups().unwrap_or_default();
        let same_groups = now.iter().map(|g| g.as_raw()).eq(c.groups.iter().copied());
        if !same_groups {
            t.syscall_ok(
                g,
                libc::SYS_setgroups,
                &[c.groups.len() as u64, area.scratch()],
                "setgroups",
            )
            .map_err(|e| refused("groups", e))?;
        }
        t.syscall_ok(
            g,
            libc::SYS_setresgid,
            &[as_u64(c.gids[0]), as_u64(c.gids[1]), as_u64(c.gids[2])],
            "setresgid",
        )
        .map_err(|e| refused("gids", e))?;
        t.syscall_ok(g, libc::SYS_setfsgid, &[as_u64(c.gids[3])], "setfsgid")?;
        t.syscall_ok(
            g,
            libc::SYS_setresuid,
            &[as_u64(c.uids[0]), as_u64(c.uids[1]), as_u64(c.uids[2])],
            "setresuid",
        )
        .map_err(|e| refused("uids", e))?;
        t.syscall_ok(g, libc::SYS_setfsuid, &[as_u64(c.uids[3])], "setfsuid")?;
    }
    threads[0].syscall_ok(
        g,
        libc::SYS_prctl,
        &[libc::PR_SET_DUMPABLE as u64, u64::from(c.dumpable)],
        "prctl(PR_SET_DUMPABLE)",
    )?;
    Ok(())
}

/// A relative sleep interrupted with -ERESTART_RESTARTBLOCK is re-issued on restore;
/// when the caller passed a separate remainder buffer, the kernel wrote the time left
/// there at the interruption, so it becomes the request: the sleep neither returns
/// early nor starts over (KERNEL-NOTES, restart table).
fn carry_over_remaining_sleep(pid: i32, st: &ThreadState) -> Result<()> {
    let r = regs_from_array(&st.regs);
    if r.rax as i64 != -516 {
        return Ok(());
    }
    let (req, rem) = match r.orig_rax as i64 {
        libc::SYS_nanosleep => (r.rdi, r.rsi),
        libc::SYS_clock_nanosleep if r.rsi & libc::TIMER_ABSTIME as u64 == 0 => (r.rdx, r.r10),
        _ => return Ok(()),
    };
    if rem == 0 || rem == req || req == 0 {
        return Ok(());
    }
    let mut ts = [0u8; 16];
    read_memory(pid, &mut ts, &[(rem, 16)])?;
    write_memory(pid, &ts, &[(req, 16)])?;
    Ok(())
}

/// Remove the syscall area (from the main thread, which then sits at a syscall exit),
/// give every thread its registers, xstate and final signal mask, and let them all go.
pub(crate) fn release(
    mut threads: Vec<Tracee>,
    area: &Area,
    proc: &ProcessImage,
    image_cpu: &CpuInfo,
    host_cpu: &CpuInfo,
    final_sigmask: &[u64],
    seccomp_suspended: bool,
) -> Result<()> {
    let pid = threads[0].tid();
    let mut xstates = Vec::new();
    for st in &proc.threads {
        xstates.push(adapt_xstate(&st.xstate, image_cpu, host_cpu)?);
        carry_over_remaining_sleep(pid, st)?;
    }
    threads[0]
        .syscall_ok(
            area.gadget(),
            libc::SYS_munmap,
            &[area.base, AREA_LEN],
            "munmap (syscall page)",
        )
        .map_err(|e| {
            let filtered = proc.security.first().is_some_and(|s| s.seccomp_mode != 0);
            if filtered && !seccomp_suspended {
                Error::RestoreNotPermitted {
                    reason: format!(
                        "process {}: its seccomp filters refused the restorer's last syscall ({e}); spirit may suspend them only with CAP_SYS_ADMIN: restore as root",
                        proc.pid
                    ),
                }
            } else {
                e.into()
            }
        })?;
    for (i, t) in threads.iter().enumerate() {
        let st = &proc.threads[i];
        let mut regs = regs_from_array(&st.regs);
        fixup_restart(&mut regs, RestartPolicy::Fresh);
        t.set_regs(&regs)?;
        if !xstates[i].is_empty() {
            t.set_xstate(&xstates[i])?;
        }
        t.set_sigmask(final_sigmask[i])?;
    }
    crate::security::restore_sud(&threads, proc)?;
    // Secondary threads first; the main thread last.
    let main = threads.remove(0);
    for t in threads {
        t.detach()?;
    }
    main.detach()?;
    Ok(())
}
