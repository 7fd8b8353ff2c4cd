//! Regular files on /proc and /sys (core's `FdKind::Pseudo`): reopened by path with
//! their flags and offset, never content-checked (the size and mtime of such files mean
//! nothing). A path under `/proc/PID/` naming the restored process itself is reopened
//! through `/proc/self/` (right under `--new-pid` and in a new pid namespace alike); one
//! naming another process or thread of the tree is refused when pids change (its new
//! number is not known in the restore child), never opened for whatever now has it.

use crate::files_capnp as s;
use crate::record::{bad, fail, open_as, seek, text, Head, Probe};
use serde_json::{json, Map, Value};
use spirit_core::{Error, Result};
use std::collections::HashSet;
use std::os::fd::OwnedFd;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pseudo {
    pub path: String,
}

/// The pids a restored process's /proc paths may name.
#[derive(Clone, Debug, Default)]
pub struct Pids {
    /// The process's pid in the image.
    pub image_pid: i32,
    /// Whether it has another pid now (`--new-pid`).
    pub renumbered: bool,
    /// Every pid and thread id of the tree, as in the image.
    pub tree: HashSet<i32>,
}

impl Pids {
    /// `path` as this process must reopen it, or why it cannot be.
    pub fn rewrite(&self, path: &str) -> std::result::Result<String, String> {
        let Some(rest) = path.strip_prefix("/proc/") else {
            return Ok(path.to_string());
        };
        let (num, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(pid) = num.parse::<i32>() else {
            return Ok(path.to_string());
        };
        if !self.tree.contains(&pid) {
            return Ok(path.to_string());
        }
        if pid != self.image_pid {
            return if self.renumbered {
                Err(format!(
                    "{path} names process or thread {pid} of the restored tree, whose new pid is not known here; restore without --new-pid"
                ))
            } else {
                Ok(path.to_string())
            };
        }
        if self.renumbered {
            if let Some(t) = tail
                .strip_prefix("task/")
                .and_then(|t| t.split('/').next())
                .and_then(|t| t.parse::<i32>().ok())
            {
                if self.tree.contains(&t) {
                    return Err(format!(
                        "{path} names thread {t}, whose new thread id is not known here; restore without --new-pid"
                    ));
                }
            }
        }
        Ok(if tail.is_empty() {
            "/proc/self".to_string()
        } else {
            format!("/proc/self/{tail}")
        })
    }
}

impl Pseudo {
    pub fn dump(p: &Probe<'_>) -> Result<Option<Pseudo>> {
        Ok(Some(Pseudo {
            path: p.entry.target.clone(),
        }))
    }

    pub fn encode(&self, mut b: s::pseudo::Builder<'_>) {
        b.set_path(&self.path);
    }

    pub fn decode(r: capnp::Result<s::pseudo::Reader<'_>>) -> Result<Pseudo> {
        let r = r.map_err(|e| bad(format!("/proc or /sys file: {e}")))?;
        Ok(Pseudo {
            path: text(r.get_path(), "/proc or /sys file path")?,
        })
    }

    /// Prepare: a /sys file must be there (a /proc file names processes that do not
    /// exist yet; nothing is compared).
    pub fn check(&self, fd: i32) -> Result<()> {
        if self.path.starts_with("/sys/") && std::fs::metadata(&self.path).is_err() {
            return Err(Error::FileMismatch {
                path: self.path.clone(),
                what: format!("open as fd {fd} at checkpoint but missing on this host"),
            });
        }
        Ok(())
    }

    pub fn open(&self, h: &Head, pids: &Pids) -> Result<OwnedFd> {
        let path = pids
            .rewrite(&self.path)
            .map_err(|why| fail(h, "reopening a /proc file", why))?;
        let fd = open_as(h, &path)?;
        seek(&fd, h)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        m.insert("path".into(), json!(self.path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pids(renumbered: bool) -> Pids {
        Pids {
            image_pid: 100,
            renumbered,
            tree: [100, 101, 200].into_iter().collect(),
        }
    }

    #[test]
    fn own_proc_paths_go_through_self() {
        let p = pids(true);
        assert_eq!(p.rewrite("/proc/100/status").unwrap(), "/proc/self/status");
        assert_eq!(p.rewrite("/proc/100").unwrap(), "/proc/self");
        assert_eq!(p.rewrite("/proc/1000/status").unwrap(), "/proc/1000/status");
        assert_eq!(p.rewrite("/proc/meminfo").unwrap(), "/proc/meminfo");
        assert_eq!(p.rewrite("/sys/kernel/x").unwrap(), "/sys/kernel/x");
        assert!(p.rewrite("/proc/200/status").unwrap_err().contains("200"));
        assert!(p.rewrite("/proc/100/task/101/stat").is_err());
        assert_eq!(
            pids(false).rewrite("/proc/200/status").unwrap(),
            "/proc/200/status"
        );
    }
}
