//! Checks before anything is built: the tree's shape, each process record's structure,
//! who may restore it, that its files are there and unchanged, and that its pids are free.

use crate::error::{Error, Result};
use crate::image::ImageReader;
use crate::model::{Header, ProcessImage, TreeNode, VmaKind};
use crate::plugin::{Pipeline, PrepareCtx, TreeState};
use std::io::Read;
use std::time::{Duration, Instant};

/// The tree's nodes, root first, checked against the process records.
pub(crate) fn tree_of(
    header: &Header,
    procs: &[ProcessImage],
    path: &str,
) -> Result<Vec<TreeNode>> {
    let bad = |what: String| Error::Corrupt {
        path: path.to_string(),
        offset: 0,
        what,
    };
    let mut nodes = header.tree.clone();
    if nodes.is_empty() {
        return Err(bad("the header describes no process".into()));
    }
    for n in &nodes {
        let has = procs.iter().any(|p| p.pid == n.pid);
        if has == n.zombie {
            return Err(bad(format!("process {} and its record disagree", n.pid)));
        }
    }
    for p in procs {
        if !nodes.iter().any(|n| n.pid == p.pid) {
            return Err(bad(format!("process record {} is not in the tree", p.pid)));
        }
    }
    let root = nodes[0].pid;
    for n in nodes.iter().skip(1) {
        if n.pid == root || !nodes.iter().any(|m| m.pid == n.ppid) {
            return Err(bad(format!("process {} has no parent in the tree", n.pid)));
        }
    }
    if nodes[0].zombie {
        return Err(bad("the root is a zombie".into()));
    }
    // Older writers left pgid/sid out of the tree: take them from the records.
    for n in nodes.iter_mut() {
        if let Some(p) = procs.iter().find(|p| p.pid == n.pid) {
            if n.pgid == 0 && n.sid == 0 {
                (n.pgid, n.sid) = (p.pgid, p.sid);
            }
        }
    }
    Ok(nodes)
}

/// Only root may restore another user's process (the restore would otherwise hand the
/// caller that user's memory and files, or fail halfway).
pub(crate) fn check_owner(proc: &ProcessImage) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let owner = proc.creds.uids[0];
    if me != 0 && (owner != me || proc.uid != me) {
        return Err(Error::RestoreNotPermitted {
            reason: format!("the image is of a process of uid {owner} and you are uid {me}; only root may restore another user's process"),
        });
    }
    Ok(())
}

fn id_taken(nodes: &[TreeNode], procs: &[ProcessImage]) -> Option<i32> {
    let zombies = nodes.iter().filter(|n| n.zombie).map(|n| n.pid);
    procs
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.tid))
        .chain(zombies)
        .find(|tid| std::path::Path::new(&format!("/proc/{tid}")).exists())
}

pub(crate) fn wait_for_free_ids<R: Read>(
    nodes: &[TreeNode],
    procs: &[ProcessImage],
    rd: &mut ImageReader<R>,
    wait: Option<Duration>,
) -> Result<()> {
    let Some(mut taken) = id_taken(nodes, procs) else {
        return Ok(());
    };
    let Some(wait) = wait else {
        return Err(Error::PidInUse { pid: taken });
    };
    rd.spool()?;
    let t0 = Instant::now();
    while t0.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(10));
        match id_taken(nodes, procs) {
            None => return Ok(()),
            Some(t) => taken = t,
        }
    }
    Err(Error::PidInUse { pid: taken })
}

/// Structural checks of a decoded process before anything is built from it.
pub(crate) fn validate(p: &ProcessImage, pipeline: &Pipeline, path: &str) -> Result<()> {
    let bad = |what: String| Error::Corrupt {
        path: path.to_string(),
        offset: 0,
        what,
    };
    if p.pid <= 0 || p.threads.is_empty() || p.threads[0].tid != p.pid {
        return Err(bad(format!(
            "process record for pid {} has no main thread",
            p.pid
        )));
    }
    let mut last_end = 0;
    for v in &p.vmas {
        let aligned = v.start % 4096 == 0 && v.end % 4096 == 0;
        let user = v.end <= 0x7fff_ffff_f000 || v.kind == VmaKind::Vsyscall;
        if !aligned || v.start >= v.end || v.start < last_end || !user {
            return Err(bad(format!(
                "memory area {:#x}-{:#x} is invalid",
                v.start, v.end
            )));
        }
        last_end = v.end;
    }
    for s in &p.sections {
        let Some(plugin) = pipeline.iter().find(|x| x.name() == s.plugin) else {
            return Err(Error::Restore(format!(
                "the image needs the '{}' plugin, which this spirit does not have",
                s.plugin
            )));
        };
        if s.version > plugin.version() {
            return Err(Error::Restore(format!(
                "the image's '{}' section is version {}, newer than this spirit's {}; use a newer spirit",
                s.plugin,
                s.version,
                plugin.version()
            )));
        }
    }
    Ok(())
}

/// Before any process exists: every file the image maps must be there (their identity
/// was checked by [`super::files::resolve`]), and each plugin gets to check its own
/// needs.
pub(crate) fn prepare(
    p: &ProcessImage,
    pipeline: &Pipeline,
    states: &mut [TreeState],
    opts: &super::RestoreOptions,
) -> Result<()> {
    let in_image = |v: &crate::model::Vma| {
        crate::mapped::is_deleted_file(v)
            && p.mapped
                .iter()
                .any(|o| o.dev == v.dev && o.inode == v.inode)
    };
    let allow_changed_files = opts.allow_changed_files;
    for path in p
        .vmas
        .iter()
        .filter(|v| v.kind == VmaKind::File && !in_image(v))
        .map(|v| &v.path)
        .chain([&p.exe])
    {
        if path.ends_with(" (deleted)") {
            return Err(Error::FileMismatch {
                path: path.clone(),
                what: "was deleted while the process had it mapped; spirit cannot restore mappings of deleted files yet".into(),
            });
        }
        if let Err(e) = std::fs::metadata(path) {
            return Err(Error::FileMismatch {
                path: path.clone(),
                what: format!("needed by the process (it is mapped or its executable) but missing on this host: {e}"),
            });
        }
    }
    let ctx = PrepareCtx {
        process: p,
        allow_changed_files,
        opts,
    };
    for (plugin, st) in pipeline.iter().zip(states.iter_mut()) {
        if let Some(sec) = p.section(plugin.name()) {
            plugin.prepare(st, &ctx, &sec.data)?;
        }
    }
    Ok(())
}
