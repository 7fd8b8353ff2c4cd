//! What every descriptor kind shares, below the kinds: the common part of a record
//! ([`Head`]), a file reached by path ([`PathFile`]), fdinfo parsing, and the few
//! restore steps every kind uses (open by path with the saved flags, seek, park).
//! Depends on nothing else of the plugin.

use crate::files_capnp as s;
use serde_json::{json, Map, Value};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// What every descriptor record has, whatever its kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub fd: i32,
    /// Open flags as in fdinfo, without O_CLOEXEC (access mode, O_APPEND...).
    pub flags: u32,
    pub cloexec: bool,
    pub pos: u64,
}

impl Head {
    pub fn access(&self) -> i32 {
        self.flags as i32 & libc::O_ACCMODE
    }
}

/// The error of a restore step of descriptor `h`.
pub fn fail(h: &Head, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Restore(format!("fd {}: {what}: {e}", h.fd))
}

/// Malformed section bytes.
pub fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Restore(format!(
        "{MALFORMED}{msg}; the image is damaged or was not written by spirit"
    ))
}

const MALFORMED: &str = "malformed files section: ";

/// A decode error of a part of the section, with where it is (`fd 3`) put in front.
pub fn within(e: Error, place: &str) -> Error {
    match e {
        Error::Restore(m) => match m.strip_prefix(MALFORMED) {
            Some(rest) => Error::Restore(format!("{MALFORMED}{place}: {rest}")),
            None => Error::Restore(format!("{place}: {m}")),
        },
        other => other,
    }
}

/// A capnp text field as a String, or an error naming `what`.
pub fn text(t: capnp::Result<capnp::text::Reader<'_>>, what: &str) -> Result<String> {
    let t = t.map_err(|e| bad(format!("{what}: {e}")))?;
    t.to_str()
        .map(str::to_string)
        .map_err(|e| bad(format!("{what}: {e}")))
}

/// Status flags `F_SETFL` can set.
pub const SETTABLE: i32 = libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_NOATIME;

/// A file reached by path as it was at checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathFile {
    pub path: String,
    pub mode: u32,
    pub dev: u64,
    pub inode: u64,
}

impl PathFile {
    pub fn of(path: &str, md: &std::fs::Metadata) -> PathFile {
        PathFile {
            path: path.to_string(),
            mode: md.mode(),
            dev: md.dev(),
            inode: md.ino(),
        }
    }

    pub fn encode(&self, mut b: s::path_file::Builder<'_>) {
        b.set_path(&self.path);
        b.set_mode(self.mode);
        b.set_dev(self.dev);
        b.set_inode(self.inode);
    }

    pub fn decode(r: capnp::Result<s::path_file::Reader<'_>>) -> Result<PathFile> {
        let r = r.map_err(|e| bad(format!("file record: {e}")))?;
        Ok(PathFile {
            path: text(r.get_path(), "file path")?,
            mode: r.get_mode(),
            dev: r.get_dev(),
            inode: r.get_inode(),
        })
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        m.insert("path".into(), json!(self.path));
        m.insert("mode".into(), json!(self.mode));
        m.insert("dev".into(), json!(self.dev));
        m.insert("inode".into(), json!(self.inode));
    }

    /// The path must still name this very file at checkpoint (or a restore would open
    /// another).
    pub fn still_named(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|p| p.ino() == self.inode && p.dev() == self.dev)
    }

    /// Prepare: the path must exist on this host and be of the kind `is` accepts.
    pub fn check(
        &self,
        fd: i32,
        is: impl Fn(&std::fs::Metadata) -> bool,
    ) -> Result<std::fs::Metadata> {
        let mismatch = |what: String| Error::FileMismatch {
            path: self.path.clone(),
            what,
        };
        let md = std::fs::metadata(&self.path).map_err(|e| {
            mismatch(format!(
                "open as fd {fd} at checkpoint but missing on this host: {e}"
            ))
        })?;
        if !is(&md) {
            return Err(mismatch(format!(
                "open as fd {fd} at checkpoint, but it is now a different kind of file or device"
            )));
        }
        Ok(md)
    }
}

pub use spirit_core::procinfo::FdInfo;

