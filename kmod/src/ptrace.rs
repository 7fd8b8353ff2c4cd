//! Seizing, stopping and releasing tasks; registers, xstate, signal masks and queues.

use crate::error::{check, Error, Result};
use libc::{c_long, c_void};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// General purpose registers as `PTRACE_GETREGS` returns them (includes fs/gs base).
pub type Regs = libc::user_regs_struct;
/// A raw 128-byte `siginfo_t`, as `PTRACE_PEEKSIGINFO` returns it.
pub type SigInfo = [u8; 128];

/// Register names in `user_regs_struct` order; images store registers in this order.
pub const REG_NAMES: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

const NT_X86_XSTATE: usize = 0x202;
const PTRACE_GETSIGMASK: u32 = 0x420a;
const PTRACE_SETSIGMASK: u32 = 0x420b;
const PTRACE_PEEKSIGINFO: u32 = 0x4209;
const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
const PTRACE_SECCOMP_GET_METADATA: u32 = 0x420d;
const PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG: u32 = 0x4210;
const PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG: u32 = 0x4211;
/// Seccomp filters of the tracee are not applied while it is traced with this option.
const PTRACE_O_SUSPEND_SECCOMP: i32 = 1 << 21;
/// Largest xstate buffer we ask the kernel for (AMX tile data included).
const XSTATE_MAX: usize = 64 * 1024;

/// rseq registration of a thread, from `PTRACE_GET_RSEQ_CONFIGURATION`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfig {
    pub ptr: u64,
    pub len: u32,
    pub sig: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct RawRseqConfig {
    ptr: u64,
    size: u32,
    sig: u32,
    flags: u32,
    pad: u32,
}

#[repr(C)]
struct PeekSigInfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// A thread's syscall user dispatch configuration (`PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SudConfig {
    /// 0: off; 1: on.
    pub mode: u64,
    /// Address of the selector byte.
    pub selector: u64,
    /// Start and length of the range whose syscalls are never dispatched.
    pub offset: u64,
    pub len: u64,
}

#[repr(C)]
struct SeccompMetadata {
    filter_off: u64,
    flags: u64,
}

/// What happens to a task when its [`Tracee`] is dropped without being released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenDropped {
    /// A task frozen for a checkpoint: put its registers and mask back, then detach.
    Resume,
    /// A task being built by a restore: it must never run half-built, so SIGKILL it.
    Kill,
}

/// How a syscall interrupted by the freeze is to be continued (KERNEL-NOTES, restart table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// The original task, resumed after a `--leave-running` dump: its kernel
    /// `restart_block` is intact, so `-ERESTART_RESTARTBLOCK` becomes `restart_syscall`.
    Original,
    /// A restored task: no `restart_block` exists, so the syscall is issued again.
    Fresh,
}

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// Turn "stopped inside an interrupted syscall" registers into registers that restart it
/// when the task next runs, and mark the task as not in a syscall (`orig_rax = -1`), so
/// the kernel's own restart logic cannot act a second time (KERNEL-NOTES P5).
pub fn fixup_restart(regs: &mut Regs, policy: RestartPolicy) {
    if (regs.orig_rax as i64) >= 0 {
        match -(regs.rax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
            }
            ERESTART_RESTARTBLOCK => {
                regs.rax = match policy {
                    RestartPolicy::Original => libc::SYS_restart_syscall as u64,
                    RestartPolicy::Fresh => regs.orig_rax,
                };
                regs.rip -= 2;
            }
            _ => {}
        }
    }
    regs.orig_rax = u64::MAX;
}

