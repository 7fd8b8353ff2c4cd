//! Restore: read and check the image → prepare → fork the child (original pid via
//! `clone3 set_tid`) → in-child setup → replace memory by remote syscalls → threads →
//! plugins' remote steps → registers → run.
//!
//! Nothing runs before the image's trailer has been read and checked. Any failure kills
//! what was built (the child is traced with PTRACE_O_EXITKILL, and every [`Tracee`] of a
//! restore SIGKILLs on drop) and reaps it: a failed restore leaves no process behind.

mod check;
mod child;
mod files;
mod memory;
mod pages;
mod tasks;
mod tree;

use crate::error::{Error, Result};
use crate::header::{check_cpu, host_cpu};
use crate::image::{Frame, ImageReader};
use crate::model::{Header, ProcessImage};
use crate::plugin::{Parking, Pipeline, Remote, RestoreCtx, TreeState, TreeView};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use spirit_kmod::{SharedBoard, Slot, Tracee};
use std::collections::HashMap;
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
    /// Put descriptors that were on a terminal outside the tree (recorded with
    /// `spirit dump --shell-job`) on the restorer's own terminal (its standard input),
    /// the restored group made foreground when it was.
    pub shell_job: bool,
    /// Restore into a new pid namespace, under a small init of spirit's, so every
    /// process keeps its pid even where those pids are taken on this host.
    pub pid_ns: bool,
    /// Descriptors the restorer is given to stand for resources outside the tree
    /// (`--inherit-fd fd[N]:KEY`, KEY as the image names it: `socket:[INODE]`...).
    pub inherit_fds: Vec<InheritFd>,
}

/// `--inherit-fd fd[N]:KEY`: the restorer's descriptor N stands for the resource the
/// image calls KEY (e.g. `socket:[4242]`, a unix socket connected outside the tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InheritFd {
    pub fd: i32,
    pub key: String,
}

impl std::str::FromStr for InheritFd {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<InheritFd, String> {
        let bad = || format!("{s:?}: expected fd[N]:KEY, e.g. fd[3]:socket:[4242]");
        let rest = s.strip_prefix("fd[").ok_or_else(bad)?;
        let (n, key) = rest.split_once("]:").ok_or_else(bad)?;
        let fd: i32 = n.parse().map_err(|_| bad())?;
        if fd < 0 || key.is_empty() {
            return Err(bad());
        }
        Ok(InheritFd {
            fd,
            key: key.to_string(),
        })
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Restored {
    /// The root process of the restored tree (its pid as seen by the caller).
    pub pid: i32,
    /// The caller's child to wait for: the root, or with `pid_ns` the namespace's init,
    /// which ends with the root's status.
    pub waiter: i32,
    pub processes: usize,
    pub threads: usize,
    pub page_bytes: u64,
    pub total: Duration,
}

/// Restore the image read from `src` (named `path` in messages). On success the tree
/// runs, its root a child of the caller.
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
    check_cpu(&header.cpu, &host_cpu())?;
    let mut procs: Vec<ProcessImage> = Vec::new();
    let first_pages = loop {
        match rd.next_frame(&mut buf)? {
            Frame::Process(p) => procs.push(*p),
            f @ (Frame::Pages { .. } | Frame::End(_)) => break f,
            Frame::Header(_) => unreachable!("the reader refuses a second header"),
        }
    };
    tracing::debug!(
        image = path,
        processes = procs.len(),
        ms = t0.elapsed().as_millis() as u64,
        "restore: header and processes read"
    );
    let nodes = check::tree_of(&header, &procs, path)?;
    for proc in &procs {
        check::validate(proc, pipeline, path)?;
        check::check_owner(proc)?;
    }
    files::resolve(&mut procs, opts.allow_changed_files)?;
    tracing::debug!("restore: image checked against this host");
    let view = TreeView {
        nodes: &nodes,
        procs: &procs,
        opts,
    };
    let mut states = Vec::with_capacity(pipeline.len());
    let restored = (|| {
        let mut park = Parking::new(&view);
        // Above the restorer's own descriptors too: a plugin may park in the restorer
        // what every restore child inherits (the terminal of `--shell-job`).
        park.above(own_highest_fd());
        for p in pipeline {
            tracing::debug!(plugin = p.name(), "restore: plan_restore");
            states.push(p.plan_restore(&view, &mut park)?);
        }
        for proc in &procs {
            check::prepare(proc, pipeline, &mut states, opts)?;
        }
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            "restore: plugins prepared, building the tree"
        );
        if !opts.new_pid && !opts.pid_ns {
            check::wait_for_free_ids(&nodes, &procs, &mut rd, opts.wait_for_pid)?;
        }
        run(
            &nodes,
            &procs,
            &header,
            rd,
            buf,
            first_pages,
            opts,
            pipeline,
            &mut states,
        )
    })();
    match &restored {
        Ok((pid, _, bytes)) => tracing::debug!(
            pid,
            page_bytes = bytes,
            ms = t0.elapsed().as_millis() as u64,
            "restore: tree runs"
        ),
        Err(e) => tracing::debug!("restore failed, undoing what was set up: {e}"),
    }
    for (p, st) in pipeline.iter().zip(&mut states) {
        p.restore_end(st, restored.is_ok());
    }
    let (pid, waiter, page_bytes) = restored?;
    Ok(Restored {
        pid,
        waiter,
        processes: procs.len(),
        threads: procs.iter().map(|p| p.threads.len()).sum(),
        page_bytes,
        total: t0.elapsed(),
    })
}

