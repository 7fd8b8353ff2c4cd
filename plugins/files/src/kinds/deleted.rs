//! Regular files unlinked while open (core's `FdKind::Deleted`, not memfds).
//!
//! One with links left elsewhere (`st_nlink > 0` though its path reads "(deleted)") is
//! reopened through another link, found in the directory it was opened from; with none
//! found there it is refused naming the fd.
//!
//! Otherwise its content travels in the image (≤ 64 MiB, else refused naming the fd):
//! a sparse file larger than that stores only its data extents (`SEEK_DATA`/
//! `SEEK_HOLE`, read through a new description so the process's offset is untouched)
//! and its size, the limit then applying to the data. Restore makes a new unlinked file
//! with it (`O_TMPFILE` in the original directory if it still exists, else $TMPDIR or
//! /tmp), holes left as holes, and opens each description of it with its flags and
//! offset.

use crate::files_capnp as s;
use crate::kinds::regular::Regular;
use crate::record::{
    bad, fail, fill_new_file, reopen, saved_content, seek, show_content, Head, PathFile, Probe,
    CONTENT_LIMIT,
};
use serde_json::{json, Map, Value};
use spirit_core::{Error, Result};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The path it had (without " (deleted)").
    pub file: PathFile,
    /// Its content (owner records of the first description; empty on others); for a
    /// sparse file the bytes of its extents, one after another.
    pub data: Vec<u8>,
    /// A sparse file's size and data extents (offset, length); empty: `data` is all.
    pub size: u64,
    pub extents: Vec<(u64, u64)>,
}

impl Deleted {
    pub fn dump(p: &Probe<'_>) -> Result<Option<Deleted>> {
        Ok(Some(Deleted {
            file: PathFile::of(original(p), p.md),
            ..Deleted::default()
        }))
    }

