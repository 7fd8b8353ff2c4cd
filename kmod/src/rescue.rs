//! The way back for a checkpointed task whose tracer dies in the middle of an injected
//! syscall (KERNEL-NOTES P2).
//!
//! When a tracer dies, the kernel detaches its tracees and lets them run on with whatever
//! registers they have. Between injected calls a frozen task holds its own registers
//! (set up to restart an interrupted syscall) and its own signal mask, so it simply
//! continues. During an injected call it cannot: its registers point at our `syscall`
//! instruction. For that stretch we do what CRIU's parasite does: a signal frame is
//! prepared on the task's stack, below the red zone, holding its original registers,
//! signal mask, alternate stack and full xstate, and the call is made through a
//! `syscall; ret` sequence with `rsp` at the frame's return address, which is an
//! existing `mov $15,%rax; syscall` (`rt_sigreturn`, glibc's `__restore_rt`). Traced,
//! the `ret` never runs (we take the task back at the syscall-exit stop and put its
//! registers back). Untraced after a tracer death, the task returns from our call into
//! `rt_sigreturn` and goes on exactly where it was. Nothing is written into code; the
//! stack bytes under the frame are put back after every call.

use crate::mem::read_memory;
use crate::ptrace::{fixup_restart, Regs, RestartPolicy};

/// `syscall; ret`.
const SYSCALL_RET: [u8; 3] = [0x0f, 0x05, 0xc3];
/// `mov $15,%rax; syscall` (glibc's and musl's `__restore_rt`) and `mov $15,%eax; syscall`.
const SIGRETURN: [&[u8]; 2] = [
    &[0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
    &[0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
];

/// Instruction sequences found in a process's executable mappings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gadgets {
    /// `syscall; ret`.
    pub syscall_ret: Option<u64>,
    /// `rt_sigreturn` (`mov $15,%rax; syscall`), the frame's return address.
    pub sigreturn: Option<u64>,
}

/// Look for both sequences in `pid`'s executable mappings (`[vdso]` first; nothing is
/// written). Either may be missing: then no frame is used.
pub fn find_gadgets(pid: i32) -> Gadgets {
    let mut g = Gadgets::default();
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return g;
    };
    let mut areas: Vec<(u64, u64, bool)> = maps
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (range, perms) = (f.first()?, f.get(1)?);
            let name = f.get(5).copied().unwrap_or("");
            if !perms.contains('x') || name == "[vsyscall]" {
                return None;
            }
            let (s, e) = range.split_once('-')?;
            let s = u64::from_str_radix(s, 16).ok()?;
            let e = u64::from_str_radix(e, 16).ok()?;
            Some((s, e, name == "[vdso]"))
        })
        .collect();
    areas.sort_by_key(|a| !a.2);
    for (start, end, _) in areas {
        let len = (end - start).min(16 << 20) as usize;
        let mut buf = vec![0u8; len];
        if read_memory(pid, &mut buf, &[(start, len)]).is_err() {
            continue;
        }
        if g.syscall_ret.is_none() {
            g.syscall_ret = find(&buf, &SYSCALL_RET).map(|o| start + o as u64);
        }
        if g.sigreturn.is_none() {
            g.sigreturn = SIGRETURN
                .iter()
                .find_map(|p| find(&buf, p))
                .map(|o| start + o as u64);
        }
        if g.syscall_ret.is_some() && g.sigreturn.is_some() {
            break;
        }
    }
    g
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// `struct rt_sigframe`: pretcode (8) + `struct ucontext` (304) + `siginfo` (128).
const RT_SIGFRAME: u64 = 8 + 304 + 128;
/// Offset of `uc.uc_stack` in the frame (pretcode, uc_flags, uc_link before it).
pub const UC_STACK_OFF: u64 = 24;
const UC_MCONTEXT_OFF: usize = 48;
const UC_SIGMASK_OFF: usize = 8 + 296;
const RED_ZONE: u64 = 128;

/// A signal frame laid out for `rt_sigreturn`, ready to be written at `addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the frame starts: the return address, and `rsp` for the injected call.
    pub addr: u64,
    pub bytes: Vec<u8>,
}

