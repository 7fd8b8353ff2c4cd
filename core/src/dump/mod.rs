//! Checkpoint: freeze → collect core state → plugins → memory layout → write → end.
//!
//! Every failure before the image is committed puts the process back exactly as it was
//! (each [`Tracee`] restores its registers and mask when dropped) and undoes the one
//! change the dump makes in the target, its scratch mapping.

mod freeze;
pub mod pages;

use crate::error::{Error, Result};
use crate::fileid::cache::HashCache;
use crate::image::ImageWriter;
use crate::model::{Header, ProcessImage, Section, ThreadState, TreeNode};
use crate::plugin::{DumpCtx, DumpOutcome, DumpTree, FrozenProcess, Pipeline, Remote, TreeState};
use crate::{fdclass, header, procattrs, procinfo};
use spirit_kmod::{find_syscall_gadget, get_robust_list, regs_to_array, Tracee};
use std::io::Write;
use std::time::{Duration, Instant};

/// Size of the scratch mapping the dump injects into the target (and removes again).
const SCRATCH_LEN: u64 = 4 * 4096;
const PR_GET_TID_ADDRESS: u64 = 40;

#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// Let the process run on after the checkpoint instead of killing it.
    pub leave_running: bool,
    /// Descriptors to leave out of the image.
    pub skip_fds: Vec<i32>,
    /// Page copy threads.
    pub workers: usize,
    /// Unix sockets connected outside the tree to connect again at restore: `all`, a
    /// peer's path (or `@name` for an abstract one), or `socket:[INODE]` of ours.
    pub ext_unix_reconnect: Vec<String>,
    /// Unix sockets connected outside the tree that the restorer will be given
    /// (`spirit restore --inherit-fd fd[N]:socket:[INODE]`); same selectors.
    pub ext_unix_inherit: Vec<String>,
    /// Accept descriptors on a terminal outside the tree (the shell the process was
    /// started from): recorded to be put on the restoring terminal (`--shell-job`).
    pub shell_job: bool,
    /// Which needed files' content the image carries (`--embed-files`).
    pub embed_files: crate::fileid::embed::EmbedFiles,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DumpStats {
    pub pid: i32,
    /// Live processes of the tree.
    pub processes: usize,
    pub threads: usize,
    pub vmas: usize,
    pub page_bytes: u64,
    pub image_bytes: u64,
    /// How long the process was stopped.
    pub frozen: Duration,
    pub total: Duration,
    /// Whether the process was let run on (else it was ended).
    pub resumed: bool,
}

/// Progress callback: (bytes of pages done, bytes of pages in all).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// What happens to the process once its image is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// As the options say (`leave_running`).
    AsAsked,
    /// Let it run on (e.g. a migration target did not confirm).
    Resume,
    /// End it (e.g. a migration target confirmed the process runs there).
    Kill,
}

/// Checkpoint `pid` into `out`. `commit` runs after the trailer is written (sync, rename,
/// or waiting for a migration target's verdict) and before the process is killed or
/// resumed; it decides which. If it fails, the process resumes.
pub fn dump<W: Write>(
    pid: i32,
    out: W,
    opts: &DumpOptions,
    pipeline: &Pipeline,
    progress: Progress<'_>,
    commit: impl FnOnce(W) -> Result<Ending>,
) -> Result<DumpStats> {
    dump_into(pid, out, None, opts, pipeline, progress, commit)
}

/// [`dump`] into a regular file that `out` writes to (`file` shares its open file
/// description, and the file is empty): page blocks are then written in parallel.
pub fn dump_to_file<W: Write>(
    pid: i32,
    out: W,
    file: &std::fs::File,
    opts: &DumpOptions,
    pipeline: &Pipeline,
    progress: Progress<'_>,
    commit: impl FnOnce(W) -> Result<Ending>,
) -> Result<DumpStats> {
    dump_into(pid, out, Some(file), opts, pipeline, progress, commit)
}

