//! inotify instances: their watches (fdinfo), each resolved to a path through its file
//! handle with `open_by_handle_at`; at prepare every watched path must exist; restore
//! adds the watches again with their original watch descriptors.

use crate::files_capnp as s;
use crate::record::{bad, fail, text, tokens, Head, Probe, SETTABLE};
use serde_json::{json, Map, Value};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    pub wd: i32,
    pub path: String,
    pub mask: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inotify {
    pub watches: Vec<Watch>,
}

impl Inotify {
    pub fn dump(_p: &Probe<'_>) -> Result<Option<Inotify>> {
        Ok(Some(Inotify::default()))
    }

    /// Owner records: the watches, by wd.
    pub fn fill(&mut self, p: &Probe<'_>) -> Result<()> {
        for l in p.info.lines("inotify ") {
            let t = tokens(l);
            let hex = |k: &str| t.get(k).and_then(|v| u64::from_str_radix(v, 16).ok());
            let (Some(wd), Some(ino), Some(sdev), Some(mask), Some(htype), Some(handle)) = (
                hex("wd"),
                hex("ino"),
                hex("sdev"),
                hex("mask"),
                hex("fhandle-type"),
                t.get("f_handle").and_then(|h| unhex(h)),
            ) else {
                return Err(Error::Dump {
                    pid: p.pid,
                    msg: format!("fd {}: unexpected inotify fdinfo line {l:?}", p.entry.fd),
                });
            };
            let path = resolve_handle(p.pid, sdev, htype as i32, &handle, ino).ok_or_else(|| {
                p.refuse(format!(
                    "an inotify instance whose watch {wd} (inode {ino} on device {}:{}) spirit cannot resolve to a path (needs CAP_DAC_READ_SEARCH and the file still linked)",
                    sdev >> 20,
                    sdev & 0xfffff
                ))
            })?;
            self.watches.push(Watch {
                wd: wd as i32,
                path,
                mask: mask as u32,
            });
        }
        self.watches.sort_by_key(|w| w.wd);
        Ok(())
    }

    pub fn encode(&self, b: s::inotify::Builder<'_>) {
        let mut l = b.init_watches(self.watches.len() as u32);
        for (j, w) in self.watches.iter().enumerate() {
            let mut x = l.reborrow().get(j as u32);
            x.set_wd(w.wd);
            x.set_path(&w.path);
            x.set_mask(w.mask);
        }
    }

    pub fn decode(r: capnp::Result<s::inotify::Reader<'_>>) -> Result<Inotify> {
        let r = r.map_err(|e| bad(format!("inotify: {e}")))?;
        let mut watches = Vec::new();
        for w in r
            .get_watches()
            .map_err(|e| bad(format!("inotify watches: {e}")))?
            .iter()
        {
            watches.push(Watch {
                wd: w.get_wd(),
                path: text(w.get_path(), "inotify watch path")?,
                mask: w.get_mask(),
            });
        }
        Ok(Inotify { watches })
    }

    /// Prepare: every watched path is there.
    pub fn check(&self, fd: i32) -> Result<()> {
        for w in &self.watches {
            if std::fs::symlink_metadata(&w.path).is_err() {
                return Err(Error::FileMismatch {
                    path: w.path.clone(),
                    what: format!(
                        "watched by the inotify instance at fd {fd} (wd {}) at checkpoint, but missing on this host",
                        w.wd
                    ),
                });
            }
        }
        Ok(())
    }

    /// Watches are added in wd order; where the kernel would hand out a lower wd, that
    /// number is used up (added and removed again) first, and the resulting IN_IGNORED
    /// events are drained.
    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let fd = kfd::inotify_init(libc::IN_CLOEXEC | libc::IN_NONBLOCK)
            .map_err(|e| fail(h, "inotify_init1", e))?;
        let mut burned = false;
        for w in &self.watches {
            let mut tries = 0u32;
            loop {
                let wd = kfd::inotify_add_watch(&fd, &w.path, w.mask)
                    .map_err(|e| fail(h, &format!("watching {} (wd {})", w.path, w.wd), e))?;
                if wd == w.wd {
                    break;
                }
                if wd > w.wd || tries > 1 << 16 {
                    return Err(fail(
                        h,
                        &format!("watching {} as wd {}", w.path, w.wd),
                        format!("the kernel gave wd {wd} (is the same file watched twice?)"),
                    ));
                }
                kfd::inotify_rm_watch(&fd, wd).map_err(|e| fail(h, "inotify_rm_watch", e))?;
                burned = true;
                tries += 1;
            }
        }
        let fd = if burned {
            let mut file = std::fs::File::from(fd);
            let mut buf = [0u8; 4096];
            while matches!(file.read(&mut buf), Ok(n) if n > 0) {}
            file.into()
        } else {
            fd
        };
        kfd::set_status_flags(&fd, h.flags as i32 & SETTABLE)?;
        Ok(fd)
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        m.insert(
            "watches".into(),
            json!(self
                .watches
                .iter()
                .map(|w| json!({"wd": w.wd, "path": w.path, "mask": w.mask}))
                .collect::<Vec<_>>()),
        );
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The path of the file a handle names: open it through a mount of its filesystem
/// (from the process's mountinfo) and read the path back.
fn resolve_handle(pid: i32, sdev: u64, htype: i32, handle: &[u8], ino: u64) -> Option<String> {
    let want = format!("{}:{}", sdev >> 20, sdev & 0xfffff);
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    // Fields: id parent major:minor root mountpoint ...; prefer a mount of the fs root.
    let mut mounts: Vec<(bool, String)> = mi
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.get(2) == Some(&want.as_str())).then(|| (w[3] != "/", w[4].to_string()))
        })
        .collect();
    mounts.sort();
    for (_, mnt) in mounts {
        let Ok(m) = std::fs::File::open(format!("/proc/{pid}/root{mnt}")) else {
            continue;
        };
        let Ok(f) = kfd::open_by_handle(&m.into(), htype, handle, libc::O_PATH | libc::O_CLOEXEC)
        else {
            continue;
        };
        let link = format!("/proc/self/fd/{}", f.as_raw_fd());
        let Ok(p) = std::fs::read_link(&link) else {
            continue;
        };
        let p = p.to_string_lossy().into_owned();
        let same = std::fs::metadata(&link).is_ok_and(|md| md.ino() == ino);
        if same && !p.ends_with(" (deleted)") && std::path::Path::new(&p).exists() {
            return Some(p);
        }
    }
    None
}