/// `key:value` tokens of one fdinfo line (`tfd: 5 events: 19` has spaces after the
/// colons: both spellings are handled).
pub fn tokens(line: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if let Some((k, v)) = w.split_once(':') {
            if v.is_empty() {
                if let Some(next) = words.next() {
                    out.insert(k.to_string(), next.to_string());
                }
            } else {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

/// What a kind's dump sees of one descriptor of a frozen process.
pub struct Probe<'a> {
    pub pid: i32,
    pub entry: &'a spirit_core::plugin::FdEntry,
    pub info: &'a FdInfo,
    /// `stat` through the magic link: the open file itself, wherever it is now.
    pub md: &'a std::fs::Metadata,
}

impl Probe<'_> {
    /// A dump error about fdinfo that does not read as expected.
    pub fn unexpected(&self, what: &str) -> Error {
        Error::Dump {
            pid: self.pid,
            msg: format!("fd {}: unexpected fdinfo ({what})", self.entry.fd),
        }
    }

    /// This descriptor refused, `kind` saying what it is and why.
    pub fn refuse(&self, kind: String) -> Error {
        Error::UnsupportedFd {
            pid: self.pid,
            fd: self.entry.fd,
            kind,
            target: self.entry.target.clone(),
        }
    }

    /// Up to `limit` bytes of the file behind the descriptor; `None` if it is larger.
    pub fn content(&self, limit: u64) -> Result<Option<Vec<u8>>> {
        let p = format!("/proc/{}/fd/{}", self.pid, self.entry.fd);
        let buf = read_quietly(&p, limit + 1).map_err(|e| Error::io(&p, e))?;
        Ok((buf.len() as u64 <= limit).then_some(buf))
    }
}

/// Up to `limit` bytes of `path`, read without touching its access time where this
/// process may (`O_NOATIME`: the file's owner or CAP_FOWNER; else a plain read, which
/// relatime may record).
pub fn read_quietly(path: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    let f = match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0)?,
        other => other?,
    };
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Move `fd` to a number ≥ `base` (close-on-exec; the final flags come with `dup3`).
pub fn park(fd: OwnedFd, base: i32) -> Result<OwnedFd> {
    if fd.as_raw_fd() >= base {
        return Ok(fd);
    }
    kfd::dup_above(&fd, base)
        .map_err(|e| Error::Restore(format!("moving a descriptor above {base}: {e}")))
}

/// `__O_TMPFILE`: the bit of `O_TMPFILE` besides `O_DIRECTORY`.
const TMPFILE_BIT: i32 = libc::O_TMPFILE & !libc::O_DIRECTORY;

/// Open `path` with the access mode and flags of `h` (never creating or truncating).
pub fn open_as(h: &Head, path: &str) -> Result<OwnedFd> {
    let acc = h.access();
    let mut strip =
        libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_ACCMODE;
    // A file made with O_TMPFILE (glibc's tmpfile()) keeps it in its open flags; as a
    // flag of a reopen it asks for a new file in a directory (ENOTDIR on the file).
    if h.flags as i32 & TMPFILE_BIT != 0 {
        strip |= libc::O_TMPFILE;
    }
    let file = std::fs::OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags((h.flags as i32 & !strip) | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::RestoreNotPermitted {
                reason: format!(
                    "fd {} of the process ({path}) cannot be opened by you: {e}",
                    h.fd
                ),
            },
            _ => fail(h, &format!("reopening {path}"), e),
        })?;
    Ok(file.into())
}

/// Seek `fd` to the saved offset of `h`.
pub fn seek(fd: &OwnedFd, h: &Head) -> Result<()> {
    if h.pos > 0 {
        nix::unistd::lseek(fd.as_raw_fd(), h.pos as i64, nix::unistd::Whence::SeekSet)
            .map_err(|e| fail(h, &format!("seeking to {}", h.pos), e))?;
    }
    Ok(())
}

/// Write all of `data` to `fd` (a new file's content, a new pipe's data in flight).
pub fn write_all(fd: OwnedFd, data: &[u8], h: &Head) -> Result<OwnedFd> {
    let mut file = std::fs::File::from(fd);
    file.write_all(data)
        .map_err(|e| fail(h, "writing the saved content", e))?;
    Ok(file.into())
}

/// A new description of the file object `obj` (a rebuilt deleted file, memfd or pipe
/// end), reopened through `/proc/self/fd` with the flags of `h`.
pub fn reopen(h: &Head, obj: &OwnedFd) -> Result<OwnedFd> {
    open_as(h, &format!("/proc/self/fd/{}", obj.as_raw_fd()))
}

/// A new file object's content and permission bits.
pub fn fill_new_file(fd: OwnedFd, data: &[u8], mode: u32, h: &Head) -> Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::from(write_all(fd, data, h)?);
    let _ = file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777));
    Ok(file.into())
}

/// Deleted files and memfds up to this size travel inside the image.
pub const CONTENT_LIMIT: u64 = 64 << 20;

/// The content of a deleted file or memfd for the image, or the refusal naming it.
pub fn saved_content(p: &Probe<'_>, what: &str) -> Result<Vec<u8>> {
    let size = p.md.size();
    let data = if size > CONTENT_LIMIT {
        None
    } else {
        p.content(CONTENT_LIMIT)?
    };
    data.ok_or_else(|| {
        p.refuse(format!(
            "{what} of {size} bytes, more than the {} MiB spirit stores in an image",
            CONTENT_LIMIT >> 20
        ))
    })
}

/// `spirit show` of saved content: its size and hash.
pub fn show_content(data: &[u8], m: &mut Map<String, Value>) {
    m.insert("size".into(), json!(data.len()));
    m.insert(
        "xxh3".into(),
        json!(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(data))),
    );
}
