//! Raw system calls the rest of spirit needs and libc/nix do not wrap.

use crate::error::{check, Error, Result};
use nix::errno::Errno;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Result of [`clone3_fork`], as with `fork()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkOutcome {
    Parent { child: i32 },
    Child,
}

/// `fork()` through `clone3`, optionally asking for a specific pid (`set_tid`, needs
/// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in the pid namespace's owner). Fails with
/// EEXIST when that pid is taken. Refuses to run in a multi-threaded process: the child
/// of a multi-threaded fork may find locks held by threads that no longer exist.
///
/// In the child, glibc's cached thread id is the parent's: use raw `getpid()` and
/// `kill()` there, never `raise()`.
pub fn clone3_fork(set_tid: Option<i32>) -> Result<ForkOutcome> {
    clone3_fork_with(set_tid, false)
}

/// [`clone3_fork`], optionally into a new pid namespace (the child is its init, pid 1).
pub fn clone3_fork_with(set_tid: Option<i32>, new_pid_ns: bool) -> Result<ForkOutcome> {
    // One entry per thread: not a /proc parser, just a count. A thread that was just
    // joined can still be listed for a moment (join returns when it clears its tid,
    // before the kernel has finished with it): give such stragglers a second to go.
    let count = || std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    let mut threads = count();
    for _ in 0..1000 {
        if threads == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        threads = count();
    }
    if threads != 1 {
        return Err(Error::Unexpected {
            tid: std::process::id() as i32,
            msg: "clone3_fork called from a multi-threaded process".into(),
        });
    }
    let tid_arr = [set_tid.unwrap_or(0) as libc::pid_t];
    let args = CloneArgs {
        flags: if new_pid_ns {
            libc::CLONE_NEWPID as u64
        } else {
            0
        },
        exit_signal: libc::SIGCHLD as u64,
        set_tid: if set_tid.is_some() {
            tid_arr.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: u64::from(set_tid.is_some()),
        ..Default::default()
    };
    // SAFETY: without CLONE_VM this is fork(): the child gets a copy of our (single
    // threaded, checked above) address space and returns here with 0. `args` and
    // `tid_arr` outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match check("clone3", set_tid.unwrap_or(0), ret)? {
        0 => Ok(ForkOutcome::Child),
        pid => Ok(ForkOutcome::Parent { child: pid as i32 }),
    }
}

/// The robust futex list head and its length of task `tid`.
pub fn get_robust_list(tid: i32) -> Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: both out-pointers point to live locals of the sizes the kernel writes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    check("get_robust_list", tid, ret)?;
    Ok((head, len as u64))
}

/// Make this process the reaper of its orphaned descendants.
pub fn set_child_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|errno| Error::Sys {
        call: "PR_SET_CHILD_SUBREAPER",
        tid: 0,
        errno,
    })
}

/// Whether this kernel has `PR_TIMER_CREATE_RESTORE_IDS` (POSIX timers re-created with
/// their ids); asked of the calling process with its GET operation, which changes nothing.
pub fn timer_restore_ids_supported() -> bool {
    // SAFETY: prctl with integer arguments only (77 = PR_TIMER_CREATE_RESTORE_IDS, 2 = GET).
    let ret = unsafe { libc::prctl(77, 2, 0, 0, 0) };
    ret >= 0
}

/// Close every descriptor numbered `low` and above.
pub fn close_fds_from(low: u32) -> Result<()> {
    // SAFETY: close_range with integer arguments; closing fds is memory safe (callers
    // use it in a restore child that owns no Rust objects holding those fds).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, low, u32::MAX, 0) };
    check("close_range", 0, ret).map(|_| ())
}

/// Set this process's execution domain (`personality(2)`).
pub fn set_personality(persona: u32) -> Result<()> {
    // SAFETY: integer argument only.
    let ret = unsafe { libc::personality(persona as libc::c_ulong) };
    if ret < 0 {
        return Err(Error::Sys {
            call: "personality",
            tid: 0,
            errno: Errno::last(),
        });
    }
    Ok(())
}

/// Set a resource limit of this process.
pub fn set_rlimit(resource: u32, cur: u64, max: u64) -> Result<()> {
    let lim = libc::rlimit {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    let ret = unsafe { libc::setrlimit(resource as _, &lim) };
    check("setrlimit", 0, ret as i64).map(|_| ())
}

/// A resource limit of this process: (soft, hard).
pub fn get_rlimit(resource: u32) -> Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for the duration of the call.
    let ret = unsafe { libc::getrlimit(resource as _, &mut lim) };
    check("getrlimit", 0, ret as i64)?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// End this process at once: no atexit handlers, no stdio flush (for a forked child
/// that must not run its parent's cleanup).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust-managed state.
    unsafe { libc::_exit(code) }
}

/// Ignore signal `sig` in this process (SIG_IGN: no handler code is installed).
pub fn ignore_signal(sig: i32) -> Result<()> {
    // SAFETY: SIG_IGN installs no handler, so no async-signal-safety concern exists.
    let prev = unsafe { libc::signal(sig, libc::SIG_IGN) };
    if prev == libc::SIG_ERR {
        return Err(Error::Sys {
            call: "signal",
            tid: 0,
            errno: Errno::last(),
        });
    }
    Ok(())
}

/// Make `cmd`'s child close every descriptor above 2 before it execs, so a program
/// started for a test or demo holds only what it opens itself.
pub fn close_inherited_fds(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and only issues the async-signal-safe
    // close_range syscall.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
}

/// Shared memory slots through which the processes of a restore, forked below the
/// restorer, report that their in-child setup is done (with their pid) or why it failed.
pub struct SharedBoard {
    ptr: *mut u8,
    slots: usize,
}

// SAFETY: the mapping is plain bytes accessed through volatile copies.
unsafe impl Send for SharedBoard {}

const SLOT_LEN: usize = 512;

/// State of one slot of a [`SharedBoard`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Empty,
    Ready { pid: i32 },
    Failed { pid: i32, code: i32, msg: String },
}

impl SharedBoard {
    pub fn new(slots: usize) -> Result<SharedBoard> {
        let len = slots.max(1) * SLOT_LEN;
        // SAFETY: a fresh anonymous shared mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Sys {
                call: "mmap",
                tid: 0,
                errno: Errno::last(),
            });
        }
        Ok(SharedBoard {
            ptr: p as *mut u8,
            slots: slots.max(1),
        })
    }

    fn write(&self, slot: usize, state: u32, pid: i32, code: i32, msg: &str) {
        if slot >= self.slots {
            return;
        }
        let bytes = msg.as_bytes();
        let n = bytes.len().min(SLOT_LEN - 16);
        let mut head = [0u8; 16];
        head[4..8].copy_from_slice(&pid.to_le_bytes());
        head[8..12].copy_from_slice(&code.to_le_bytes());
        head[12..16].copy_from_slice(&(n as u32).to_le_bytes());
        // SAFETY: slot < slots, so [slot*SLOT_LEN, +SLOT_LEN) lies inside the mapping;
        // the message is clamped to the slot. The state word is written last, after a
        // fence, so a reader that sees it sees the rest.
        unsafe {
            let base = self.ptr.add(slot * SLOT_LEN);
            std::ptr::copy_nonoverlapping(head[4..].as_ptr(), base.add(4), 12);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(16), n);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            std::ptr::write_volatile(base as *mut u32, state);
        }
    }

    pub fn ready(&self, slot: usize, pid: i32) {
        self.write(slot, 1, pid, 0, "");
    }

    pub fn failed(&self, slot: usize, pid: i32, code: i32, msg: &str) {
        self.write(slot, 2, pid, code, msg);
    }

    pub fn get(&self, slot: usize) -> Slot {
        if slot >= self.slots {
            return Slot::Empty;
        }
        let mut head = [0u8; 16];
        // SAFETY: reads stay inside the slot (bounds as in `write`).
        let state = unsafe {
            let base = self.ptr.add(slot * SLOT_LEN);
            let state = std::ptr::read_volatile(base as *const u32);
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            std::ptr::copy_nonoverlapping(base, head.as_mut_ptr(), 16);
            state
        };
        let pid = i32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        match state {
            1 => Slot::Ready { pid },
            2 => {
                let code = i32::from_le_bytes([head[8], head[9], head[10], head[11]]);
                let n = (u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize)
                    .min(SLOT_LEN - 16);
                let mut msg = vec![0u8; n];
                // SAFETY: as above, n is clamped to the slot.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.ptr.add(slot * SLOT_LEN + 16),
                        msg.as_mut_ptr(),
                        n,
                    )
                };
                Slot::Failed {
                    pid,
                    code,
                    msg: String::from_utf8_lossy(&msg).into_owned(),
                }
            }
            _ => Slot::Empty,
        }
    }
}

impl Drop for SharedBoard {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this object created and exclusively owns.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.slots * SLOT_LEN) };
    }
}

/// End this process with the wait status `status` as `waitpid` reported it for the
/// original (exit code, or death by a signal): how a zombie is recreated.
pub fn die_with_status(status: i32) -> ! {
    let sig = status & 0x7f;
    if sig != 0 && sig != 0x7f {
        // SAFETY: resetting a disposition to SIG_DFL installs no handler; then the
        // signal, unblocked, kills us as it killed the original.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
    }
    exit_now((status >> 8) & 0xff)
}

/// Stop being the reaper of orphaned descendants.
pub fn clear_child_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(false).map_err(|errno| Error::Sys {
        call: "PR_SET_CHILD_SUBREAPER",
        tid: 0,
        errno,
    })
}

/// Run `f` when the process exits normally (`atexit`).
pub fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function with no captured state, valid for the whole
    // process lifetime; atexit only stores the pointer.
    unsafe { libc::atexit(f) };
}
