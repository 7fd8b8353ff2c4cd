//! `spirit check`: which kernel features spirit needs are present here, tested for
//! real where that is cheap (a throwaway child is frozen and made to run a syscall).

use serde_json::json;
use spirit_kmod::{find_syscall_gadget, Tracee};

struct Item {
    name: &'static str,
    ok: bool,
    required: bool,
    detail: String,
}

fn kernel_at_least(major: u32, minor: u32) -> (bool, String) {
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    let v = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (v >= (major, minor), rel)
}

fn cap_effective(bit: u32) -> bool {
    spirit_core::procinfo::status(std::process::id() as i32)
        .is_ok_and(|s| s.capeff & (1u64 << bit) != 0)
}

/// Freeze a child, run getpid() inside it, let it go.
fn remote_syscall_works() -> (bool, String) {
    let mut child = match std::process::Command::new("sleep").arg("30").spawn() {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot start a test process: {e}")),
    };
    let pid = child.id() as i32;
    let result = (|| -> Result<String, String> {
        let mut t = Tracee::seize(pid, pid).map_err(|e| e.to_string())?;
        let gadget = find_syscall_gadget(pid).map_err(|e| e.to_string())?;
        let got = t
            .syscall(gadget, libc::SYS_getpid, &[])
            .map_err(|e| e.to_string())?;
        let rseq = t
            .rseq()
            .map_err(|e| format!("PTRACE_GET_RSEQ_CONFIGURATION: {e}"))?;
        let xs = t.xstate().map_err(|e| format!("NT_X86_XSTATE: {e}"))?;
        t.release().map_err(|e| e.to_string())?;
        if got != i64::from(pid) {
            return Err(format!("injected getpid returned {got}, expected {pid}"));
        }
        Ok(format!(
            "injected getpid ok; xstate {} bytes; rseq {}",
            xs.len(),
            if rseq.is_some() {
                "registered"
            } else {
                "not registered"
            }
        ))
    })();
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Ok(s) => (true, s),
        Err(e) => (false, e),
    }
}

pub fn check(json_out: bool) -> i32 {
    let mut items = Vec::new();
    let (k, rel) = kernel_at_least(5, 13);
    items.push(Item {
        name: "kernel",
        ok: k,
        required: true,
        detail: format!("{rel} (needs 5.13+: clone3 set_tid, close_range, rseq via ptrace)"),
    });
    let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .map(|s| s.trim().to_string());
    items.push(Item {
        name: "ptrace",
        ok: yama.as_deref() != Some("3"),
        required: true,
        detail: match yama {
            Some(v) => format!("Yama ptrace_scope = {v}"),
            None => "Yama absent".into(),
        },
    });
    let (ok, detail) = remote_syscall_works();
    items.push(Item {
        name: "remote-syscall",
        ok,
        required: true,
        detail,
    });
    let cpu = spirit_kmod::host_cpu();
    items.push(Item {
        name: "xsave",
        ok: cpu.xfeatures != 0,
        required: true,
        detail: format!(
            "xfeatures {:#x}, {} bytes, {}",
            cpu.xfeatures, cpu.xsave_size, cpu.model_name
        ),
    });
    let pagemap = std::fs::File::open("/proc/self/pagemap").is_ok();
    items.push(Item {
        name: "pagemap",
        ok: pagemap,
        required: true,
        detail: "/proc/PID/pagemap readable".into(),
    });
    let cr = cap_effective(40) || cap_effective(21);
    items.push(Item {
        name: "original-pids",
        ok: cr,
        required: false,
        detail: if cr {
            "CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN: original pids and the exe link can be restored".into()
        } else {
            "no CAP_CHECKPOINT_RESTORE: restore needs --new-pid, the exe link stays the restorer's".into()
        },
    });
    let admin = cap_effective(21);
    items.push(Item {
        name: "seccomp",
        ok: admin,
        required: false,
        detail: if admin {
            "CAP_SYS_ADMIN: seccomp filters can be read and suspended: filtered processes can be checkpointed".into()
        } else {
            "no CAP_SYS_ADMIN: processes under seccomp are refused (their filters cannot be read)".into()
        },
    });
    let ids = spirit_kmod::timer_restore_ids_supported();
    items.push(Item {
        name: "timer-ids",
        ok: ids,
        required: false,
        detail: if ids {
            "PR_TIMER_CREATE_RESTORE_IDS: POSIX timers come back with their ids".into()
        } else {
            "no PR_TIMER_CREATE_RESTORE_IDS: a process whose POSIX timer ids are not 0, 1, 2... is refused".into()
        },
    });
    let uffd = std::path::Path::new("/proc/sys/vm/unprivileged_userfaultfd").exists()
        || std::path::Path::new("/dev/userfaultfd").exists();
    items.push(Item {
        name: "userfaultfd",
        ok: uffd,
        required: false,
        detail: "for lazy migration (later)".into(),
    });
    let all_ok = items.iter().all(|i| i.ok || !i.required);
    if json_out {
        let v: Vec<_> = items
            .iter()
            .map(
                |i| json!({"name": i.name, "ok": i.ok, "required": i.required, "detail": i.detail}),
            )
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"ok": all_ok, "checks": v})).unwrap_or_default()
        );
    } else {
        for i in &items {
            let mark = match (i.ok, i.required) {
                (true, _) => "ok     ",
                (false, true) => "MISSING",
                (false, false) => "absent ",
            };
            println!("{mark} {:<15} {}", i.name, i.detail);
        }
        println!(
            "{}",
            if all_ok {
                "spirit can run here."
            } else {
                "spirit cannot run here: see MISSING above."
            }
        );
    }
    if all_ok {
        0
    } else {
        1
    }
}