/// One task under our ptrace control. All calls must come from the thread that
/// created it (ptrace binds a tracee to the tracer thread).
#[derive(Debug)]
pub struct Tracee {
    tid: i32,
    tgid: i32,
    /// Registers at the moment we took control: the base for injected calls, and what a
    /// `Resume` tracee gets back.
    base_regs: Regs,
    base_sigmask: u64,
    when_dropped: WhenDropped,
    released: bool,
    /// Tids of tasks created by injected `clone` calls, reported by PTRACE_EVENT_CLONE.
    pub(crate) cloned: Vec<i32>,
    /// The ptrace options in force (PTRACE_SETOPTIONS replaces them all).
    opts: i32,
    /// Syscall user dispatch as found, while [`Tracee::pause_sud`] has it off.
    sud: SudConfig,
    /// `Resume` tracees: the signal frame that brings the task back if we die during an
    /// injected call (`None` until the first call, or when none could be placed).
    pub(crate) rescue: Option<crate::remote::Rescue>,
    pub(crate) rescue_tried: bool,
}

pub(crate) fn ptrace_raw(req: u32, tid: i32, addr: usize, data: usize) -> Result<i64> {
    // SAFETY: every request used in this crate passes either plain integers or pointers
    // to live, correctly sized buffers owned by the caller for the duration of the call.
    let ret = unsafe {
        libc::ptrace(
            req as _,
            tid as libc::pid_t,
            addr as *mut c_void,
            data as *mut c_void,
        )
    } as c_long;
    check(ptrace_name(req), tid, ret as i64)
}

fn ptrace_name(req: u32) -> &'static str {
    match req {
        libc::PTRACE_SEIZE => "PTRACE_SEIZE",
        libc::PTRACE_INTERRUPT => "PTRACE_INTERRUPT",
        libc::PTRACE_GETREGS => "PTRACE_GETREGS",
        libc::PTRACE_SETREGS => "PTRACE_SETREGS",
        libc::PTRACE_GETREGSET => "PTRACE_GETREGSET",
        libc::PTRACE_SETREGSET => "PTRACE_SETREGSET",
        libc::PTRACE_SYSCALL => "PTRACE_SYSCALL",
        libc::PTRACE_CONT => "PTRACE_CONT",
        libc::PTRACE_DETACH => "PTRACE_DETACH",
        libc::PTRACE_SETOPTIONS => "PTRACE_SETOPTIONS",
        libc::PTRACE_GETEVENTMSG => "PTRACE_GETEVENTMSG",
        PTRACE_GETSIGMASK => "PTRACE_GETSIGMASK",
        PTRACE_SETSIGMASK => "PTRACE_SETSIGMASK",
        PTRACE_PEEKSIGINFO => "PTRACE_PEEKSIGINFO",
        PTRACE_GET_RSEQ_CONFIGURATION => "PTRACE_GET_RSEQ_CONFIGURATION",
        PTRACE_SECCOMP_GET_FILTER => "PTRACE_SECCOMP_GET_FILTER",
        PTRACE_SECCOMP_GET_METADATA => "PTRACE_SECCOMP_GET_METADATA",
        PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG => "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG",
        PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG => "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG",
        _ => "ptrace",
    }
}

/// Wait for a state change of one task (any kind of child, threads included).
pub(crate) fn wait_task(tid: i32) -> Result<WaitStatus> {
    loop {
        match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
            Ok(st) => return Ok(st),
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(Error::Sys {
                    call: "waitpid",
                    tid,
                    errno,
                })
            }
        }
    }
}

fn exited(tid: i32, st: &WaitStatus) -> Option<Error> {
    match st {
        WaitStatus::Exited(_, code) => Some(Error::Exited {
            tid,
            how: format!("exit status {code}"),
        }),
        WaitStatus::Signaled(_, sig, _) => Some(Error::Exited {
            tid,
            how: format!("killed by {sig}"),
        }),
        _ => None,
    }
}

impl Tracee {
    /// Freeze a running task: `PTRACE_SEIZE` + `PTRACE_INTERRUPT`, wait for the stop.
    /// A signal that was about to be delivered is let through first (as if the freeze
    /// had come a moment later). On drop the task resumes exactly as it was.
    pub fn seize(tgid: i32, tid: i32) -> Result<Tracee> {
        Self::seize_as(tgid, tid, WhenDropped::Resume)
    }

