//! The target side of a migration: accept links from configured peers, apply the
//! policy (allowed users, the files the process needs, free memory, concurrent
//! incoming limit), and run each accepted migration
//! as an `incoming` job: image frames go straight into the stdin of a
//! `spirit restore - --detach --new-pid` worker, and its outcome goes back to the
//! source. `--new-pid` because the original pid is still taken while the source
//! holds the process frozen (on one kernel, or if pids collide across hosts).

use super::link::{describe, Frame, Link};
use super::msg::Msg;
use super::survey::{self, MemoryShort, NeededFile};
use crate::auth::Identity;
use crate::ctx::Ctx;
use crate::error::StartError;
use crate::job::{self, JobHandle, ResultMap, Val};
use crate::local::{restored_pid, LocalError};
use crate::worker::{self, Worker, WorkerError};
use std::io::{self, Write};
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

/// Why this host does not take a migration (sent to the source as the reason).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("user {0:?} may not migrate processes into this host (limits.allowed_users)")]
    UserNotAllowed(String),
    #[error("there is no user {0:?} on this host")]
    NoSuchUser(String),
    /// Each file with what is wrong with it.
    #[error(
        "{} file{} the process needs {} missing or different on this host: {} (install {} here, the same version as on the source)",
        .0.len(),
        if .0.len() == 1 { "" } else { "s" },
        if .0.len() == 1 { "is" } else { "are" },
        .0.join(", "),
        if .0.len() == 1 { "it" } else { "them" },
    )]
    Files(Vec<String>),
    #[error("cannot read /proc/meminfo to check free memory: {0}")]
    Meminfo(io::Error),
    #[error("/proc/meminfo has no MemAvailable line")]
    NoMemAvailable,
    #[error(transparent)]
    Memory(#[from] MemoryShort),
    #[error("a new pid namespace needs root, and the process would run here as {0}")]
    PidNsNeedsRoot(String),
    #[error("already {0} incoming migrations (limits.max_incoming)")]
    TooMany(usize),
    #[error("cannot create a job: {0}")]
    NoJob(zbus::Error),
}

/// Why an incoming migration failed (the source is told, and resumes its process).
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("the restore worker has no stdin")]
    NoStdin,
    #[error("link to peer {peer} broken: {source}")]
    Lost { peer: String, source: io::Error },
    #[error("peer {peer} sent {message} inside the image")]
    InsideImage { peer: String, message: String },
    #[error(
        "link to peer {peer} broken after {got} bytes of the image: {}",
        describe(source)
    )]
    Broken {
        peer: String,
        got: u64,
        source: io::Error,
    },
    /// The restore failed (after the stream broke, when it did).
    #[error("{}{source}", stream.as_ref().map(|s| format!("{s}; ")).unwrap_or_default())]
    Restore {
        stream: Option<Box<IncomingError>>,
        source: LocalError,
    },
    #[error("restored pid {new_pid} but could not tell peer {peer}: {source} (the source may resume too)")]
    NotTold {
        new_pid: u32,
        peer: String,
        source: io::Error,
    },
}

