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
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.split_whitespace().eq(["Threads:", "1"]))
    {
        return Err(Error::Unexpected {
            tid: std::process::id() as i32,
            msg: "clone3_fork called from a multi-threaded process".into(),
        });
    }
    let tid_arr = [set_tid.unwrap_or(0) as libc::pid_t];
    let args = CloneArgs {
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
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    check("PR_SET_CHILD_SUBREAPER", 0, ret as i64).map(|_| ())
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

/// One page of memory shared with the children forked after it is made: a restore
/// child reports why it failed through it (it owns no descriptor that could collide
/// with the descriptors it is rebuilding).
pub struct SharedPage {
    ptr: *mut u8,
}

// SAFETY: the page is plain bytes; access goes through copying methods only.
unsafe impl Send for SharedPage {}

const SHARED_PAGE_LEN: usize = 4096;

impl SharedPage {
    pub fn new() -> Result<SharedPage> {
        // SAFETY: a fresh anonymous shared mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SHARED_PAGE_LEN,
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
        Ok(SharedPage { ptr: p as *mut u8 })
    }

    /// Store a code and a message (truncated to fit).
    pub fn put(&self, code: i32, msg: &str) {
        let bytes = msg.as_bytes();
        let n = bytes.len().min(SHARED_PAGE_LEN - 8);
        // SAFETY: the mapping is SHARED_PAGE_LEN bytes long and lives as long as self;
        // writes stay inside it.
        unsafe {
            std::ptr::copy_nonoverlapping(code.to_le_bytes().as_ptr(), self.ptr, 4);
            std::ptr::copy_nonoverlapping((n as u32).to_le_bytes().as_ptr(), self.ptr.add(4), 4);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(8), n);
        }
    }

    /// The stored code and message, if any.
    pub fn get(&self) -> Option<(i32, String)> {
        let mut head = [0u8; 8];
        // SAFETY: reads stay inside the mapping (length clamped to its size).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, head.as_mut_ptr(), 8) };
        let code = i32::from_le_bytes(head[..4].try_into().ok()?);
        let n = (u32::from_le_bytes(head[4..].try_into().ok()?) as usize).min(SHARED_PAGE_LEN - 8);
        if code == 0 && n == 0 {
            return None;
        }
        let mut msg = vec![0u8; n];
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(8), msg.as_mut_ptr(), n) };
        Some((code, String::from_utf8_lossy(&msg).into_owned()))
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this object created and exclusively owns.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, SHARED_PAGE_LEN) };
    }
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
