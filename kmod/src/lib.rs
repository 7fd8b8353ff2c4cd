//! spirit's kernel-interface layer.
//!
//! Everything spirit does to another process goes through this crate: freezing its
//! threads (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`), reading and writing registers and the
//! full xstate, copying memory (`process_vm_readv`/`writev`, `/proc/PID/mem` for
//! protected pages), and running system calls *inside* the traced task ("remote
//! syscalls": registers steered to an existing `syscall` instruction, one entry and one
//! exit stop per call, no code blob ever loaded). It also owns the few raw syscalls the
//! rest of the project needs (`clone3` with `set_tid`, `get_robust_list`, `cpuid`).
//!
//! Data flow: `core` seizes a [`Tracee`] per thread, reads its state, injects calls with
//! [`Tracee::syscall`], and either hands the task back exactly as it found it
//! ([`Tracee::release`], also done on drop) or, for a task being built by a restore,
//! kills it on drop so a half-restored process never runs.
//!
//! All `unsafe` code of the project lives here, each block with a `// SAFETY:` note.
//! This crate knows nothing about images or plugins.

mod cpu;
mod error;
pub mod fd;
mod mem;
mod ptrace;
mod remote;
pub mod sockraw;
mod sys;

pub use cpu::{host_cpu, CpuFeatures, XComponent};
pub use error::{Error, Result};
pub use mem::{read_memory, write_memory};
pub use ptrace::{
    fixup_restart, regs_from_array, regs_to_array, Regs, RestartPolicy, RseqConfig, SigInfo,
    Tracee, WhenDropped, REG_NAMES,
};
pub use remote::find_syscall_gadget;
pub use sys::{
    clear_child_subreaper, clone3_fork, clone3_fork_with, close_fds_from, close_inherited_fds,
    die_with_status, exit_now, get_rlimit, get_robust_list, ignore_signal, set_child_subreaper,
    set_personality, set_rlimit, ForkOutcome, SharedBoard, Slot,
};

/// Size of a page on x86_64.
pub const PAGE_SIZE: u64 = 4096;