fn dump_into<W: Write>(
    pid: i32,
    out: W,
    file: Option<&std::fs::File>,
    opts: &DumpOptions,
    pipeline: &Pipeline,
    progress: Progress<'_>,
    commit: impl FnOnce(W) -> Result<Ending>,
) -> Result<DumpStats> {
    let t0 = Instant::now();
    freeze::check_access(pid)?;
    tracing::debug!(pid, "dump: freezing the tree");
    let mut tree = freeze::freeze_tree(pid)?;
    let frozen_at = Instant::now();
    tracing::debug!(
        pid,
        processes = tree.len(),
        ms = t0.elapsed().as_millis() as u64,
        "dump: tree frozen"
    );
    let mut stats = DumpStats {
        pid,
        processes: tree.iter().filter(|f| f.zombie.is_none()).count(),
        threads: tree.iter().map(|f| f.tracees.len()).sum(),
        ..Default::default()
    };
    let mut states: Vec<TreeState> = Vec::with_capacity(pipeline.len());
    let written = (|| -> Result<Ending> {
        let view = DumpTree {
            opts: opts.clone(),
            procs: tree
                .iter()
                .filter(|f| f.zombie.is_none())
                .map(|f| {
                    Ok(FrozenProcess {
                        pid: f.pid,
                        ppid: f.ppid,
                        pgid: f.pgid,
                        sid: f.sid,
                        fds: fdclass::list(f.pid, &opts.skip_fds)?,
                    })
                })
                .collect::<Result<_>>()?,
        };
        for p in pipeline {
            tracing::debug!(plugin = p.name(), "dump: dump_tree");
            states.push(p.dump_tree(&view)?);
        }
        let mut procs = Vec::new();
        let mut runs = Vec::new();
        let mut hashes = HashCache::load(crate::fileid::cache::default_path());
        let mut embedded = std::collections::HashSet::new();
        for f in tree.iter_mut().filter(|f| f.zombie.is_none()) {
            let mut proc = collect(f.pid, &mut f.tracees, &view, pipeline, &mut states)?;
            proc.attrs.stopped = f.stopped;
            proc.vmas = procinfo::vmas(f.pid)?;
            proc.mapped = crate::mapped::dump(f.pid, &proc.vmas)?;
            proc.files = procinfo::file_ids_with(f.pid, &proc.exe, &proc.vmas, &mut hashes);
            proc.embedded =
                crate::fileid::embed::embed(f.pid, &proc, &opts.embed_files, &mut embedded)?;
            runs.push(pages::plan(f.pid, &mut proc.vmas)?);
            procs.push(proc);
        }
        hashes.save();
        let total: u64 = runs.iter().flatten().map(|r| r.1 as u64).sum();
        tracing::debug!(
            page_bytes = total,
            ms = frozen_at.elapsed().as_millis() as u64,
            "dump: state collected, writing the image"
        );
        stats.vmas = procs.iter().map(|p| p.vmas.len()).sum();
        stats.page_bytes = total;
        let hdr = build_header(&tree, &procs, pipeline);
        let mut w = ImageWriter::new(out).map_err(|e| Error::io("image", e))?;
        w.write_header(&hdr).map_err(|e| Error::io("image", e))?;
        for proc in &procs {
            w.write_process(proc).map_err(|e| Error::io("image", e))?;
        }
        progress(0, total);
        let mut base = 0;
        for (proc, runs) in procs.iter().zip(&runs) {
            pages::copy_pages(
                proc.pid,
                runs,
                &mut w,
                opts.workers.max(1),
                file,
                &mut |d| progress(base + d, total),
            )?;
            base += runs.iter().map(|r| r.1 as u64).sum::<u64>();
        }
        stats.image_bytes = w.position();
        tracing::debug!(
            image_bytes = stats.image_bytes,
            ms = frozen_at.elapsed().as_millis() as u64,
            "dump: pages written"
        );
        let out = w.finish().map_err(|e| Error::io("image", e))?;
        let ending = commit(out)?;
        tracing::debug!(?ending, "dump: image committed");
        Ok(ending)
    })();
    let ending = match written {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(pid, "dump failed, resuming the tree as it was: {e}");
            // Plugins undo what they set up (TCP repair mode, the network lock, terminal
            // data taken) before the tree runs again: a program must not meet it.
            for (p, st) in pipeline.iter().zip(&mut states) {
                p.dump_end(st, DumpOutcome::Failed);
            }
            drop(tree); // resumes every thread of every process as it was
            return Err(e);
        }
    };
    stats.resumed = match ending {
        Ending::AsAsked => opts.leave_running,
        Ending::Resume => true,
        Ending::Kill => false,
    };
    let outcome = if stats.resumed {
        DumpOutcome::Resumed
    } else {
        DumpOutcome::Killed
    };
    // A tree that runs on gets what plugins set up undone first (see above); one that
    // ends is killed first (its sockets close while still in repair mode: nothing sent).
    let end_plugins = |states: &mut Vec<TreeState>| {
        for (p, st) in pipeline.iter().zip(states.iter_mut()) {
            p.dump_end(st, outcome);
        }
    };
    let released = if stats.resumed {
        end_plugins(&mut states);
        tree.into_iter()
            .flat_map(|f| f.tracees)
            .try_for_each(|t| t.release())
    } else {
        freeze::kill_tree(tree);
        end_plugins(&mut states);
        Ok(())
    };
    released?;
    stats.frozen = frozen_at.elapsed();
    stats.total = t0.elapsed();
    tracing::debug!(
        resumed = stats.resumed,
        frozen_ms = stats.frozen.as_millis() as u64,
        total_ms = stats.total.as_millis() as u64,
        "dump: tree released"
    );
    Ok(stats)
}

