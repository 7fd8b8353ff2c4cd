//! Restore: read and check the image → prepare → fork the child (original pid via
//! `clone3 set_tid`) → in-child setup → replace memory by remote syscalls → threads →
//! plugins' remote steps → registers → run.
//!
//! Nothing runs before the image's trailer has been read and checked. Any failure kills
//! what was built (the child is traced with PTRACE_O_EXITKILL, and every [`Tracee`] of a
//! restore SIGKILLs on drop) and reaps it: a failed restore leaves no process behind.

mod child;
mod memory;
mod pages;
mod tasks;

use crate::error::{Error, Result};
use crate::header::{check_cpu, host_cpu};
use crate::image::{Frame, ImageReader};
use crate::model::{FileId, Header, ProcessImage, VmaKind};
use crate::plugin::{Pipeline, PrepareCtx, Remote, RestoreCtx};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use spirit_kmod::{clone3_fork, ForkOutcome, SharedPage, Tracee};
use std::io::Read;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Give the process and its threads fresh ids instead of the original ones.
    pub new_pid: bool,
    /// Page write threads.
    pub workers: usize,
    /// When the original pid is still taken, save the rest of the image and wait (up to
    /// this long) for it to be freed: for streams whose writer ends the original only
    /// once the image is complete (`spirit dump P -o - | spirit restore -`).
    pub wait_for_pid: Option<Duration>,
    /// Restore even if files the process uses changed since the checkpoint.
    pub allow_changed_files: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Restored {
    pub pid: i32,
    pub threads: usize,
    pub page_bytes: u64,
    pub total: Duration,
}

/// Restore the image read from `src` (named `path` in messages). On success the process
/// runs as a child of the caller.
pub fn restore<R: Read>(
    src: R,
    path: &str,
    opts: &RestoreOptions,
    pipeline: &Pipeline,
) -> Result<Restored> {
    let t0 = Instant::now();
    let mut rd = ImageReader::new(src, path)?;
    let mut buf = Vec::new();
    let header = match rd.next_frame(&mut buf)? {
        Frame::Header(h) => *h,
        _ => unreachable!("the reader returns the header first or fails"),
    };
    let host = host_cpu();
    check_cpu(&header.cpu, &host)?;
    let mut procs: Vec<ProcessImage> = Vec::new();
    let first_pages = loop {
        match rd.next_frame(&mut buf)? {
            Frame::Process(p) => procs.push(*p),
            f @ (Frame::Pages { .. } | Frame::End(_)) => break f,
            Frame::Header(_) => unreachable!("the reader refuses a second header"),
        }
    };
    if procs.len() != 1 {
        return Err(Error::Restore(format!(
            "{path} holds {} processes; this spirit restores images of a single process",
            procs.len()
        )));
    }
    let proc = procs.remove(0);
    validate(&proc, &header, pipeline, path)?;
    check_owner(&proc)?;
    prepare(&proc, pipeline, opts.allow_changed_files)?;
    if !opts.new_pid {
        wait_for_free_ids(&proc, &mut rd, opts.wait_for_pid)?;
    }

    let report = SharedPage::new()?;
    let set_tid = (!opts.new_pid).then_some(proc.pid);
    let child = match clone3_fork(set_tid) {
        Ok(ForkOutcome::Child) => child::run(&proc, pipeline, &report),
        Ok(ForkOutcome::Parent { child }) => child,
        Err(e) => return Err(fork_error(e, proc.pid)),
    };
    let built = build(
        child,
        &proc,
        &header,
        &host,
        &mut rd,
        first_pages,
        &mut buf,
        opts,
        pipeline,
        &report,
    );
    match built {
        Ok(page_bytes) => {
            for p in pipeline {
                if let Some(sec) = proc.section(p.name()) {
                    p.finish(&proc, &sec.data)?;
                }
            }
            Ok(Restored {
                pid: child,
                threads: proc.threads.len(),
                page_bytes,
                total: t0.elapsed(),
            })
        }
        Err(e) => {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(child), None);
            Err(e)
        }
    }
}

/// Only root may restore another user's process (the restore would otherwise hand the
/// caller that user's memory and files, or fail halfway).
fn check_owner(proc: &ProcessImage) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let owner = proc.creds.uids[0];
    if me != 0 && (owner != me || proc.uid != me) {
        return Err(Error::RestoreNotPermitted {
            reason: format!("the image is of a process of uid {owner} and you are uid {me}; only root may restore another user's process"),
        });
    }
    Ok(())
}