    /// A file unlinked under this name with hard links left: another link in the same
    /// directory, as a regular file reached by it, or the refusal naming the fd.
    pub fn other_link(p: &Probe<'_>) -> Result<Regular> {
        let path = std::path::Path::new(original(p));
        let dir = path.parent().unwrap_or(std::path::Path::new("/"));
        let found = std::fs::read_dir(dir).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok()).map(|e| e.path()).find(|c| {
                std::fs::symlink_metadata(c)
                    .is_ok_and(|m| m.is_file() && m.ino() == p.md.ino() && m.dev() == p.md.dev())
            })
        });
        let Some(link) = found else {
            return Err(p.refuse(format!(
                "a file unlinked while open with {} other link(s) left, none of them in {} (spirit looks for another link there)",
                p.md.nlink(),
                dir.display()
            )));
        };
        Ok(Regular {
            file: PathFile::of(&link.to_string_lossy(), p.md),
            size: p.md.size(),
            mtime_ns: p.md.mtime() * 1_000_000_000 + p.md.mtime_nsec(),
            hash: None,
        })
    }

    /// Owner records: the content, or a sparse file's data extents.
    pub fn fill(&mut self, p: &Probe<'_>) -> Result<()> {
        if p.md.size() <= CONTENT_LIMIT || p.md.blocks() * 512 >= p.md.size() {
            self.data = saved_content(p, "a deleted file")?;
            return Ok(());
        }
        let path = format!("/proc/{}/fd/{}", p.pid, p.entry.fd);
        let io = |e: std::io::Error| Error::io(&path, e);
        let open = |flags| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(&path)
        };
        let f = match open(libc::O_NOATIME) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
            other => other,
        }
        .map_err(io)?;
        let size = p.md.size();
        let mut extents = Vec::new();
        let mut total = 0u64;
        let mut at = 0u64;
        while at < size {
            let seek = |off: u64, whence| {
                nix::unistd::lseek(f.as_raw_fd(), off as i64, whence).map(|o| o as u64)
            };
            let start = match seek(at, nix::unistd::Whence::SeekData) {
                Ok(s) => s,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(e) => return Err(io(e.into())),
            };
            let end = seek(start, nix::unistd::Whence::SeekHole)
                .map_err(|e| io(e.into()))?
                .min(size);
            total += end - start;
            if total > CONTENT_LIMIT {
                return Err(p.refuse(format!(
                    "a deleted sparse file of {size} bytes with more than the {} MiB of data spirit stores in an image",
                    CONTENT_LIMIT >> 20
                )));
            }
            extents.push((start, end - start));
            at = end;
        }
        let mut data = vec![0u8; total as usize];
        let mut pos = 0usize;
        for &(off, len) in &extents {
            f.read_exact_at(&mut data[pos..pos + len as usize], off)
                .map_err(io)?;
            pos += len as usize;
        }
        self.data = data;
        self.size = size;
        self.extents = extents;
        Ok(())
    }

    pub fn encode(&self, mut b: s::deleted::Builder<'_>) {
        self.file.encode(b.reborrow().init_file());
        b.set_data(&self.data);
        b.set_size(self.size);
        let mut l = b.init_extents(self.extents.len() as u32);
        for (i, &(off, len)) in self.extents.iter().enumerate() {
            let mut e = l.reborrow().get(i as u32);
            e.set_offset(off);
            e.set_len(len);
        }
    }

    pub fn decode(r: capnp::Result<s::deleted::Reader<'_>>) -> Result<Deleted> {
        let r = r.map_err(|e| bad(format!("deleted file: {e}")))?;
        let mut extents = Vec::new();
        for e in r
            .get_extents()
            .map_err(|e| bad(format!("deleted file extents: {e}")))?
            .iter()
        {
            let end = e.get_offset().checked_add(e.get_len());
            if end.is_none_or(|end| end > r.get_size()) {
                return Err(bad("a deleted file's extent beyond its size"));
            }
            extents.push((e.get_offset(), e.get_len()));
        }
        Ok(Deleted {
            file: PathFile::decode(r.get_file())?,
            data: r
                .get_data()
                .map_err(|e| bad(format!("deleted file content: {e}")))?
                .to_vec(),
            size: r.get_size(),
            extents,
        })
    }

    /// The file object, with `data` as its content (spread over its extents, holes
    /// left as holes, if it is sparse).
    pub fn make(&self, h: &Head, data: &[u8]) -> Result<OwnedFd> {
        if self.extents.is_empty() {
            return fill_new_file(self.make_unlinked(h)?, data, self.file.mode, h);
        }
        let want = self.extents.iter().fold(0u64, |a, e| a.saturating_add(e.1));
        if want != data.len() as u64 {
            return Err(bad(format!(
                "fd {}: a sparse deleted file's extents hold {want} bytes, its data {}",
                h.fd,
                data.len()
            )));
        }
        let file = std::fs::File::from(self.make_unlinked(h)?);
        file.set_len(self.size)
            .map_err(|e| fail(h, &format!("sizing the rebuilt file to {}", self.size), e))?;
        let mut pos = 0usize;
        for &(off, len) in &self.extents {
            file.write_all_at(&data[pos..pos + len as usize], off)
                .map_err(|e| fail(h, "writing a data extent of the rebuilt file", e))?;
            pos += len as usize;
        }
        fill_new_file(file.into(), &[], self.file.mode, h)
    }

    /// A description of the rebuilt file object `obj` with the flags and offset of `h`.
    pub fn open(h: &Head, obj: &OwnedFd) -> Result<OwnedFd> {
        let fd = reopen(h, obj)?;
        seek(&fd, h)?;
        Ok(fd)
    }

    /// An unlinked regular file: `O_TMPFILE`, or a named file unlinked at once where
    /// `O_TMPFILE` is not supported.
    fn make_unlinked(&self, h: &Head) -> Result<OwnedFd> {
        let dir = std::path::Path::new(&self.file.path)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| "/".into());
        let tmp =
            std::env::var_os("TMPDIR").map_or_else(|| "/tmp".into(), std::path::PathBuf::from);
        let mut last = None;
        for d in [dir, tmp] {
            if !d.is_dir() {
                continue;
            }
            let tmpfile = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .mode(0o600)
                .open(&d);
            match tmpfile {
                Ok(file) => return Ok(file.into()),
                Err(e) => last = Some(e),
            }
            for n in 0..100u32 {
                let p = d.join(format!(".spirit-deleted-{}-{n}", std::process::id()));
                let made = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&p);
                match made {
                    Ok(file) => {
                        let _ = std::fs::remove_file(&p);
                        return Ok(file.into());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        last = Some(e);
                        break;
                    }
                }
            }
        }
        Err(fail(
            h,
            &format!(
                "creating an unlinked file for the content of deleted {} (in its directory, $TMPDIR or /tmp)",
                self.file.path
            ),
            last.map_or_else(|| "no such directory".to_string(), |e| e.to_string()),
        ))
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        self.file.show(m);
        show_content(&self.data, m);
        if !self.extents.is_empty() {
            m.insert("sparse_size".into(), json!(self.size));
            m.insert("extents".into(), json!(self.extents));
        }
    }
}

/// The path the file had (without " (deleted)").
fn original<'a>(p: &'a Probe<'_>) -> &'a str {
    let t = p.entry.target.as_str();
    t.strip_suffix(" (deleted)").unwrap_or(t)
}