fn build_header(tree: &[freeze::Frozen], procs: &[ProcessImage], pipeline: &Pipeline) -> Header {
    let mut h = header::host_header();
    h.plugins = pipeline
        .iter()
        .map(|p| crate::model::PluginInfo {
            name: p.name().to_string(),
            version: p.version(),
        })
        .collect();
    h.tree = tree
        .iter()
        .map(|f| TreeNode {
            pid: f.pid,
            ppid: f.ppid,
            threads: procs
                .iter()
                .find(|p| p.pid == f.pid)
                .map(|p| p.threads.iter().map(|t| t.tid).collect())
                .unwrap_or_default(),
            pgid: f.pgid,
            sid: f.sid,
            zombie: f.zombie.is_some(),
            exit_status: f.zombie.unwrap_or(0),
        })
        .collect();
    h
}

/// Everything but memory, while frozen. Injects a scratch mapping and removes it again.
fn collect(
    pid: i32,
    tracees: &mut [Tracee],
    tree: &DumpTree,
    pipeline: &Pipeline,
    states: &mut [TreeState],
) -> Result<ProcessImage> {
    let gadget = find_syscall_gadget(pid)?;
    let mut remote = Remote {
        pid,
        threads: tracees,
        gadget,
        scratch: 0,
        scratch_len: SCRATCH_LEN,
    };
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    remote.scratch = remote.syscall_ok(
        0,
        libc::SYS_mmap,
        &[0, SCRATCH_LEN, prot, flags, u64::MAX, 0],
        "mmap (scratch)",
    )? as u64;
    let got = collect_with_scratch(pid, &mut remote, tree, pipeline, states);
    let unmapped = remote.syscall_ok(
        0,
        libc::SYS_munmap,
        &[remote.scratch, SCRATCH_LEN],
        "munmap (scratch)",
    );
    let proc = got?;
    unmapped?;
    Ok(proc)
}