    /// Take control of a restore child parked in `pause()` once its in-child setup is
    /// done. It dies with its tracer (PTRACE_O_EXITKILL), threads created by injected
    /// clones are traced too, and it is killed on drop.
    pub fn seize_restored(pid: i32) -> Result<Tracee> {
        Self::seize_as(pid, pid, WhenDropped::Kill)
    }

    fn seize_as(tgid: i32, tid: i32, when_dropped: WhenDropped) -> Result<Tracee> {
        let mut opts = libc::PTRACE_O_TRACESYSGOOD;
        if when_dropped == WhenDropped::Kill {
            opts |= libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACECLONE;
        }
        ptrace_raw(libc::PTRACE_SEIZE, tid, 0, opts as usize)?;
        ptrace_raw(libc::PTRACE_INTERRUPT, tid, 0, 0)?;
        let mut t = Tracee {
            tid,
            tgid,
            base_regs: zero_regs(),
            base_sigmask: 0,
            when_dropped,
            released: true, // nothing to put back until the stop is confirmed
            cloned: Vec::new(),
            opts,
            sud: SudConfig::default(),
            rescue: None,
            rescue_tried: false,
        };
        for _ in 0..64 {
            let st = wait_task(tid)?;
            if let Some(e) = exited(tid, &st) {
                return Err(e);
            }
            match st {
                WaitStatus::PtraceEvent(_, _, ev) if ev == libc::PTRACE_EVENT_STOP => {
                    t.released = false;
                    t.base_regs = t.regs()?;
                    t.base_sigmask = t.sigmask()?;
                    // A task that is to resume keeps its own mask while it waits: should
                    // we die, it runs on as it was. Signals are blocked only for the
                    // length of each injected call (see `syscall`).
                    if when_dropped == WhenDropped::Kill {
                        t.set_sigmask(!0)?;
                    }
                    return Ok(t);
                }
                WaitStatus::Stopped(_, sig) => {
                    // A signal-delivery stop before our interrupt: deliver it and wait on.
                    ptrace_raw(libc::PTRACE_CONT, tid, 0, sig as usize)?;
                }
                _ => {
                    ptrace_raw(libc::PTRACE_CONT, tid, 0, 0)?;
                }
            }
        }
        let _ = ptrace_raw(libc::PTRACE_DETACH, tid, 0, 0);
        Err(Error::Unexpected {
            tid,
            msg: "did not reach a ptrace stop".into(),
        })
    }

    /// Take control of a restore child that ran `PTRACE_TRACEME` and stopped itself with
    /// SIGSTOP. On drop it is killed.
    pub fn adopt_stopped_child(pid: i32) -> Result<Tracee> {
        let mut t = Tracee {
            tid: pid,
            tgid: pid,
            base_regs: zero_regs(),
            base_sigmask: 0,
            when_dropped: WhenDropped::Kill,
            released: false,
            cloned: Vec::new(),
            opts: 0,
            sud: SudConfig::default(),
            rescue: None,
            rescue_tried: false,
        };
        let st = wait_task(pid)?;
        if let Some(e) = exited(pid, &st) {
            t.released = true;
            return Err(e);
        }
        match st {
            WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
            other => {
                return Err(Error::Unexpected {
                    tid: pid,
                    msg: format!("restore child stopped unexpectedly: {other:?}"),
                })
            }
        }
        let opts =
            libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACECLONE;
        ptrace_raw(libc::PTRACE_SETOPTIONS, pid, 0, opts as usize)?;
        t.opts = opts;
        t.base_regs = t.regs()?;
        t.set_sigmask(!0)?;
        Ok(t)
    }

