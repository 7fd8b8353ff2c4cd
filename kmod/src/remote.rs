//! Remote syscalls: a system call executed by the traced task itself.
//!
//! The task's registers are pointed at an existing `syscall` instruction (`0f 05`) with
//! the number in `rax`, arguments in `rdi rsi rdx r10 r8 r9` and `orig_rax = -1`; one
//! `PTRACE_SYSCALL` runs it to the entry stop, a second to the exit stop, where `rax`
//! holds the result. Nothing after the instruction ever runs. All signals are blocked in
//! the task meanwhile. A task frozen for a checkpoint must survive our death at any
//! moment: see [`Tracee::syscall`] and [`crate::rescue`].

use crate::cpu::xsave_end;
use crate::error::{Error, Result};
use crate::fault;
use crate::mem::{read_memory, write_memory};
use crate::ptrace::{ptrace_raw, wait_task, Regs, Tracee, WhenDropped};
use crate::rescue::{
    build_frame, find_gadgets, has_shadow_stack, in_one_writable_mapping, Frame, UC_STACK_OFF,
};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

/// The rescue frame of one frozen task (see [`crate::rescue`]) and the stack bytes it
/// covers, put back after every injected call.
#[derive(Debug)]
pub(crate) struct Rescue {
    frame: Frame,
    saved: Vec<u8>,
    syscall_ret: u64,
}

impl Tracee {
    /// Run syscall `nr` with `args` inside this task, using the `syscall` instruction at
    /// `gadget`. Returns the raw result (negative errno on failure).
    ///
    /// A task that is to resume (a checkpoint's) is left between calls with its own
    /// registers and signal mask, so that if this process dies the kernel's detach lets
    /// it run on as it was; during the call itself a signal frame on its stack brings it
    /// back (see [`crate::rescue`]). Signals are blocked only while the call runs.
    pub fn syscall(&mut self, gadget: u64, nr: i64, args: &[u64]) -> Result<i64> {
        if self.when_dropped() == WhenDropped::Kill {
            let r = self.injected_regs(gadget, nr, args, None);
            self.set_regs(&r)?;
            self.run_to_syscall_stop(nr)?; // entry
            self.run_to_syscall_stop(nr)?; // exit
            return Ok(self.regs()?.rax as i64);
        }
        if !self.rescue_tried {
            self.rescue_tried = true;
            self.arm_rescue(gadget);
        }
        self.guarded_syscall(gadget, nr, args)
    }

    fn injected_regs(&self, gadget: u64, nr: i64, args: &[u64], rescue: Option<&Rescue>) -> Regs {
        let mut r = *self.original_regs();
        r.rip = gadget;
        if let Some(x) = rescue {
            r.rip = x.syscall_ret;
            r.rsp = x.frame.addr;
        }
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (a[0], a[1], a[2], a[3], a[4], a[5]);
        r
    }

    fn guarded_syscall(&mut self, gadget: u64, nr: i64, args: &[u64]) -> Result<i64> {
        let pid = self.tgid();
        if let Some(x) = &self.rescue {
            if write_memory(pid, &x.frame.bytes, &[(x.frame.addr, x.frame.bytes.len())]).is_err() {
                self.rescue = None; // cannot place it any more: go on without
            }
        }
        let r = self.injected_regs(gadget, nr, args, self.rescue.as_ref());
        fault::next_call(nr);
        // Order matters for a death at any point: registers first (the frame restores
        // the mask), then the mask; after the call, the mask back first, then registers.
        let ran = self
            .set_regs(&r)
            .and_then(|_| self.set_sigmask(!0))
            .map(|_| fault::point("regs"))
            .and_then(|_| self.run_to_syscall_stop(nr)) // entry
            .map(|_| fault::point("entry"))
            .and_then(|_| self.run_to_syscall_stop(nr)) // exit
            .map(|_| fault::point("exit"))
            .and_then(|_| self.regs());
        let back = self
            .set_sigmask(self.original_sigmask())
            .and_then(|_| self.set_regs(&self.resting_regs()));
        if let Some(x) = &self.rescue {
            let _ = write_memory(pid, &x.saved, &[(x.frame.addr, x.saved.len())]);
        }
        let ret = ran?.rax as i64;
        back?;
        Ok(ret)
    }

