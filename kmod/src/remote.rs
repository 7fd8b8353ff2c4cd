//! Remote syscalls: a system call executed by the traced task itself.
//!
//! The task's registers are pointed at an existing `syscall` instruction (`0f 05`) with
//! the number in `rax`, arguments in `rdi rsi rdx r10 r8 r9` and `orig_rax = -1`; one
//! `PTRACE_SYSCALL` runs it to the entry stop, a second to the exit stop, where `rax`
//! holds the result. Nothing after the instruction ever runs. All signals are blocked in
//! the task meanwhile ([`Tracee`] does that when it takes control).

use crate::error::{Error, Result};
use crate::mem::read_memory;
use crate::ptrace::{ptrace_raw, wait_task, Tracee};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

impl Tracee {
    /// Run syscall `nr` with `args` inside this task, using the `syscall` instruction at
    /// `gadget`. Returns the raw result (negative errno on failure).
    pub fn syscall(&mut self, gadget: u64, nr: i64, args: &[u64]) -> Result<i64> {
        let mut r = *self.original_regs();
        r.rip = gadget;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (a[0], a[1], a[2], a[3], a[4], a[5]);
        self.set_regs(&r)?;
        self.run_to_syscall_stop(nr)?; // entry
        self.run_to_syscall_stop(nr)?; // exit
        Ok(self.regs()?.rax as i64)
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