/// The frame that makes a task whose registers are `regs` (as found at the freeze),
/// whose mask is `sigmask` and whose xstate (`NT_X86_XSTATE`, standard format) is
/// `xstate`, continue where it was after `rt_sigreturn` at `sigreturn`. `uc_stack` is
/// left empty: the first injected call, `sigaltstack(NULL, addr + UC_STACK_OFF)`, fills
/// it in the target (and it must run before any `rt_sigreturn` can use the frame).
///
/// `rt_sigreturn` resets the task's `restart_block`, so an interrupted syscall is
/// issued again from the start ([`RestartPolicy::Fresh`]) on that path.
///
/// Only the first `len` bytes of `xstate` go into the frame, with the software bytes
/// saying so: the kernel falls back to restoring x87/SSE alone when the frame claims
/// more than the task's own xstate size (e.g. AMX tile data it never enabled), so
/// `len` is the end of the last component the task has in use (see `cpu::xsave_end`).
pub fn build_frame(
    regs: &Regs,
    sigmask: u64,
    xstate: &[u8],
    len: usize,
    sigreturn: u64,
) -> Option<Frame> {
    if len < 576 || len > xstate.len() {
        return None;
    }
    let xstate = &xstate[..len];
    let mut r = *regs;
    fixup_restart(&mut r, RestartPolicy::Fresh);
    let top = regs.rsp.checked_sub(RED_ZONE)?;
    let fp_len = xstate.len() as u64 + 4;
    let fp = top.checked_sub(fp_len)? & !63;
    let addr = (fp.checked_sub(RT_SIGFRAME)? & !15) - 8;
    let mut b = vec![0u8; (fp + fp_len - addr) as usize];
    let put = |b: &mut [u8], off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut b, 0, sigreturn);
    put(
        &mut b,
        8,
        UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS,
    );
    // struct sigcontext_64, in its order.
    let gp = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.eflags,
    ];
    for (i, v) in gp.iter().enumerate() {
        put(&mut b, UC_MCONTEXT_OFF + i * 8, *v);
    }
    let seg = UC_MCONTEXT_OFF + 144;
    b[seg..seg + 2].copy_from_slice(&(r.cs as u16).to_le_bytes());
    b[seg + 6..seg + 8].copy_from_slice(&(r.ss as u16).to_le_bytes());
    put(&mut b, UC_MCONTEXT_OFF + 168, sigmask); // oldmask
    put(&mut b, UC_MCONTEXT_OFF + 184, fp); // fpstate
    put(&mut b, UC_SIGMASK_OFF, sigmask);
    // The xstate with the software bytes that tell the kernel the extended state follows.
    let f = (fp - addr) as usize;
    b[f..f + xstate.len()].copy_from_slice(xstate);
    let sw = f + 464;
    // Restore exactly what is in use; everything else comes back in its init state.
    let xfeatures = u64::from_le_bytes(b[f + 512..f + 520].try_into().ok()?);
    b[sw..sw + 4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
    b[sw + 4..sw + 8].copy_from_slice(&(fp_len as u32).to_le_bytes());
    b[sw + 8..sw + 16].copy_from_slice(&xfeatures.to_le_bytes());
    b[sw + 16..sw + 20].copy_from_slice(&(xstate.len() as u32).to_le_bytes());
    let m2 = f + xstate.len();
    b[m2..m2 + 4].copy_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
    Some(Frame { addr, bytes: b })
}

/// Whether `[start, end)` lies inside one writable mapping of `pid` (the stack the
/// frame goes on), so the frame never lands on a guard page or in another mapping.
pub fn in_one_writable_mapping(pid: i32, tid: i32, start: u64, end: u64) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/maps")) else {
        return false;
    };
    maps.lines().any(|line| {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            return false;
        };
        let Some((s, e)) = range.split_once('-') else {
            return false;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            return false;
        };
        perms.starts_with("rw") && s <= start && end <= e
    })
}

/// Whether the task runs with a user shadow stack (a `ret` to our frame's return
/// address would then fault): no frame is used for it.
pub fn has_shadow_stack(pid: i32, tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("x86_Thread_features:") && l.contains("shstk"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptrace::zero_regs;

    #[test]
    fn frame_sits_below_the_red_zone_and_holds_the_fixed_up_registers() {
        let mut r = zero_regs();
        r.rsp = 0x7fff_0000_1008;
        r.rip = 0x40_1002;
        r.orig_rax = 230;
        r.rax = (-516i64) as u64;
        r.rbx = 7;
        let mut xs = vec![0u8; 2440];
        xs[512..520].copy_from_slice(&0x202u64.to_le_bytes());
        let f = build_frame(&r, 0x800, &xs, 2440, 0x1234).expect("frame");
        assert_eq!((f.addr + 8) % 16, 0);
        assert!(f.addr + f.bytes.len() as u64 <= r.rsp - RED_ZONE);
        let word = |off: usize| u64::from_le_bytes(f.bytes[off..off + 8].try_into().unwrap());
        assert_eq!(word(0), 0x1234);
        assert_eq!(word(UC_MCONTEXT_OFF + 88), 7); // rbx
        assert_eq!(word(UC_MCONTEXT_OFF + 104), 230); // rax: the syscall, issued again
        assert_eq!(word(UC_MCONTEXT_OFF + 128), 0x40_1000); // rip: back on `syscall`
        assert_eq!(word(UC_SIGMASK_OFF), 0x800);
        let fp = word(UC_MCONTEXT_OFF + 184);
        assert_eq!(fp % 64, 0);
        let f0 = (fp - f.addr) as usize;
        let magic2 = &f.bytes[f0 + 2440..f0 + 2444];
        assert_eq!(magic2, FP_XSTATE_MAGIC2.to_le_bytes());
        assert_eq!(word(f0 + 464 + 8), 0x202); // xfeatures from the header
    }

    #[test]
    fn no_frame_without_room_or_xstate() {
        let mut r = zero_regs();
        r.rsp = 100;
        assert!(build_frame(&r, 0, &[0u8; 2440], 2440, 1).is_none());
        r.rsp = 1 << 40;
        assert!(build_frame(&r, 0, &[0u8; 100], 100, 1).is_none());
        assert!(build_frame(&r, 0, &[0u8; 2440], 4096, 1).is_none());
        let f = build_frame(&r, 0, &[0u8; 11008], 2696, 1).expect("frame");
        assert!(f.bytes.len() < 2696 + 8 + 440 + 64 + 16);
    }
}
