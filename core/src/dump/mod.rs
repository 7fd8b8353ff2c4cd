//! Checkpoint: freeze → collect core state → plugins → memory layout → write → end.
//!
//! Every failure before the image is committed puts the process back exactly as it was
//! (each [`Tracee`] restores its registers and mask when dropped) and undoes the one
//! change the dump makes in the target, its scratch mapping.

mod freeze;
pub mod pages;

use crate::error::{Error, Result};
use crate::image::ImageWriter;
use crate::model::{Header, ProcessImage, Section, ThreadState, TreeNode};
use crate::plugin::{DumpCtx, FdEntry, Pipeline, Remote};
use crate::{header, procinfo};
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
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DumpStats {
    pub pid: i32,
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
    let mut tracees = freeze::freeze(pid)?;
    let frozen_at = Instant::now();
    let mut stats = DumpStats {
        pid,
        threads: tracees.len(),
        ..Default::default()
    };
    let written = (|| -> Result<Ending> {
        let mut proc = collect(pid, &mut tracees, opts, pipeline)?;
        proc.vmas = procinfo::vmas(pid)?;
        proc.files = procinfo::file_ids(pid, &proc.exe, &proc.vmas);
        let runs = pages::plan(pid, &mut proc.vmas)?;
        let total: u64 = runs.iter().map(|r| r.1 as u64).sum();
        stats.vmas = proc.vmas.len();
        stats.page_bytes = total;
        let hdr = build_header(&proc, pipeline);
        let mut w = ImageWriter::new(out).map_err(|e| Error::io("image", e))?;
        w.write_header(&hdr).map_err(|e| Error::io("image", e))?;
        w.write_process(&proc).map_err(|e| Error::io("image", e))?;
        progress(0, total);
        pages::copy_pages(pid, &runs, &mut w, opts.workers.max(1), file, &mut |d| {
            progress(d, total)
        })?;
        stats.image_bytes = w.position();
        let out = w.finish().map_err(|e| Error::io("image", e))?;
        commit(out)
    })();
    let ending = match written {
        Ok(e) => e,
        Err(e) => {
            drop(tracees); // resumes every thread as it was
            return Err(e);
        }
    };
    stats.resumed = match ending {
        Ending::AsAsked => opts.leave_running,
        Ending::Resume => true,
        Ending::Kill => false,
    };
    if stats.resumed {
        for t in tracees {
            t.release()?;
        }
    } else {
        freeze::kill(pid, tracees);
    }
    stats.frozen = frozen_at.elapsed();
    stats.total = t0.elapsed();
    Ok(stats)
}

fn build_header(proc: &ProcessImage, pipeline: &Pipeline) -> Header {
    let mut h = header::host_header();
    h.plugins = pipeline
        .iter()
        .map(|p| crate::model::PluginInfo {
            name: p.name().to_string(),
            version: p.version(),
        })
        .collect();
    h.tree = vec![TreeNode {
        pid: proc.pid,
        ppid: proc.ppid,
        threads: proc.threads.iter().map(|t| t.tid).collect(),
    }];
    h
}

/// Everything but memory, while frozen. Injects a scratch mapping and removes it again.
fn collect(
    pid: i32,
    tracees: &mut [Tracee],
    opts: &DumpOptions,
    pipeline: &Pipeline,
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
    let got = collect_with_scratch(pid, &mut remote, opts, pipeline);
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
    opts: &DumpOptions,
    pipeline: &Pipeline,
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
    }
    let mut fds = list_fds(pid, &opts.skip_fds)?;
    for plugin in pipeline {
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
        };
        if let Some(data) = plugin.dump(&mut ctx)? {
            proc.sections.push(Section {
                plugin: plugin.name().to_string(),
                version: plugin.version(),
                data,
            });
        }
    }
    if let Some(fd) = fds.iter().find(|f| !f.claimed) {
        return Err(Error::UnsupportedFd {
            pid,
            fd: fd.fd,
            kind: fd_kind(&fd.target).to_string(),
            target: fd.target.clone(),
        });
    }
    Ok(proc)
}

fn list_fds(pid: i32, skip: &[i32]) -> Result<Vec<FdEntry>> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<FdEntry> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path())
                .ok()?
                .to_string_lossy()
                .into_owned();
            Some(FdEntry {
                fd,
                target,
                claimed: false,
            })
        })
        .filter(|f| !skip.contains(&f.fd))
        .collect();
    fds.sort_by_key(|f| f.fd);
    Ok(fds)
}

/// A readable name for the kind of descriptor a `/proc/PID/fd` link points to.
pub fn fd_kind(target: &str) -> &'static str {
    if target.starts_with("pipe:") {
        "a pipe"
    } else if target.starts_with("socket:") {
        "a socket"
    } else if target.starts_with("anon_inode:[eventfd]") {
        "an eventfd"
    } else if target.starts_with("anon_inode:[eventpoll]") {
        "an epoll instance"
    } else if target.starts_with("anon_inode:[timerfd]") {
        "a timerfd"
    } else if target.starts_with("anon_inode:[signalfd]") {
        "a signalfd"
    } else if target.starts_with("anon_inode:inotify") {
        "an inotify instance"
    } else if target.starts_with("anon_inode:") {
        "an anonymous-inode descriptor"
    } else if target.starts_with("/memfd:") {
        "a memfd"
    } else if target.starts_with("/dev/pts/")
        || target.starts_with("/dev/tty")
        || target == "/dev/console"
        || target == "/dev/ptmx"
    {
        "a terminal"
    } else if target.ends_with(" (deleted)") {
        "a deleted file"
    } else {
        "an unsupported file"
    }
}
