//! The helper process of a restore through an external plugin (see `restore.rs` for why
//! it exists): forked by the restorer at plan time, it starts the plugin, rebuilds every
//! descriptor of the image's records (`Restore`, or the earlier record's descriptor
//! shared or reopened), checks each is of the kind checkpointed, and reports the
//! numbers it holds them at; the restorer copies them out with `pidfd_getfd`. Then it
//! waits for the restore's verdict on a pipe: `c` (the tree runs) ends it; `a` or the
//! pipe closing (the restore failed, or the restorer died) first has the plugin
//! `Discard` what each `Restore` made on the host. It dies with the restorer
//! (`PR_SET_PDEATHSIG`).

use crate::manifest::Manifest;
use crate::peer::Peer;
use crate::restore::{check_kind, failed, reopen};
use crate::section::FdRecord;
use nix::fcntl::OFlag;
use spirit_core::Result;
use spirit_kmod::fd::{pidfd_getfd, pidfd_open};
use spirit_kmod::{clone3_fork, exit_now, ForkOutcome};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use zbus::zvariant::Value;

/// A running helper, until [`Helper::end`] (or drop: a failed restore).
pub struct Helper {
    pid: i32,
    verdict: Option<std::fs::File>,
}

impl Helper {
    /// Fork the helper and take the descriptors it made, in `work`'s order.
    pub fn run(m: &Manifest, work: &[(i32, FdRecord)]) -> Result<(Helper, Vec<OwnedFd>)> {
        let pipe =
            || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| failed(m, format!("pipe: {e}")));
        let (report_r, report_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let pid = match clone3_fork(None)? {
            ForkOutcome::Child => {
                drop((report_r, go_w));
                helper_main(m, work, report_w, go_r)
            }
            ForkOutcome::Parent { child } => child,
        };
        drop((report_w, go_r));
        let helper = Helper {
            pid,
            verdict: Some(std::fs::File::from(go_w)),
        };
        let mut text = String::new();
        std::fs::File::from(report_r)
            .read_to_string(&mut text)
            .map_err(|e| failed(m, format!("reading the helper's report: {e}")))?;
        if let Some(msg) = text.strip_prefix("error ") {
            return Err(failed(m, msg));
        }
        let nums = text
            .strip_prefix("ok")
            .ok_or_else(|| failed(m, "the helper process died"))?;
        let pidfd = pidfd_open(pid)?;
        let fds = nums
            .split_whitespace()
            .map(|n| {
                let n: i32 = n.parse().map_err(|_| failed(m, "bad helper report"))?;
                Ok(pidfd_getfd(&pidfd, n)?)
            })
            .collect::<Result<Vec<_>>>()?;
        if fds.len() != work.len() {
            return Err(failed(
                m,
                "the helper returned the wrong number of descriptors",
            ));
        }
        Ok((helper, fds))
    }

    /// The restore ended (`ok`: the tree runs): tell the helper, wait for it.
    pub fn end(&mut self, ok: bool) {
        if let Some(mut v) = self.verdict.take() {
            let _ = v.write_all(if ok { b"c" } else { b"a" });
            drop(v);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.end(false);
    }
}

fn helper_main(m: &Manifest, work: &[(i32, FdRecord)], report: OwnedFd, verdict: OwnedFd) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let peer = Peer::start(m);
    let mut made = Vec::new();
    let mut restored = Vec::new();
    let rebuilt = peer
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|p| rebuild(p, work, &mut made, &mut restored));
    let text = match &rebuilt {
        Ok(()) => {
            let nums: Vec<String> = made.iter().map(|f| f.as_raw_fd().to_string()).collect();
            format!("ok {}", nums.join(" "))
        }
        Err(e) => format!("error {e}"),
    };
    let _ = std::fs::File::from(report).write_all(text.as_bytes());
    let mut b = [0u8; 1];
    let committed = matches!(std::fs::File::from(verdict).read(&mut b), Ok(1) if b[0] == b'c');
    if let (Ok(p), false) = (&peer, committed) {
        // Only what Restore made (never what it refused: a name taken on the host).
        for &(pid, ref r) in restored.iter().map(|&i| &work[i]) {
            let _ = p.discard(&r.data, facts(pid, r));
        }
    }
    drop(made);
    drop(peer);
    exit_now(0)
}

fn facts(pid: i32, r: &FdRecord) -> HashMap<&'static str, Value<'_>> {
    HashMap::from([
        ("pid", Value::from(pid)),
        ("fd", Value::from(r.fd)),
        ("flags", Value::from(r.flags)),
        ("target", Value::from(r.target.as_str())),
    ])
}

/// Rebuild each descriptor into `out` (or share or reopen the earlier one of the same
/// object), check its kind; `restored` lists the records `Restore` succeeded for.
fn rebuild(
    peer: &Peer,
    work: &[(i32, FdRecord)],
    out: &mut Vec<OwnedFd>,
    restored: &mut Vec<usize>,
) -> std::result::Result<(), String> {
    for (i, (pid, r)) in work.iter().enumerate() {
        let at = format!("process {pid} fd {} ({})", r.fd, r.target);
        let fd = match r.share {
            Some(sh) => {
                let first = work[..i]
                    .iter()
                    .position(|(p, f)| (*p, f.fd) == (sh.pid, sh.fd))
                    .ok_or_else(|| {
                        format!(
                            "{at}: bad section: it shares process {} fd {}, which has no earlier record",
                            sh.pid, sh.fd
                        )
                    })?;
                if sh.same_description {
                    out[first]
                        .try_clone()
                        .map_err(|e| format!("{at}: dup: {e}"))?
                } else {
                    reopen(&out[first], r).map_err(|e| {
                        format!(
                            "{at}: reopening the object of process {} fd {}: {e}",
                            sh.pid, sh.fd
                        )
                    })?
                }
            }
            None => {
                let fd = peer
                    .restore(&r.data, facts(*pid, r))
                    .map_err(|e| format!("{at}: {e}"))?;
                restored.push(i);
                fd
            }
        };
        check_kind(&fd, r).map_err(|e| format!("{at}: {e}"))?;
        out.push(fd);
    }
    Ok(())
}