    /// Take control of a thread created by an injected `clone` (auto-attached through
    /// PTRACE_O_TRACECLONE; it starts in a SIGSTOP delivery stop). Killed on drop.
    pub fn adopt_clone(tgid: i32, tid: i32) -> Result<Tracee> {
        let mut t = Tracee {
            tid,
            tgid,
            base_regs: zero_regs(),
            base_sigmask: 0,
            when_dropped: WhenDropped::Kill,
            released: false,
            cloned: Vec::new(),
            // A task auto-attached by PTRACE_O_TRACECLONE inherits its creator's options.
            opts: libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACECLONE,
            sud: SudConfig::default(),
            rescue: None,
            rescue_tried: false,
        };
        let st = wait_task(tid)?;
        if let Some(e) = exited(tid, &st) {
            t.released = true;
            return Err(e);
        }
        if !matches!(
            st,
            WaitStatus::Stopped(_, Signal::SIGSTOP) | WaitStatus::PtraceEvent(..)
        ) {
            return Err(Error::Unexpected {
                tid,
                msg: format!("new thread stopped unexpectedly: {st:?}"),
            });
        }
        t.base_regs = t.regs()?;
        t.set_sigmask(!0)?;
        Ok(t)
    }

    pub fn tid(&self) -> i32 {
        self.tid
    }

    pub fn tgid(&self) -> i32 {
        self.tgid
    }

    /// Registers as they were when we took control.
    pub fn original_regs(&self) -> &Regs {
        &self.base_regs
    }

    /// Signal mask as it was when we took control (a task being restored has all
    /// signals blocked meanwhile; a frozen one only during each injected call).
    pub fn original_sigmask(&self) -> u64 {
        self.base_sigmask
    }

    /// What the task holds between injected calls if it is to resume: its own
    /// registers, an interrupted syscall set up to restart.
    pub(crate) fn resting_regs(&self) -> Regs {
        let mut regs = self.base_regs;
        fixup_restart(&mut regs, RestartPolicy::Original);
        regs
    }

    pub(crate) fn when_dropped(&self) -> WhenDropped {
        self.when_dropped
    }

    /// Use `regs` as the base for later injected calls (e.g. after a clone).
    pub fn set_base_regs(&mut self, regs: Regs) {
        self.base_regs = regs;
    }

    pub fn regs(&self) -> Result<Regs> {
        let mut regs = zero_regs();
        ptrace_raw(
            libc::PTRACE_GETREGS,
            self.tid,
            0,
            &mut regs as *mut Regs as usize,
        )?;
        Ok(regs)
    }

    pub fn set_regs(&self, regs: &Regs) -> Result<()> {
        ptrace_raw(
            libc::PTRACE_SETREGS,
            self.tid,
            0,
            regs as *const Regs as usize,
        )?;
        Ok(())
    }