/// The highest descriptor number open in this process (0 if none can be listed).
fn own_highest_fd() -> i32 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Build the checked tree and let it run: (root pid, the caller's child, page bytes).
#[allow(clippy::too_many_arguments)]
fn run<R: Read>(
    nodes: &[crate::model::TreeNode],
    procs: &[ProcessImage],
    header: &Header,
    mut rd: ImageReader<R>,
    mut buf: Vec<u8>,
    first_pages: Frame,
    opts: &RestoreOptions,
    pipeline: &Pipeline,
    states: &mut [TreeState],
) -> Result<(i32, i32, u64)> {
    let host = host_cpu();
    let plan = tree::Plan {
        nodes,
        procs,
        keep_pids: !opts.new_pid,
        opts,
    };
    let plugins = tree::Plugins {
        list: pipeline,
        states,
    };
    let board = SharedBoard::new(nodes.len())?;
    // Orphans of a failed build come to us to be reaped, not to a PID 1 that may not reap.
    let _ = spirit_kmod::set_child_subreaper();
    let spawned = if opts.pid_ns {
        tree::spawn_in_pid_ns(&plan, plugins, &board)?
    } else {
        tree::spawn(&plan, plugins, &board)?
    };
    let pending = match first_pages {
        Frame::End(_) => None,
        f => Some((f, std::mem::take(&mut buf))),
    };
    let built = build(
        spawned, &plan, header, &host, &mut rd, pending, opts, pipeline, states, &board,
    );
    let _ = spirit_kmod::clear_child_subreaper();
    let (root, page_bytes) = match built {
        Ok(b) => b,
        Err(e) => {
            tear_down(spawned, &plan, &board);
            return Err(e);
        }
    };
    if opts.pid_ns {
        // The namespace's init may now outlive us.
        release_init(spawned)?;
    }
    for proc in procs {
        for (p, st) in pipeline.iter().zip(states.iter_mut()) {
            if let Some(sec) = proc.section(p.name()) {
                p.finish(st, proc, &sec.data)?;
            }
        }
    }
    Ok((root, spawned, page_bytes))
}

/// Clear the pid namespace init's PR_SET_PDEATHSIG (set while the restore could still
/// fail), by one injected prctl.
fn release_init(init: i32) -> Result<()> {
    let mut t = Tracee::seize(init, init)?;
    let gadget = spirit_kmod::find_syscall_gadget(init)?;
    t.syscall_ok(
        gadget,
        libc::SYS_prctl,
        &[libc::PR_SET_PDEATHSIG as u64, 0],
        "prctl(PR_SET_PDEATHSIG) in the namespace init",
    )?;
    t.release()?;
    Ok(())
}

/// Kill whatever of the tree exists and reap it: a failed restore leaves nothing.
fn tear_down(root: i32, plan: &tree::Plan<'_>, board: &SharedBoard) {
    let mut pids = vec![root];
    for i in 0..plan.nodes.len() {
        match board.get(i) {
            Slot::Ready { pid } | Slot::Failed { pid, .. } => pids.push(pid),
            Slot::Empty => {}
        }
    }
    for &p in &pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    // Reap everything as it dies, threads we trace included: a dead multi-threaded
    // leader is reported only once its traced threads are reaped (KERNEL-NOTES P1), so
    // waiting for the root alone could wait forever. The rest were re-parented to us
    // (subreaper) or to their dying parents.
    let t0 = Instant::now();
    let mut root_reaped = false;
    while t0.elapsed() < Duration::from_secs(if root_reaped { 2 } else { 30 }) {
        match waitpid(
            Pid::from_raw(-1),
            Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
        ) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(5)),
            Ok(st) => root_reaped |= st.pid() == Some(Pid::from_raw(root)),
            Err(_) => break,
        }
    }
}

