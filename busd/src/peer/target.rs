//! The target side of a migration: accept links from configured peers, apply the
//! policy (allowed users, the files the process needs, free memory, concurrent
//! incoming limit), and run each accepted migration
//! as an `incoming` job: image frames go straight into the stdin of a
//! `spirit restore - --detach --new-pid` worker, and its outcome goes back to the
//! source. `--new-pid` because the original pid is still taken while the source
//! holds the process frozen (on one kernel, or if pids collide across hosts).

use super::link::{describe, Frame, Link};
use super::survey::{self, NeededFile};
use super::Msg;
use crate::auth::Identity;
use crate::error::StartError;
use crate::job::{self, JobHandle, Jobs, ResultMap, Val};
use crate::local::restored_pid;
use crate::worker::{self, Worker};
use crate::Ctx;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Listen for peers on `addr` (a thread per connection).
pub fn listen(ctx: Arc<Ctx>, addr: SocketAddr) -> Result<(), StartError> {
    let l = TcpListener::bind(addr).map_err(|source| StartError::Listen { addr, source })?;
    tracing::info!("listening for peers on {addr}");
    std::thread::Builder::new()
        .name("peer-listener".into())
        .spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    match Link::accept(&ctx.key, &ctx.cfg.peers, s, ctx.cfg.link_timeout()) {
                        Ok(link) => serve(ctx, link),
                        Err(e) => tracing::warn!("{e}"),
                    }
                });
            }
        })
        .map_err(|source| StartError::Listen { addr, source })?;
    Ok(())
}