    /// The full XSAVE area (x87, SSE, AVX, AVX-512, PKRU...), standard format.
    pub fn xstate(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; XSTATE_MAX];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut c_void,
            iov_len: buf.len(),
        };
        ptrace_raw(
            libc::PTRACE_GETREGSET,
            self.tid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec as usize,
        )?;
        buf.truncate(iov.iov_len);
        Ok(buf)
    }

    pub fn set_xstate(&self, data: &[u8]) -> Result<()> {
        let mut copy = data.to_vec();
        let mut iov = libc::iovec {
            iov_base: copy.as_mut_ptr() as *mut c_void,
            iov_len: copy.len(),
        };
        ptrace_raw(
            libc::PTRACE_SETREGSET,
            self.tid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec as usize,
        )?;
        Ok(())
    }

    pub fn sigmask(&self) -> Result<u64> {
        let mut mask: u64 = 0;
        ptrace_raw(
            PTRACE_GETSIGMASK,
            self.tid,
            8,
            &mut mask as *mut u64 as usize,
        )?;
        Ok(mask)
    }

    pub fn set_sigmask(&self, mask: u64) -> Result<()> {
        ptrace_raw(PTRACE_SETSIGMASK, self.tid, 8, &mask as *const u64 as usize)?;
        Ok(())
    }

    /// The task's rseq registration, if any.
    pub fn rseq(&self) -> Result<Option<RseqConfig>> {
        let mut raw = RawRseqConfig::default();
        ptrace_raw(
            PTRACE_GET_RSEQ_CONFIGURATION,
            self.tid,
            std::mem::size_of::<RawRseqConfig>(),
            &mut raw as *mut RawRseqConfig as usize,
        )?;
        Ok((raw.ptr != 0).then_some(RseqConfig {
            ptr: raw.ptr,
            len: raw.size,
            sig: raw.sig,
            flags: raw.flags,
        }))
    }

    /// Pending signals without dequeuing them: the thread's own queue, or the shared
    /// (process-wide) queue.
    pub fn pending_signals(&self, shared: bool) -> Result<Vec<SigInfo>> {
        let mut out = Vec::new();
        loop {
            let mut buf = [[0u8; 128]; 32];
            let args = PeekSigInfoArgs {
                off: out.len() as u64,
                flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
                nr: buf.len() as i32,
            };
            let n = ptrace_raw(
                PTRACE_PEEKSIGINFO,
                self.tid,
                &args as *const PeekSigInfoArgs as usize,
                buf.as_mut_ptr() as usize,
            )? as usize;
            out.extend_from_slice(&buf[..n]);
            if n < buf.len() {
                return Ok(out);
            }
        }
    }

    /// The task's seccomp filter number `index` (0 is the oldest) as raw `struct
    /// sock_filter` bytes (8 per instruction), or None past the last one. Needs
    /// CAP_SYS_ADMIN in the tracer (EACCES otherwise).
    pub fn seccomp_filter(&self, index: u64) -> Result<Option<Vec<u8>>> {
        let n = match ptrace_raw(PTRACE_SECCOMP_GET_FILTER, self.tid, index as usize, 0) {
            Ok(n) => n as usize,
            Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; n * 8];
        let got = ptrace_raw(
            PTRACE_SECCOMP_GET_FILTER,
            self.tid,
            index as usize,
            buf.as_mut_ptr() as usize,
        )? as usize;
        buf.truncate(got.min(n) * 8);
        Ok(Some(buf))
    }

    /// The flags (`SECCOMP_FILTER_FLAG_*`) seccomp filter `index` was installed with.
    pub fn seccomp_flags(&self, index: u64) -> Result<u64> {
        let mut md = SeccompMetadata {
            filter_off: index,
            flags: 0,
        };
        ptrace_raw(
            PTRACE_SECCOMP_GET_METADATA,
            self.tid,
            std::mem::size_of::<SeccompMetadata>(),
            &mut md as *mut SeccompMetadata as usize,
        )?;
        Ok(md.flags)
    }

    /// Let the task's syscalls (injected ones included) bypass its seccomp filters
    /// while it is traced (PTRACE_O_SUSPEND_SECCOMP; needs CAP_SYS_ADMIN and a tracer
    /// not itself under seccomp). Detaching ends it.
    pub fn suspend_seccomp(&mut self) -> Result<()> {
        let opts = self.opts | PTRACE_O_SUSPEND_SECCOMP;
        ptrace_raw(libc::PTRACE_SETOPTIONS, self.tid, 0, opts as usize)?;
        self.opts = opts;
        Ok(())
    }

    /// The task's syscall user dispatch configuration.
    pub fn sud_config(&self) -> Result<SudConfig> {
        let mut c = SudConfig::default();
        ptrace_raw(
            PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG,
            self.tid,
            std::mem::size_of::<SudConfig>(),
            &mut c as *mut SudConfig as usize,
        )?;
        Ok(c)
    }

    /// Set the task's syscall user dispatch configuration (after its last injected
    /// syscall: with the selector at BLOCK an injected call would get SIGSYS).
    pub fn set_sud_config(&self, c: &SudConfig) -> Result<()> {
        ptrace_raw(
            PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG,
            self.tid,
            std::mem::size_of::<SudConfig>(),
            c as *const SudConfig as usize,
        )?;
        Ok(())
    }

    /// Turn the task's syscall user dispatch off while we inject syscalls (with its
    /// selector at BLOCK they would get SIGSYS); it is set back when the task is put
    /// back. Returns the configuration as found.
    pub fn pause_sud(&mut self) -> Result<SudConfig> {
        let c = self.sud_config()?;
        if c.mode != 0 {
            self.set_sud_config(&SudConfig::default())?;
            self.sud = c;
        }
        Ok(c)
    }

    /// The syscall user dispatch configuration [`Tracee::pause_sud`] found.
    pub fn original_sud(&self) -> SudConfig {
        self.sud
    }

    /// Put the task back as we found it (registers with the interrupted syscall set up
    /// to restart, signal mask), then detach. Only for `Resume` tracees.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.put_back()
    }

    fn put_back(&self) -> Result<()> {
        // Mask first: should we die between the two, registers still pointing into an
        // injected call return through the rescue frame, which sets the mask anyway.
        self.set_sigmask(self.base_sigmask)?;
        self.set_regs(&self.resting_regs())?;
        if self.sud.mode != 0 {
            self.set_sud_config(&self.sud)?;
        }
        ptrace_raw(libc::PTRACE_DETACH, self.tid, 0, 0)?;
        Ok(())
    }

    /// Detach and let the task run with whatever state it has now (restore's final step).
    pub fn detach(mut self) -> Result<()> {
        self.released = true;
        ptrace_raw(libc::PTRACE_DETACH, self.tid, 0, 0)?;
        Ok(())
    }

    /// The caller killed the task's process: nothing is to be put back on drop.
    pub fn forget(mut self) {
        self.released = true;
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        match self.when_dropped {
            WhenDropped::Resume => {
                let _ = self.put_back();
            }
            WhenDropped::Kill => {
                let _ = nix::sys::signal::kill(Pid::from_raw(self.tgid), Signal::SIGKILL);
            }
        }
    }
}

