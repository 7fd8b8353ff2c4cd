//! Fault injection for the tests: `SPIRIT_FAULT=die:N:WHERE` makes this process SIGKILL
//! itself at point WHERE of the Nth injected syscall into a task that is to resume
//! (`regs`: its registers set, the call not started; `entry`: at the syscall-entry stop;
//! `exit`: at the syscall-exit stop, result not yet taken). `SPIRIT_FAULT=count` prints
//! the number of such calls on standard error at each one. `die:N:WHERE:bare` also
//! leaves the rescue frame out (the negative control: the task must then die at
//! `entry`). Unset, nothing happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

enum Plan {
    None,
    Count,
    Die(u64, String, bool),
}

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let Ok(v) = std::env::var("SPIRIT_FAULT") else {
            return Plan::None;
        };
        if v == "count" {
            return Plan::Count;
        }
        let f: Vec<&str> = v.split(':').collect();
        match (f.first(), f.get(1).and_then(|n| n.parse().ok()), f.get(2)) {
            (Some(&"die"), Some(n), Some(at)) => {
                Plan::Die(n, at.to_string(), f.get(3) == Some(&"bare"))
            }
            _ => Plan::None,
        }
    })
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// A new injected call begins.
pub(crate) fn next_call(nr: i64) {
    if matches!(plan(), Plan::None) {
        return;
    }
    let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if matches!(plan(), Plan::Count) {
        eprintln!("spirit-fault: injected call {n}: syscall {nr}");
    }
}

/// Point `at` of the current injected call.
pub(crate) fn point(at: &str) {
    if let Plan::Die(n, want, _) = plan() {
        if CALLS.load(Ordering::SeqCst) == *n && want == at {
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGKILL);
        }
    }
}

/// Whether the rescue frame is to be left out (negative control).
pub(crate) fn bare() -> bool {
    matches!(plan(), Plan::Die(_, _, true))
}