/// Decrements the incoming count when dropped.
struct Incoming(Arc<Ctx>);
impl Drop for Incoming {
    fn drop(&mut self) {
        self.0.incoming.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Who the process will run as here, or why not.
fn admit(ctx: &Ctx, user: &str, uid: u32) -> Result<Identity, String> {
    let allowed = &ctx.cfg.limits.allowed_users;
    if !allowed.is_empty() && !allowed.iter().any(|u| u == user) {
        return Err(format!(
            "user {user:?} may not migrate processes into this host (limits.allowed_users)"
        ));
    }
    if uid == 0 && user == "root" {
        return Ok(Identity::of_uid(0));
    }
    Identity::of_name(user).ok_or_else(|| format!("there is no user {user:?} on this host"))
}

/// Can this host take a tree with `page_bytes` of pages that needs `files`?
fn fits(ctx: &Ctx, page_bytes: u64, files: &[NeededFile]) -> Result<(), String> {
    let bad = survey::check_files(files);
    if !bad.is_empty() {
        return Err(format!(
            "{} file{} the process needs {} missing or different on this host: {} (install {} here, the same version as on the source)",
            bad.len(),
            if bad.len() == 1 { "" } else { "s" },
            if bad.len() == 1 { "is" } else { "are" },
            bad.join(", "),
            if bad.len() == 1 { "it" } else { "them" },
        ));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| format!("cannot read /proc/meminfo to check free memory: {e}"))?;
    let available = survey::mem_available(&meminfo)
        .ok_or_else(|| "/proc/meminfo has no MemAvailable line".to_string())?;
    survey::check_memory(
        page_bytes,
        available,
        ctx.cfg.limits.keep_free_mib.saturating_mul(1 << 20),
    )
}

fn serve(ctx: Arc<Ctx>, mut link: Link) {
    let peer = link.peer_name.clone();
    let addr = link.peer_addr;
    let (pid, comm, user, uid, page_bytes, files, pid_ns) = match link.recv_msg() {
        Ok(Msg::Migrate {
            pid,
            comm,
            user,
            uid,
            page_bytes,
            files,
            pid_ns,
        }) => (pid, comm, user, uid, page_bytes, files, pid_ns),
        Ok(m) => return tracing::warn!("peer {peer}: unexpected first message {m:?}"),
        Err(e) => return tracing::warn!("peer {peer}: link broken before a request: {e}"),
    };
    let refuse = |link: &mut Link, reason: String| {
        tracing::warn!(
            "refused a migration of pid {pid} ({comm}) from peer {peer} at {addr}: {reason}"
        );
        let _ = link.send(&Msg::Refuse { reason });
    };
    let who = match admit(&ctx, &user, uid) {
        Ok(w) => w,
        Err(reason) => return refuse(&mut link, reason),
    };
    if let Err(reason) = fits(&ctx, page_bytes, &files) {
        return refuse(&mut link, reason);
    }
    if pid_ns && !who.is_root() {
        return refuse(
            &mut link,
            format!("a new pid namespace needs root, and the process would run here as {user}"),
        );
    }
    let max = ctx.cfg.limits.max_incoming;
    if ctx.incoming.fetch_add(1, Ordering::SeqCst) >= max {
        ctx.incoming.fetch_sub(1, Ordering::SeqCst);
        return refuse(
            &mut link,
            format!("already {max} incoming migrations (limits.max_incoming)"),
        );
    }
    let slot = Incoming(ctx.clone());
    let desc = format!("incoming pid {pid} ({comm}) from {peer}");
    let job = match smol::block_on(Jobs::create(&ctx, "incoming", desc, who.uid)) {
        Ok(j) => j,
        Err(e) => return refuse(&mut link, format!("cannot create a job: {e:?}")),
    };
    job::spawn(job, move |j| {
        let _slot = slot;
        receive(j, &who, link, &peer, pid_ns)
    });
}

fn receive(
    job: &JobHandle,
    who: &Identity,
    mut link: Link,
    peer: &str,
    pid_ns: bool,
) -> Result<ResultMap, String> {
    let mut cmd = worker::command(job.ctx(), who);
    // The original pids are still taken while the source waits for our answer: fresh
    // pids, or the original ones inside a new pid namespace.
    let ids = if pid_ns { "--pid-ns" } else { "--new-pid" };
    cmd.args(["restore", "-", "--detach", ids]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut w = match Worker::spawn(cmd, &format!("job {} incoming", job.id)) {
        Ok(w) => w,
        Err(e) => {
            let _ = link.send(&Msg::Refuse { reason: e.clone() });
            return Err(e);
        }
    };
    let Some(mut stdin) = w.child.stdin.take() else {
        return Err("the restore worker has no stdin".into());
    };
    w.collect_stdout();
    link.send(&Msg::Accept)
        .map_err(|e| format!("link to peer {peer} broken: {e}"))?;

    // Image frames into the restore; a restore that stops early makes the write fail.
    let mut got = 0u64;
    let mut stream_err = None;
    let mut restore_gone = false;
    loop {
        match link.recv() {
            Ok(Frame::Data(d)) => {
                got += d.len() as u64;
                if !restore_gone && stdin.write_all(&d).is_err() {
                    restore_gone = true;
                    break;
                }
                if got % (16 << 20) < d.len() as u64 {
                    job.progress(got, 0);
                }
            }
            Ok(Frame::Msg(Msg::End)) => break,
            Ok(Frame::Msg(m)) => {
                stream_err = Some(format!("peer {peer} sent {m:?} inside the image"));
                break;
            }
            Err(e) => {
                stream_err = Some(format!(
                    "link to peer {peer} broken after {got} bytes of the image: {}",
                    describe(&e)
                ));
                break;
            }
        }
    }
    drop(stdin);
    job.progress(got, got);
    let out = w.wait(|_, _| {});
    let restored = out
        .check("restore")
        .and_then(|()| restored_pid(&out.stdout));
    let new_pid = match (restored, stream_err) {
        (Ok(p), None) => p,
        (Ok(p), Some(e)) => {
            // Cannot happen with a checksummed image, but never leave a copy behind.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(e);
        }
        (Err(e), stream_err) => {
            let reason = stream_err.map(|s| format!("{s}; {e}")).unwrap_or(e);
            let _ = link.send(&Msg::Failed {
                reason: reason.clone(),
            });
            if restore_gone {
                drain(&mut link);
            }
            return Err(reason);
        }
    };
    link.send(&Msg::Restored { pid: new_pid })
        .map_err(|e| format!("restored pid {new_pid} but could not tell peer {peer}: {e} (the source may resume too)"))?;
    let ended = match link.recv_msg() {
        Ok(Msg::Commit { source_ended }) => source_ended,
        other => {
            tracing::warn!("peer {peer}: no commit after pid {new_pid} was restored ({other:?}); keeping it running");
            false
        }
    };
    Ok(vec![
        ("pid".into(), Val::U32(new_pid)),
        ("peer".into(), Val::Str(peer.to_string())),
        ("image_bytes".into(), Val::U64(got)),
        ("source_ended".into(), Val::Bool(ended)),
    ])
}

/// Read and drop what the source still sends, so it reaches the point where it reads
/// our answer (bounded by the link timeout).
fn drain(link: &mut Link) {
    while let Ok(Frame::Data(_)) = link.recv() {}
}
