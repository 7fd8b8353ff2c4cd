//! Jobs that stay on this host: checkpoint into a file and restore from a file, each
//! by one worker run with the caller's identity (so the image file is opened as the
//! caller, never as the daemon).

use crate::auth::Identity;
use crate::ctx::Ctx;
use crate::job::{JobHandle, ResultMap, Val};
use crate::worker::{self, Worker, WorkerError};
use std::process::Stdio;

/// Why a local job failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("the checkpoint worker succeeded but sent no result")]
    NoResult,
    #[error(transparent)]
    NoPid(#[from] NoPid),
}

/// `spirit restore --detach` printed no pid.
#[derive(Debug, thiserror::Error)]
#[error("the restore worker printed no pid (stdout: {stdout:?})")]
pub struct NoPid {
    pub stdout: Vec<String>,
}

pub fn checkpoint(
    job: &JobHandle,
    ctx: &Ctx,
    who: &Identity,
    pid: u32,
    image: &str,
    leave_running: bool,
) -> Result<ResultMap, LocalError> {
    let mut cmd = worker::command(ctx, who);
    cmd.args(["dump", &pid.to_string(), "-o", image, "--progress-fd", "2"]);
    if leave_running {
        cmd.arg("--leave-running");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let w = Worker::spawn(cmd, &format!("job {} checkpoint", job.id))?;
    let out = w.wait(|d, t| job.progress(d, t));
    out.check(&format!("checkpoint of pid {pid}"))?;
    let stats = out.result.ok_or(LocalError::NoResult)?;
    let mut r = worker::dump_result(&stats);
    r.push(("image".into(), Val::Str(image.to_string())));
    Ok(r)
}

pub fn restore(
    job: &JobHandle,
    ctx: &Ctx,
    who: &Identity,
    image: &str,
    new_pid: bool,
) -> Result<ResultMap, LocalError> {
    let mut cmd = worker::command(ctx, who);
    cmd.args(["restore", image, "--detach"]);
    if new_pid {
        cmd.arg("--new-pid");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut w = Worker::spawn(cmd, &format!("job {} restore", job.id))?;
    w.collect_stdout();
    let out = w.wait(|_, _| {});
    out.check(&format!("restore of {image}"))?;
    let pid = restored_pid(&out.stdout)?;
    Ok(vec![
        ("pid".into(), Val::U32(pid)),
        ("image".into(), Val::Str(image.to_string())),
    ])
}

/// The pid `spirit restore --detach` printed.
pub fn restored_pid(stdout: &[String]) -> Result<u32, NoPid> {
    stdout
        .iter()
        .find_map(|l| l.trim().parse::<u32>().ok())
        .ok_or_else(|| NoPid {
            stdout: stdout.to_vec(),
        })
}
