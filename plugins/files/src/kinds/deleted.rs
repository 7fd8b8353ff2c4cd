//! Regular files unlinked while open (core's `FdKind::Deleted`, not memfds): their
//! content (≤ 64 MiB, else refused naming the fd) travels in the image; restore makes a
//! new unlinked file with it (`O_TMPFILE` in the original directory if it still exists,
//! else $TMPDIR or /tmp) and opens each description of it with its flags and offset.

use crate::files_capnp as s;
use crate::record::{
    bad, fail, fill_new_file, reopen, saved_content, seek, show_content, Head, PathFile, Probe,
};
use serde_json::{Map, Value};
use spirit_core::Result;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The path it had (without " (deleted)").
    pub file: PathFile,
    /// Its content (owner records of the first description; empty on others).
    pub data: Vec<u8>,
}

impl Deleted {
    pub fn dump(p: &Probe<'_>) -> Result<Option<Deleted>> {
        let t = p.entry.target.as_str();
        let path = t.strip_suffix(" (deleted)").unwrap_or(t);
        Ok(Some(Deleted {
            file: PathFile::of(path, p.md),
            data: Vec::new(),
        }))
    }

    /// Owner records: the content.
    pub fn fill(&mut self, p: &Probe<'_>) -> Result<()> {
        self.data = saved_content(p, "a deleted file")?;
        Ok(())
    }

    pub fn encode(&self, mut b: s::deleted::Builder<'_>) {
        self.file.encode(b.reborrow().init_file());
        b.set_data(&self.data);
    }

    pub fn decode(r: capnp::Result<s::deleted::Reader<'_>>) -> Result<Deleted> {
        let r = r.map_err(|e| bad(format!("deleted file: {e}")))?;
        Ok(Deleted {
            file: PathFile::decode(r.get_file())?,
            data: r
                .get_data()
                .map_err(|e| bad(format!("deleted file content: {e}")))?
                .to_vec(),
        })
    }

    /// The file object, with `data` as its content.
    pub fn make(&self, h: &Head, data: &[u8]) -> Result<OwnedFd> {
        fill_new_file(self.make_unlinked(h)?, data, self.file.mode, h)
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
    }
}