pub(crate) fn zero_regs() -> Regs {
    // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

macro_rules! reg_fields {
    ($m:ident) => {
        $m!(
            r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip,
            cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs
        )
    };
}

/// Registers as 27 integers in [`REG_NAMES`] order.
pub fn regs_to_array(r: &Regs) -> [u64; 27] {
    macro_rules! out {
        ($($f:ident),*) => { [$(r.$f),*] };
    }
    reg_fields!(out)
}

/// Registers from 27 integers in [`REG_NAMES`] order.
pub fn regs_from_array(a: &[u64; 27]) -> Regs {
    let mut r = zero_regs();
    let mut it = a.iter();
    macro_rules! fill {
        ($($f:ident),*) => { $( r.$f = *it.next().unwrap_or(&0); )* };
    }
    reg_fields!(fill);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_syscall(nr: u64, ret: i64) -> Regs {
        let mut r = zero_regs();
        r.orig_rax = nr;
        r.rax = ret as u64;
        r.rip = 0x1002;
        r
    }

    #[test]
    fn restart_fixup_follows_the_kernel_table() {
        for code in [-512, -513, -514] {
            let mut r = in_syscall(0, code);
            fixup_restart(&mut r, RestartPolicy::Fresh);
            assert_eq!((r.rax, r.rip, r.orig_rax), (0, 0x1000, u64::MAX));
        }
        let mut r = in_syscall(230, -516);
        fixup_restart(&mut r, RestartPolicy::Original);
        assert_eq!((r.rax, r.rip), (libc::SYS_restart_syscall as u64, 0x1000));
        let mut r = in_syscall(230, -516);
        fixup_restart(&mut r, RestartPolicy::Fresh);
        assert_eq!((r.rax, r.rip), (230, 0x1000));
        // Not in a syscall, or a syscall that already returned: untouched but orig_rax.
        let mut r = in_syscall(u64::MAX, -512);
        fixup_restart(&mut r, RestartPolicy::Fresh);
        assert_eq!((r.rax as i64, r.rip), (-512, 0x1002));
        let mut r = in_syscall(232, -4);
        fixup_restart(&mut r, RestartPolicy::Fresh);
        assert_eq!((r.rax as i64, r.rip, r.orig_rax), (-4, 0x1002, u64::MAX));
    }

    #[test]
    fn registers_round_trip_through_the_array_form() {
        let a: [u64; 27] = std::array::from_fn(|i| i as u64 * 3 + 1);
        assert_eq!(regs_to_array(&regs_from_array(&a)), a);
        assert_eq!(regs_from_array(&a).rip, a[16]);
    }
}