/// Decrements the incoming count when dropped.
struct Incoming(Arc<Ctx>);
impl Drop for Incoming {
    fn drop(&mut self) {
        self.0.incoming.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Who the process will run as here, or why not.
fn admit(ctx: &Ctx, user: &str, uid: u32) -> Result<Identity, Refusal> {
    let allowed = &ctx.cfg.limits.allowed_users;
    if !allowed.is_empty() && !allowed.iter().any(|u| u == user) {
        return Err(Refusal::UserNotAllowed(user.to_string()));
    }
    if uid == 0 && user == "root" {
        return Ok(Identity::of_uid(0));
    }
    Identity::of_name(user).ok_or_else(|| Refusal::NoSuchUser(user.to_string()))
}

/// Can this host take a tree with `page_bytes` of pages that needs `files`?
fn fits(ctx: &Ctx, page_bytes: u64, files: &[NeededFile]) -> Result<(), Refusal> {
    let bad = survey::check_files(files);
    if !bad.is_empty() {
        return Err(Refusal::Files(bad));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(Refusal::Meminfo)?;
    let available = survey::mem_available(&meminfo).ok_or(Refusal::NoMemAvailable)?;
    Ok(survey::check_memory(
        page_bytes,
        available,
        ctx.cfg.limits.keep_free_mib.saturating_mul(1 << 20),
    )?)
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
    let refuse = |link: &mut Link, reason: Refusal| {
        let reason = reason.to_string();
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
        return refuse(&mut link, Refusal::PidNsNeedsRoot(user));
    }
    let max = ctx.cfg.limits.max_incoming;
    if ctx.incoming.fetch_add(1, Ordering::SeqCst) >= max {
        ctx.incoming.fetch_sub(1, Ordering::SeqCst);
        return refuse(&mut link, Refusal::TooMany(max));
    }
    let slot = Incoming(ctx.clone());
    let desc = format!("incoming pid {pid} ({comm}) from {peer}");
    let job = match smol::block_on(JobHandle::create(&ctx.jobs, "incoming", desc, who.uid)) {
        Ok(j) => j,
        Err(e) => return refuse(&mut link, Refusal::NoJob(e)),
    };
    job::spawn(job, move |j| {
        let _slot = slot;
        receive(j, &ctx, &who, link, &peer, pid_ns)
    });
}

fn receive(
    job: &JobHandle,
    ctx: &Ctx,
    who: &Identity,
    mut link: Link,
    peer: &str,
    pid_ns: bool,
) -> Result<ResultMap, IncomingError> {
    let mut cmd = worker::command(ctx, who);
    // The original pids are still taken while the source waits for our answer: fresh
    // pids, or the original ones inside a new pid namespace.
    let ids = if pid_ns { "--pid-ns" } else { "--new-pid" };
    cmd.args(["restore", "-", "--detach", ids]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut w = match Worker::spawn(cmd, &format!("job {} incoming", job.id)) {
        Ok(w) => w,
        Err(e) => {
            let _ = link.send(&Msg::Refuse {
                reason: e.to_string(),
            });
            return Err(e.into());
        }
    };
    let Some(mut stdin) = w.child.stdin.take() else {
        return Err(IncomingError::NoStdin);
    };
    w.collect_stdout();
    link.send(&Msg::Accept)
        .map_err(|source| IncomingError::Lost {
            peer: peer.to_string(),
            source,
        })?;

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
                stream_err = Some(IncomingError::InsideImage {
                    peer: peer.to_string(),
                    message: format!("{m:?}"),
                });
                break;
            }
            Err(source) => {
                stream_err = Some(IncomingError::Broken {
                    peer: peer.to_string(),
                    got,
                    source,
                });
                break;
            }
        }
    }
    drop(stdin);
    job.progress(got, got);
    let out = w.wait(|_, _| {});
    let restored = out
        .check("restore")
        .map_err(LocalError::from)
        .and_then(|()| restored_pid(&out.stdout).map_err(LocalError::from));
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
        (Err(source), stream_err) => {
            let e = IncomingError::Restore {
                stream: stream_err.map(Box::new),
                source,
            };
            let _ = link.send(&Msg::Failed {
                reason: e.to_string(),
            });
            if restore_gone {
                drain(&mut link);
            }
            return Err(e);
        }
    };
    link.send(&Msg::Restored { pid: new_pid })
        .map_err(|source| IncomingError::NotTold {
            new_pid,
            peer: peer.to_string(),
            source,
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::NoPid;

    #[test]
    fn refusals_and_failures_read_as_sentences() {
        let one = Refusal::Files(vec!["/a (missing: gone)".into()]).to_string();
        assert!(
            one.starts_with("1 file the process needs is missing")
                && one.ends_with("(install it here, the same version as on the source)"),
            "{one}"
        );
        let two = Refusal::Files(vec!["/a".into(), "/b".into()]).to_string();
        assert!(
            two.starts_with("2 files the process needs are missing")
                && two.contains(": /a, /b (install them here"),
            "{two}"
        );
        let no_pid = || LocalError::NoPid(NoPid { stdout: vec![] });
        let alone = IncomingError::Restore {
            stream: None,
            source: no_pid(),
        };
        assert_eq!(
            alone.to_string(),
            "the restore worker printed no pid (stdout: [])"
        );
        let after = IncomingError::Restore {
            stream: Some(Box::new(IncomingError::InsideImage {
                peer: "a".into(),
                message: "End".into(),
            })),
            source: no_pid(),
        };
        assert_eq!(
            after.to_string(),
            "peer a sent End inside the image; the restore worker printed no pid (stdout: [])"
        );
    }
}
