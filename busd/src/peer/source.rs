//! The source side of a migration (a `migrate` job): survey the running tree (pages,
//! needed files), link to the peer, ask, stream
//! the image from a `spirit dump PID -o - --verdict-fd 0` worker, and end the original
//! only after the peer confirmed. Until then the worker holds the process frozen; if
//! the job fails at any point, the worker's stdin (its verdict fd) closes without a
//! `k` and the process resumes untouched.

use super::link::{describe, Frame, Link, CHUNK};
use super::{survey, Msg};
use crate::auth::Identity;
use crate::config::Peer;
use crate::job::{JobHandle, ResultMap, Val};
use crate::worker::{self, Worker};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Stdio;
use std::time::Instant;

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn migrate(
    job: &JobHandle,
    who: &Identity,
    pid: u32,
    peer: &Peer,
    keep_source: bool,
    pid_ns: bool,
) -> Result<ResultMap, String> {
    let started = Instant::now();
    let ctx = job.ctx();
    // What the peer needs to know to accept or refuse, taken while the tree runs.
    let survey = survey::survey(pid)?;
    let mut link = Link::connect(&ctx.key, peer, ctx.cfg.link_timeout())?;
    if let Some(b) = link.breaker() {
        job.set_canceller(Some(Box::new(move || {
            let _ = b.shutdown(Shutdown::Both);
        })));
    }
    let name = &peer.name;
    let lost = |e: std::io::Error| format!("link to peer {name} broken: {}", describe(&e));
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
            return Err(format!(
                "peer {name} refused: {reason}; the process {pid} was not stopped"
            ))
        }
        m => return Err(format!("peer {name} answered {m:?} to a migration request")),
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
        _ => return Err("the dump worker's pipes are missing".into()),
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
        let new_pid = answer.map_err(|e| format!("{e}; the source process {pid} resumed"))?;
        if ended {
            let _ = link.send(&Msg::Commit {
                source_ended: !keep_source,
            });
        }
        out.check(&format!("checkpoint of pid {pid}"))?;
        if !ended {
            return Err(format!(
                "cancelled after the peer restored pid {new_pid}; the source process {pid} resumed"
            ));
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
fn stream(link: &mut Link, mut image: impl Read, name: &str) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    let mut n_chunks = 0u64;
    loop {
        let n = match image.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the image from the dump worker: {e}")),
        };
        if let Err(e) = link.send_data(&buf[..n]) {
            return Err(early_answer(link, name).unwrap_or_else(|| {
                format!(
                    "link to peer {name} broken while sending the image: {}",
                    describe(&e)
                )
            }));
        }
        n_chunks += 1;
        if n_chunks.is_multiple_of(16) && link.has_incoming() {
            return Err(early_answer(link, name).unwrap_or_else(|| {
                format!("peer {name} spoke out of turn while receiving the image")
            }));
        }
    }
    link.send(&Msg::End).map_err(|e| {
        format!(
            "link to peer {name} broken at the end of the image: {}",
            describe(&e)
        )
    })
}

/// The reason the peer gave for stopping early, if it gave one.
fn early_answer(link: &mut Link, name: &str) -> Option<String> {
    link.set_read_timeout(std::time::Duration::from_secs(2));
    match link.recv() {
        Ok(Frame::Msg(Msg::Failed { reason })) => Some(format!(
            "peer {name} could not restore the process: {reason}"
        )),
        _ => None,
    }
}

fn await_restored(
    link: &mut Link,
    timeout: std::time::Duration,
    name: &str,
) -> Result<u32, String> {
    link.set_read_timeout(timeout);
    match link.recv_msg() {
        Ok(Msg::Restored { pid }) => Ok(pid),
        Ok(Msg::Failed { reason }) => Err(format!(
            "peer {name} could not restore the process: {reason}"
        )),
        Ok(m) => Err(format!(
            "peer {name} answered {m:?} instead of a restore result"
        )),
        Err(e) => Err(format!(
            "no answer from peer {name} after the image was sent: {}",
            describe(&e)
        )),
    }
}