fn id_taken(proc: &ProcessImage) -> Option<i32> {
    proc.threads
        .iter()
        .map(|t| t.tid)
        .find(|tid| std::path::Path::new(&format!("/proc/{tid}")).exists())
}

fn wait_for_free_ids<R: Read>(
    proc: &ProcessImage,
    rd: &mut ImageReader<R>,
    wait: Option<Duration>,
) -> Result<()> {
    let Some(mut taken) = id_taken(proc) else {
        return Ok(());
    };
    let Some(wait) = wait else {
        return Err(Error::PidInUse { pid: taken });
    };
    rd.spool()?;
    let t0 = Instant::now();
    while t0.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(10));
        match id_taken(proc) {
            None => return Ok(()),
            Some(t) => taken = t,
        }
    }
    Err(Error::PidInUse { pid: taken })
}

fn fork_error(e: spirit_kmod::Error, pid: i32) -> Error {
    match e.errno() {
        Some(nix::errno::Errno::EEXIST) => Error::PidInUse { pid },
        Some(nix::errno::Errno::EPERM) => Error::RestoreNotPermitted {
            reason: format!("keeping the original pid {pid} needs root (CAP_CHECKPOINT_RESTORE); pass --new-pid"),
        },
        _ => e.into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn build<R: Read>(
    child: i32,
    proc: &ProcessImage,
    header: &Header,
    host: &crate::model::CpuInfo,
    rd: &mut ImageReader<R>,
    first_pages: Frame,
    buf: &mut Vec<u8>,
    opts: &RestoreOptions,
    pipeline: &Pipeline,
    report: &SharedPage,
) -> Result<u64> {
    let mut main = match Tracee::adopt_stopped_child(child) {
        Ok(t) => t,
        Err(e) => {
            return Err(match report.get() {
                Some((code, msg)) => Error::InChild { code, msg },
                None => e.into(),
            })
        }
    };
    let pending = (!matches!(first_pages, Frame::End(_))).then_some(first_pages);
    let pages_before = rd.position();
    let area = memory::rebuild(&mut main, proc, rd, pending, buf, opts.workers.max(1))?;
    let page_bytes = rd.position() - pages_before;
    tasks::refresh_tid_cache(child, &proc.threads[0], child)?;
    let mut threads = tasks::create_threads(main, &area, proc, !opts.new_pid)?;
    tasks::thread_state(&mut threads, &area, proc)?;
    tasks::credentials(&mut threads, &area, proc)?;
    let mut final_sigmask = vec![0u64; threads.len()];
    for p in pipeline {
        if let Some(sec) = proc.section(p.name()) {
            let mut ctx = RestoreCtx {
                remote: Remote {
                    pid: child,
                    threads: &mut threads,
                    gadget: area.gadget(),
                    scratch: area.scratch(),
                    scratch_len: area.scratch_len(),
                },
                process: proc,
                final_sigmask: &mut final_sigmask,
            };
            p.restore_remote(&mut ctx, &sec.data)?;
        }
    }
    tasks::release(threads, &area, proc, &header.cpu, host, &final_sigmask)?;
    Ok(page_bytes)
}

/// Structural checks of a decoded process before anything is built from it.
fn validate(p: &ProcessImage, header: &Header, pipeline: &Pipeline, path: &str) -> Result<()> {
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
    let _ = header;
    Ok(())
}

/// Before any process exists: every file the image maps must be there, and each plugin
/// gets to check its own needs.
fn prepare(p: &ProcessImage, pipeline: &Pipeline, allow_changed_files: bool) -> Result<()> {
    for path in p
        .vmas
        .iter()
        .filter(|v| v.kind == VmaKind::File)
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
    for f in &p.files {
        let now = FileId::of(&f.path).map_err(|e| Error::FileMismatch {
            path: f.path.clone(),
            what: format!("needed by the process but missing on this host: {e}"),
        })?;
        if let Some(what) = f.differs(&now) {
            if !allow_changed_files {
                return Err(Error::FileMismatch {
                    path: f.path.clone(),
                    what: format!("{what}; the process may crash with another version: restore with --allow-changed-files to accept it"),
                });
            }
            tracing::warn!(path = %f.path, "{what}; restoring anyway (--allow-changed-files)");
        }
    }
    let ctx = PrepareCtx {
        process: p,
        allow_changed_files,
    };
    for plugin in pipeline {
        if let Some(sec) = p.section(plugin.name()) {
            plugin.prepare(&ctx, &sec.data)?;
        }
    }
    Ok(())
}
