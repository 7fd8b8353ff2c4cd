//! The source side of a migration (a `migrate` job): survey the running tree (pages,
//! needed files), link to the peer, ask, stream
//! the image from a `spirit dump PID -o - --verdict-fd 0` worker, and end the original
//! only after the peer confirmed. Until then the worker holds the process frozen; if
//! the job fails at any point, the worker's stdin (its verdict fd) closes without a
//! `k` and the process resumes untouched.

use super::link::{describe, Frame, Link, LinkError, CHUNK};
use super::msg::Msg;
use super::survey::{self, SurveyError};
use crate::auth::Identity;
use crate::config::Peer;
use crate::ctx::Ctx;
use crate::job::{JobHandle, ResultMap, Val};
use crate::worker::{self, Worker, WorkerError};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::process::Stdio;
use std::time::Instant;

/// Why a migration failed (every message says whether the source process resumed or
/// was never stopped).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Survey(#[from] SurveyError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("link to peer {peer} broken: {}", describe(source))]
    Lost { peer: String, source: io::Error },
    #[error("peer {peer} refused: {reason}; the process {pid} was not stopped")]
    Refused {
        peer: String,
        reason: String,
        pid: u32,
    },
    /// Its answer to the request (a message, shown as Rust debug text).
    #[error("peer {peer} answered {answer} to a migration request")]
    Unexpected { peer: String, answer: String },
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("the dump worker's pipes are missing")]
    NoPipes,
    #[error("{source}; the source process {pid} resumed")]
    Resumed { source: StreamError, pid: u32 },
    #[error("cancelled after the peer restored pid {new_pid}; the source process {pid} resumed")]
    CancelledLate { new_pid: u32, pid: u32 },
}

