//! Memory objects no path can give back: files deleted while mapped (or memfds whose
//! descriptor was closed) and shared anonymous memory mapped by several processes of a
//! tree.
//!
//! Dump: a mapping of a deleted file carries the file's content in the image (once per
//! object and process, up to [`CONTENT_LIMIT`]); a SysV shared memory attachment is
//! refused naming the area (its segment lives in the IPC namespace, which spirit does
//! not restore yet: it must not come back as private memory).
//!
//! Restore: before any process's memory is rebuilt, the restorer creates one memfd per
//! object — with the content of a deleted file, or empty and sized for shared
//! anonymous memory (its pages arrive with the page frames of the processes mapping it,
//! and land in the one object) — and each mapping of it is made from
//! `/proc/<restorer>/fd/N`, so processes that shared it share it again. Shared
//! anonymous memory held by one process only is mapped anonymously, as before.

use crate::error::{Error, Result};
use crate::model::{MappedObject, ProcessImage, Vma, VmaKind};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

/// Deleted mapped files up to this size travel inside the image.
pub const CONTENT_LIMIT: u64 = 64 << 20;

const DELETED: &str = " (deleted)";

/// Whether the mapping is of a file deleted since it was mapped (memfds included).
pub fn is_deleted_file(v: &Vma) -> bool {
    v.kind == VmaKind::File && v.path.ends_with(DELETED)
}

fn is_sysv(v: &Vma) -> bool {
    v.path.starts_with("/SYSV")
}

/// Collect the deleted files `pid` maps (content read through `map_files`), refusing
/// what cannot be restored.
pub(crate) fn dump(pid: i32, vmas: &[Vma]) -> Result<Vec<MappedObject>> {
    let mut out: Vec<MappedObject> = Vec::new();
    for v in vmas {
        if is_sysv(v) {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "the memory area {:#x}-{:#x} is a SysV shared memory segment ({})",
                    v.start,
                    v.end,
                    v.path.trim_end_matches(DELETED)
                ),
            });
        }
        if !is_deleted_file(v) || out.iter().any(|o| o.dev == v.dev && o.inode == v.inode) {
            continue;
        }
        let via = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
        let mut f = std::fs::File::open(&via).map_err(|e| Error::io(&via, e))?;
        let size = f.metadata().map_err(|e| Error::io(&via, e))?.len();
        if size > CONTENT_LIMIT {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "the memory area {:#x}-{:#x} maps {}, deleted since, of {size} bytes: more than the {} MiB spirit stores in an image",
                    v.start,
                    v.end,
                    v.path,
                    CONTENT_LIMIT >> 20
                ),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        f.read_to_end(&mut data).map_err(|e| Error::io(&via, e))?;
        out.push(MappedObject {
            dev: v.dev.clone(),
            inode: v.inode,
            path: v.path.trim_end_matches(DELETED).to_string(),
            data,
        });
    }
    Ok(out)
}

/// The memfds of one restore, by (dev, inode) of the object they stand for.
pub(crate) struct Objects {
    by_id: HashMap<(String, u64), OwnedFd>,
}

impl Objects {
    /// Create the objects the tree `procs` needs.
    pub fn create(procs: &[&ProcessImage]) -> Result<Objects> {
        let mut by_id = HashMap::new();
        for p in procs {
            for o in &p.mapped {
                let key = (o.dev.clone(), o.inode);
                if by_id.contains_key(&key) {
                    continue;
                }
                let fd = memfd(&o.path, o.data.len() as u64)?;
                std::fs::File::from(fd.try_clone().map_err(|e| Error::io("memfd", e))?)
                    .write_all_at(&o.data, 0)
                    .map_err(|e| Error::io(format!("memfd for {}", o.path), e))?;
                by_id.insert(key, fd);
            }
        }
        // Shared anonymous memory mapped by more than one process.
        let mut holders: HashMap<(String, u64), (Vec<i32>, u64)> = HashMap::new();
        for p in procs {
            for v in p
                .vmas
                .iter()
                .filter(|v| v.kind == VmaKind::SharedAnon && v.inode != 0)
            {
                let e = holders.entry((v.dev.clone(), v.inode)).or_default();
                if !e.0.contains(&p.pid) {
                    e.0.push(p.pid);
                }
                e.1 = e.1.max(v.offset + v.len());
            }
        }
        for (key, (pids, size)) in holders {
            if pids.len() > 1 {
                by_id.insert(key, memfd("spirit-shared-anon", size)?);
            }
        }
        Ok(Objects { by_id })
    }

    /// The path a restored process opens to map `v`, if `v` is one of the objects.
    pub fn path_for(&self, v: &Vma) -> Option<String> {
        self.by_id
            .get(&(v.dev.clone(), v.inode))
            .map(|fd| format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd()))
    }
}

fn memfd(name: &str, size: u64) -> Result<OwnedFd> {
    let name = name.rsplit('/').next().unwrap_or("spirit");
    let fd = spirit_kmod::fd::memfd_create(name, libc::MFD_CLOEXEC)?;
    let f = std::fs::File::from(fd.try_clone().map_err(|e| Error::io("memfd", e))?);
    f.set_len(size)
        .map_err(|e| Error::io(format!("memfd {name}"), e))?;
    Ok(fd)
}

use std::os::unix::fs::FileExt as _;