fn collect_with_scratch(
    pid: i32,
    remote: &mut Remote<'_>,
    tree: &DumpTree,
    pipeline: &Pipeline,
    states: &mut [TreeState],
) -> Result<ProcessImage> {
    let ids = procinfo::stat(pid)?;
    let (uid, gid) = procinfo::owner(pid)?;
    let auxv_bytes = procinfo::read_file(pid, "auxv")?;
    let mut proc = ProcessImage {
        pid,
        ppid: ids.ppid,
        pgid: ids.pgid,
        sid: ids.sid,
        uid,
        gid,
        comm: ids.comm,
        exe: procinfo::readlink(pid, "exe")?,
        personality: procinfo::personality(pid)?,
        rlimits: procinfo::rlimits(pid)?,
        mm: ids.mm,
        auxv: auxv_bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        ..Default::default()
    };
    proc.mm.brk = remote.syscall_ok(0, libc::SYS_brk, &[0], "brk")? as u64;
    proc.creds = procinfo::creds(pid)?;
    proc.attrs = procattrs::dump(pid, remote)?;
    remote.syscall_ok(
        0,
        libc::SYS_prctl,
        &[libc::PR_GET_PDEATHSIG as u64, remote.scratch],
        "prctl(PR_GET_PDEATHSIG)",
    )?;
    proc.pdeathsig =
        i32::from_le_bytes(remote.read(remote.scratch, 4)?.try_into().expect("4 bytes"));
    proc.creds.dumpable = remote.syscall_ok(
        0,
        libc::SYS_prctl,
        &[libc::PR_GET_DUMPABLE as u64],
        "prctl(PR_GET_DUMPABLE)",
    )? as u8;
    for i in 0..remote.threads.len() {
        let t = &remote.threads[i];
        let tid = t.tid();
        let (robust_head, robust_len) = get_robust_list(tid)?;
        let mut st = ThreadState {
            tid,
            regs: regs_to_array(t.original_regs()),
            xstate: t.xstate()?,
            rseq: t.rseq()?,
            robust_head,
            robust_len,
            tid_address: 0,
            tid_cache_addr: 0,
            name: procinfo::thread_name(pid, tid)?,
        };
        if robust_head >= 16 {
            let cached = remote.read(robust_head - 16, 4).ok();
            if cached.is_some_and(|b| b == tid.to_le_bytes()) {
                st.tid_cache_addr = robust_head - 16;
            }
        }
        let scratch = remote.scratch;
        remote.syscall_ok(
            i,
            libc::SYS_prctl,
            &[PR_GET_TID_ADDRESS, scratch],
            "prctl(PR_GET_TID_ADDRESS)",
        )?;
        st.tid_address = u64::from_le_bytes(remote.read(scratch, 8)?.try_into().expect("8 bytes"));
        proc.threads.push(st);
        proc.security
            .push(crate::security::dump_thread(pid, remote, i)?);
    }
    let mut fds = tree.process(pid).map(|p| p.fds.clone()).unwrap_or_default();
    proc.fd_end = fds.iter().map(|f| f.fd + 1).max().unwrap_or(0);
    for (plugin, state) in pipeline.iter().zip(states.iter_mut()) {
        let mut ctx = DumpCtx {
            remote: Remote {
                pid,
                threads: &mut *remote.threads,
                gadget: remote.gadget,
                scratch: remote.scratch,
                scratch_len: remote.scratch_len,
            },
            fds: &mut fds,
            process: &proc,
            tree,
        };
        tracing::debug!(pid, plugin = plugin.name(), "dump: plugin");
        if let Some(data) = plugin.dump(state, &mut ctx)? {
            proc.sections.push(Section {
                plugin: plugin.name().to_string(),
                version: plugin.version(),
                data,
            });
        }
    }
    if let Some(fd) = fds.iter().find(|f| !f.claimed) {
        let e = fd.unsupported(pid);
        tracing::debug!(pid, fd = fd.fd, "dump: refused: {e}");
        return Err(e);
    }
    Ok(proc)
}