/// Why the image did not reach a running process on the peer.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading the image from the dump worker: {0}")]
    ReadImage(io::Error),
    #[error(
        "link to peer {peer} broken while sending the image: {}",
        describe(source)
    )]
    SendBroken { peer: String, source: io::Error },
    #[error("peer {peer} spoke out of turn while receiving the image")]
    OutOfTurn { peer: String },
    #[error(
        "link to peer {peer} broken at the end of the image: {}",
        describe(source)
    )]
    EndBroken { peer: String, source: io::Error },
    #[error("peer {peer} could not restore the process: {reason}")]
    PeerFailed { peer: String, reason: String },
    #[error("peer {peer} answered {answer} instead of a restore result")]
    Unexpected { peer: String, answer: String },
    #[error(
        "no answer from peer {peer} after the image was sent: {}",
        describe(source)
    )]
    NoAnswer { peer: String, source: io::Error },
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn migrate(
    job: &JobHandle,
    ctx: &Ctx,
    who: &Identity,
    pid: u32,
    peer: &Peer,
    keep_source: bool,
    pid_ns: bool,
) -> Result<ResultMap, MigrateError> {
    let started = Instant::now();
    // What the peer needs to know to accept or refuse, taken while the tree runs.
    let survey = survey::survey(pid)?;
    let mut link = Link::connect(&ctx.key, peer, ctx.cfg.link_timeout())?;
    if let Some(b) = link.breaker() {
        job.set_canceller(Some(Box::new(move || {
            let _ = b.shutdown(Shutdown::Both);
        })));
    }
    let name = &peer.name;
    let lost = |source| MigrateError::Lost {
        peer: name.clone(),
        source,
    };
    link.send(&Msg::Migrate {
        pid,
        comm: comm(pid),
        user: who.name.clone(),
        uid: who.uid,
        page_bytes: survey.page_bytes,
        files: survey.files,
        pid_ns,
    })
    .map_err(lost)?;
    match link.recv_msg().map_err(lost)? {
        Msg::Accept => {}
        Msg::Refuse { reason } => {
            return Err(MigrateError::Refused {
                peer: name.clone(),
                reason,
                pid,
            })
        }
        m => {
            return Err(MigrateError::Unexpected {
                peer: name.clone(),
                answer: format!("{m:?}"),
            })
        }
    }

    let mut cmd = worker::command(ctx, who);
    cmd.args([
        "dump",
        &pid.to_string(),
        "-o",
        "-",
        "--verdict-fd",
        "0",
        "--progress-fd",
        "2",
    ]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut w = Worker::spawn(cmd, &format!("job {} migrate", job.id))?;
    let verdict = w.child.stdin.take();
    let image = w.child.stdout.take();
    let (verdict, image) = match (verdict, image) {
        (Some(v), Some(i)) => (v, i),
        _ => return Err(MigrateError::NoPipes),
    };

    std::thread::scope(|s| {
        let follow = s.spawn(move || w.wait(|d, t| job.progress(d, t)));
        let sent = stream(&mut link, image, name);
        let answer = sent.and_then(|()| await_restored(&mut link, ctx.cfg.link_timeout(), name));
        // Only after the peer confirmed: end the original (or let it go on, as asked).
        let mut verdict = verdict;
        let ended = match &answer {
            Ok(_) if !job.cancel_requested() => {
                job.set_canceller(None);
                let v = if keep_source { b"r" } else { b"k" };
                verdict.write_all(v).is_ok()
            }
            _ => false,
        };
        drop(verdict);
        let out = follow.join().unwrap_or_default();
        let new_pid = answer.map_err(|source| MigrateError::Resumed { source, pid })?;
        if ended {
            let _ = link.send(&Msg::Commit {
                source_ended: !keep_source,
            });
        }
        out.check(&format!("checkpoint of pid {pid}"))?;
        if !ended {
            return Err(MigrateError::CancelledLate { new_pid, pid });
        }
        let mut r = out
            .result
            .as_ref()
            .map(worker::dump_result)
            .unwrap_or_default();
        r.retain(|(k, _)| k != "total_usec");
        r.extend([
            ("peer".to_string(), Val::Str(name.clone())),
            ("new_pid".to_string(), Val::U32(new_pid)),
            ("source_ended".to_string(), Val::Bool(!keep_source)),
            (
                "total_usec".to_string(),
                Val::U64(started.elapsed().as_micros() as u64),
            ),
        ]);
        Ok(r)
    })
}

/// Copy the image from the dump worker's stdout into the link, then send `End`. The
/// peer may answer early (its restore failed): that is checked between chunks.
fn stream(link: &mut Link, mut image: impl Read, name: &str) -> Result<(), StreamError> {
    let mut buf = vec![0u8; CHUNK];
    let mut n_chunks = 0u64;
    loop {
        let n = match image.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::ReadImage(e)),
        };
        if let Err(source) = link.send_data(&buf[..n]) {
            return Err(
                early_answer(link, name).unwrap_or_else(|| StreamError::SendBroken {
                    peer: name.to_string(),
                    source,
                }),
            );
        }
        n_chunks += 1;
        if n_chunks.is_multiple_of(16) && link.has_incoming() {
            return Err(
                early_answer(link, name).unwrap_or_else(|| StreamError::OutOfTurn {
                    peer: name.to_string(),
                }),
            );
        }
    }
    link.send(&Msg::End)
        .map_err(|source| StreamError::EndBroken {
            peer: name.to_string(),
            source,
        })
}

/// The reason the peer gave for stopping early, if it gave one.
fn early_answer(link: &mut Link, name: &str) -> Option<StreamError> {
    link.set_read_timeout(std::time::Duration::from_secs(2));
    match link.recv() {
        Ok(Frame::Msg(Msg::Failed { reason })) => Some(StreamError::PeerFailed {
            peer: name.to_string(),
            reason,
        }),
        _ => None,
    }
}

fn await_restored(
    link: &mut Link,
    timeout: std::time::Duration,
    name: &str,
) -> Result<u32, StreamError> {
    link.set_read_timeout(timeout);
    let peer = name.to_string();
    match link.recv_msg() {
        Ok(Msg::Restored { pid }) => Ok(pid),
        Ok(Msg::Failed { reason }) => Err(StreamError::PeerFailed { peer, reason }),
        Ok(m) => Err(StreamError::Unexpected {
            peer,
            answer: format!("{m:?}"),
        }),
        Err(source) => Err(StreamError::NoAnswer { peer, source }),
    }
}
