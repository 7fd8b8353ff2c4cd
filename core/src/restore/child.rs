//! A restore child's own setup: what normal code can set up (plugins' in-child steps:
//! cwd, umask, descriptors; then name, personality, rlimits) before the restorer
//! replaces its memory and threads. `tree.rs` forks the children and calls it.

use super::tree::Plugins;
use crate::error::{Error, Result};
use crate::model::ProcessImage;
use crate::plugin::TreeView;
use spirit_kmod::{get_rlimit, set_personality, set_rlimit};

pub(crate) fn setup(tree: &TreeView<'_>, proc: &ProcessImage, plugins: Plugins<'_>) -> Result<()> {
    let _ =
        nix::sys::prctl::set_name(&std::ffi::CString::new(proc.comm.clone()).unwrap_or_default());
    set_personality(proc.personality)?;
    let mut keep = Vec::new();
    for (p, st) in plugins.list.iter().zip(plugins.states) {
        if let Some(sec) = proc.section(p.name()) {
            keep.extend(p.restore_in_child(st, tree, proc, &sec.data)?);
        }
    }
    close_others(&keep)?;
    for rl in &proc.rlimits {
        // A hard limit above ours cannot be raised without CAP_SYS_RESOURCE (which even
        // root lacks on some hosts, KERNEL-NOTES): keep what we may.
        let (_, hard_now) = get_rlimit(rl.resource)?;
        let max = if nix::unistd::geteuid().is_root() {
            rl.max
        } else {
            rl.max.min(hard_now)
        };
        let cur = rl.cur.min(max);
        if set_rlimit(rl.resource, cur, max).is_err() {
            let max = rl.max.min(hard_now);
            set_rlimit(rl.resource, rl.cur.min(max), max).map_err(Error::from)?;
        }
    }
    Ok(())
}

fn close_others(keep: &[i32]) -> Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::io("/proc/self/fd", e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
    Ok(())
}