/// Pids as seen here of the descendants of `top` (a pid namespace's init), by their pid
/// inside the namespace (`NSpid` in /proc/PID/status).
fn outer_pids(top: i32) -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let mut queue = vec![top];
    while let Some(p) = queue.pop() {
        if let Ok(inner) = crate::procinfo::innermost_pid(p) {
            map.insert(inner, p);
        }
        queue.extend(crate::procinfo::children(p).unwrap_or_default());
    }
    map
}

/// Wait until every process of the tree reports its in-child setup done. Returns their
/// pids as the board has them (inside the tree's pid namespace).
fn wait_ready(root: i32, plan: &tree::Plan<'_>, board: &SharedBoard) -> Result<Vec<i32>> {
    let t0 = Instant::now();
    loop {
        let mut live = Vec::new();
        let mut pending = false;
        for (i, n) in plan.nodes.iter().enumerate() {
            if n.zombie {
                continue;
            }
            match board.get(i) {
                Slot::Ready { pid } => live.push(pid),
                Slot::Failed { code, msg, .. } => return Err(Error::InChild { code, msg }),
                Slot::Empty => pending = true,
            }
        }
        if !pending {
            return Ok(live);
        }
        if let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
            waitpid(Pid::from_raw(root), Some(WaitPidFlag::WNOHANG))
        {
            return Err(Error::Restore(
                "the restore child died before it was ready".into(),
            ));
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(Error::Restore(
                "the restore children did not get ready within 60 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[allow(clippy::too_many_arguments)]
fn build<R: Read>(
    spawned: i32,
    plan: &tree::Plan<'_>,
    header: &Header,
    host: &crate::model::CpuInfo,
    rd: &mut ImageReader<R>,
    pending: Option<(Frame, Vec<u8>)>,
    opts: &RestoreOptions,
    pipeline: &Pipeline,
    states: &mut [TreeState],
    board: &SharedBoard,
) -> Result<(i32, u64)> {
    let inner = wait_ready(spawned, plan, board)?;
    let live: Vec<i32> = if opts.pid_ns {
        let map = outer_pids(spawned);
        inner
            .iter()
            .map(|p| {
                map.get(p).copied().ok_or_else(|| {
                    Error::Restore(format!("process {p} of the new pid namespace not found"))
                })
            })
            .collect::<Result<_>>()?
    } else {
        inner.clone()
    };
    let procs: Vec<&ProcessImage> = plan
        .nodes
        .iter()
        .filter(|n| !n.zombie)
        .filter_map(|n| plan.proc_of(n.pid))
        .collect();
    // Parents first: a seized parent can no longer be surprised by a child's stop.
    let mut mains = Vec::with_capacity(live.len());
    for &pid in &live {
        mains.push(Tracee::seize_restored(pid)?);
    }
    let objects = crate::mapped::Objects::create(&procs)?;
    let mut areas = Vec::with_capacity(live.len());
    for (main, proc) in mains.iter_mut().zip(&procs) {
        areas.push(memory::prepare(main, proc, &objects)?);
    }
    drop(objects); // every mapping of them is made
    let targets: Vec<(i32, i32, &[crate::model::Vma])> = procs
        .iter()
        .zip(&live)
        .map(|(p, &pid)| (p.pid, pid, p.vmas.as_slice()))
        .collect();
    let page_bytes = memory::write_pages(rd, pending, &targets, opts.workers.max(1))?;
    let mut ready = Vec::with_capacity(live.len());
    for (((mut main, proc), area), &pid_inside) in
        mains.into_iter().zip(&procs).zip(areas).zip(&inner)
    {
        memory::finish(&mut main, &area, proc)?;
        let pid = main.tid();
        tasks::refresh_tid_cache(pid, &proc.threads[0], pid_inside)?;
        let mut threads = tasks::create_threads(main, &area, proc, plan.keep_pids)?;
        tasks::thread_state(&mut threads, &area, proc)?;
        crate::procattrs::restore(&mut threads, area.gadget(), area.scratch(), &proc.attrs)?;
        tasks::credentials(&mut threads, &area, proc)?;
        threads[0].syscall_ok(
            area.gadget(),
            libc::SYS_prctl,
            &[libc::PR_SET_PDEATHSIG as u64, proc.pdeathsig as u64],
            "prctl(PR_SET_PDEATHSIG)",
        )?;
        let mut final_sigmask = vec![0u64; threads.len()];
        for (p, st) in pipeline.iter().zip(states.iter_mut()) {
            if let Some(sec) = proc.section(p.name()) {
                let mut ctx = RestoreCtx {
                    remote: Remote {
                        pid,
                        threads: &mut threads,
                        gadget: area.gadget(),
                        scratch: area.scratch(),
                        scratch_len: area.scratch_len(),
                    },
                    process: proc,
                    final_sigmask: &mut final_sigmask,
                };
                p.restore_remote(st, &mut ctx, &sec.data)?;
            }
        }
        // Security state last of the injected steps: seccomp filters may refuse the
        // restorer's later syscalls (unless suspended), capabilities are given up here.
        let suspended = crate::security::restore(
            &mut crate::security::Target {
                threads: &mut threads,
                gadget: area.gadget(),
                scratch: area.scratch(),
                scratch_len: area.scratch_len(),
            },
            proc,
        )?;
        ready.push((threads, area, *proc, final_sigmask, suspended));
    }
    // Leaves first, the root last.
    let mut stopped = Vec::new();
    while let Some((threads, area, proc, final_sigmask, suspended)) = ready.pop() {
        if proc.attrs.stopped {
            stopped.push(threads[0].tid());
        }
        tasks::release(
            threads,
            &area,
            proc,
            &header.cpu,
            host,
            &final_sigmask,
            suspended,
        )?;
    }
    // Stopped by job control at checkpoint: stopped again (its parent's waitpid with
    // WUNTRACED reports the stop once more).
    for pid in stopped {
        kill(Pid::from_raw(pid), Signal::SIGSTOP)
            .map_err(|e| Error::Restore(format!("stopping process {pid} again: {e}")))?;
    }
    Ok((live[0], page_bytes))
}

#[cfg(test)]
mod inherit_fd_tests {
    use super::InheritFd;

    #[test]
    fn parses_fd_and_key() {
        assert_eq!(
            "fd[0]:/dev/pts/3".parse::<InheritFd>().unwrap(),
            InheritFd {
                fd: 0,
                key: "/dev/pts/3".into()
            }
        );
        assert_eq!(
            "fd[12]:pipe:[4242]".parse::<InheritFd>().unwrap().key,
            "pipe:[4242]"
        );
        for bad in ["", "fd[]:x", "fd[-1]:x", "fd[1]:", "fd1:x", "3:/dev/pts/3"] {
            assert!(bad.parse::<InheritFd>().is_err(), "{bad:?}");
        }
    }
}