    /// Prepare the rescue frame, if this task's stack and mappings allow one; its first
    /// use is `sigaltstack(NULL, &frame.uc_stack)`, which fills the frame's altstack.
    fn arm_rescue(&mut self, gadget: u64) {
        let (pid, tid) = (self.tgid(), self.tid());
        let g = find_gadgets(pid);
        let (Some(syscall_ret), Some(sigreturn)) = (g.syscall_ret, g.sigreturn) else {
            return;
        };
        if has_shadow_stack(pid, tid) || fault::bare() {
            return;
        }
        let Ok(xstate) = self.xstate() else { return };
        let Some(bv) = xstate.get(512..520).and_then(|b| b.try_into().ok()) else {
            return;
        };
        let len = xsave_end(u64::from_le_bytes(bv));
        let regs = self.original_regs();
        let Some(frame) = build_frame(regs, self.original_sigmask(), &xstate, len, sigreturn)
        else {
            return;
        };
        let end = frame.addr + frame.bytes.len() as u64;
        if !in_one_writable_mapping(pid, tid, frame.addr, end) {
            return;
        }
        let mut saved = vec![0u8; frame.bytes.len()];
        let len = saved.len();
        if read_memory(pid, &mut saved, &[(frame.addr, len)]).is_err() {
            return;
        }
        let uc_stack = frame.addr + UC_STACK_OFF;
        self.rescue = Some(Rescue {
            frame,
            saved,
            syscall_ret,
        });
        let filled = self
            .guarded_syscall(gadget, libc::SYS_sigaltstack, &[0, uc_stack])
            .ok()
            .filter(|r| *r == 0);
        let mut got = [0u8; 24];
        match (filled, &mut self.rescue) {
            (Some(_), Some(x)) if read_memory(pid, &mut got, &[(uc_stack, 24)]).is_ok() => {
                let o = UC_STACK_OFF as usize;
                x.frame.bytes[o..o + 24].copy_from_slice(&got);
            }
            _ => self.rescue = None,
        }
    }

    /// Whether injected calls into this task run with a rescue frame (tests, reports).
    pub fn has_rescue_frame(&self) -> bool {
        self.rescue.is_some()
    }

    /// Like [`Tracee::syscall`], but a negative result is an error naming the call.
    pub fn syscall_ok(
        &mut self,
        gadget: u64,
        nr: i64,
        args: &[u64],
        what: &'static str,
    ) -> Result<i64> {
        let ret = self.syscall(gadget, nr, args)?;
        if (-4095..0).contains(&ret) {
            return Err(Error::Sys {
                call: what,
                tid: self.tid(),
                errno: nix::errno::Errno::from_raw(-ret as i32),
            });
        }
        Ok(ret)
    }

    /// Tids of threads created by injected clones since the last call.
    pub fn take_cloned(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.cloned)
    }

    fn run_to_syscall_stop(&mut self, nr: i64) -> Result<()> {
        let tid = self.tid();
        let mut deliver = 0usize;
        for _ in 0..16 {
            ptrace_raw(libc::PTRACE_SYSCALL, tid, 0, deliver)?;
            deliver = 0;
            match wait_task(tid)? {
                WaitStatus::PtraceSyscall(_) => return Ok(()),
                WaitStatus::PtraceEvent(_, _, ev)
                    if ev == libc::PTRACE_EVENT_CLONE
                        || ev == libc::PTRACE_EVENT_FORK
                        || ev == libc::PTRACE_EVENT_VFORK =>
                {
                    let mut msg: libc::c_ulong = 0;
                    ptrace_raw(
                        libc::PTRACE_GETEVENTMSG,
                        tid,
                        0,
                        &mut msg as *mut libc::c_ulong as usize,
                    )?;
                    self.cloned.push(msg as i32);
                }
                WaitStatus::PtraceEvent(..) => {}
                WaitStatus::Stopped(_, sig) => match sig {
                    Signal::SIGSEGV
                    | Signal::SIGBUS
                    | Signal::SIGILL
                    | Signal::SIGFPE
                    | Signal::SIGSYS => {
                        return Err(Error::Unexpected {
                            tid,
                            msg: format!("{sig} while running injected syscall {nr}"),
                        });
                    }
                    // Only unblockable signals can arrive (everything else is blocked):
                    // a stray SIGSTOP is swallowed.
                    _ => {}
                },
                WaitStatus::Exited(_, code) => {
                    return Err(Error::Exited {
                        tid,
                        how: format!("exit status {code} during injected syscall {nr}"),
                    })
                }
                WaitStatus::Signaled(_, sig, _) => {
                    return Err(Error::Exited {
                        tid,
                        how: format!("killed by {sig} during injected syscall {nr}"),
                    })
                }
                other => {
                    return Err(Error::Unexpected {
                        tid,
                        msg: format!("unexpected stop {other:?} during injected syscall {nr}"),
                    })
                }
            }
        }
        Err(Error::Unexpected {
            tid,
            msg: format!("injected syscall {nr} did not reach its stop"),
        })
    }
}

/// Find a `syscall` instruction (`0f 05`) already mapped executable in `pid`: in its
/// `[vdso]` first, else in any other executable mapping. Nothing is written.
pub fn find_syscall_gadget(pid: i32) -> Result<u64> {
    let maps =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| Error::Unexpected {
            tid: pid,
            msg: format!("cannot read /proc/{pid}/maps: {e}"),
        })?;
    let mut candidates: Vec<(u64, u64, bool)> = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.contains('x') {
            continue;
        }
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if name == "[vsyscall]" {
            continue;
        }
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        candidates.push((s, e, name == "[vdso]"));
    }
    candidates.sort_by_key(|c| !c.2);
    for (start, end, _) in candidates {
        let len = (end - start).min(1 << 20) as usize;
        let mut buf = vec![0u8; len];
        if read_memory(pid, &mut buf, &[(start, len)]).is_err() {
            continue;
        }
        if let Some(off) = buf.windows(2).position(|w| w == [0x0f, 0x05]) {
            return Ok(start + off as u64);
        }
    }
    Err(Error::Unexpected {
        tid: pid,
        msg: "no syscall instruction found in any executable mapping".into(),
    })
}
