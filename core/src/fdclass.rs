//! What a descriptor is, decided once, by what the kernel says of it.
//!
//! Every descriptor of every process of a frozen tree is classified here and nowhere
//! else: `stat` of `/proc/PID/fd/N` (the file type, device and inode of what it points
//! to), `statfs` of the same (the filesystem's magic: a POSIX message queue lives on
//! the mqueue filesystem, a pty slave on devpts, an anonymous inode on anon_inodefs),
//! the link text only for the `anon_inode:[name]` a kernel object gives, and fdinfo for
//! the open flags. Plugins claim descriptors by [`FdKind`]; an unclaimed one fails the
//! checkpoint naming the process, the fd and [`FdKind::describe`] — a descriptor is
//! never taken for a look-alike (a message queue is not a deleted file).

use crate::error::{Error, Result};

/// Filesystem magic numbers (`statfs.f_type`), from `linux/magic.h`.
pub mod magic {
    pub const PROC: i64 = 0x9fa0;
    pub const SYSFS: i64 = 0x6265_6572;
    pub const MQUEUE: i64 = 0x1980_0202;
    pub const DEVPTS: i64 = 0x1cd1;
    pub const ANON_INODE: i64 = 0x0904_1934;
    pub const PIPEFS: i64 = 0x5049_5045;
    pub const SOCKFS: i64 = 0x534f_434b;
    pub const TMPFS: i64 = 0x0102_1994;
    pub const CGROUP2: i64 = 0x6367_7270;
    pub const BPF: i64 = 0xcafe_4a11;
    pub const HUGETLBFS: i64 = 0x9584_58f6;
}

/// The kinds of descriptor spirit tells apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum FdKind {
    Regular,
    /// A regular file on /proc or /sys: reopened by path, never content-checked.
    Pseudo,
    /// A regular file whose last link is gone (`(deleted)`), not a memfd.
    Deleted,
    Memfd,
    Directory,
    /// A named FIFO (it has a path).
    Fifo,
    /// An anonymous pipe (`pipe:[ino]`).
    Pipe,
    CharDevice,
    BlockDevice,
    /// A terminal: a pty master or slave, `/dev/tty`, a console, a virtual console, a
    /// serial line.
    Terminal,
    Socket,
    /// A POSIX message queue (mqueue filesystem).
    Mqueue,
    Eventfd,
    Epoll,
    Timerfd,
    Signalfd,
    Inotify,
    Fanotify,
    Pidfd,
    Userfaultfd,
    IoUring,
    Bpf,
    PerfEvent,
    /// Another anonymous inode, by the name the kernel gives it.
    OtherAnon(String),
    /// Anything else (a symlink opened with O_PATH, an unknown file type).
    Other,
}

impl FdKind {
    /// A readable name with its article, for messages.
    pub fn describe(&self) -> String {
        match self {
            FdKind::Regular => "a regular file".into(),
            FdKind::Pseudo => "a /proc or /sys file".into(),
            FdKind::Deleted => "a deleted file".into(),
            FdKind::Memfd => "a memfd".into(),
            FdKind::Directory => "a directory".into(),
            FdKind::Fifo => "a FIFO".into(),
            FdKind::Pipe => "a pipe".into(),
            FdKind::CharDevice => "a character device".into(),
            FdKind::BlockDevice => "a block device".into(),
            FdKind::Terminal => "a terminal".into(),
            FdKind::Socket => "a socket".into(),
            FdKind::Mqueue => "a POSIX message queue".into(),
            FdKind::Eventfd => "an eventfd".into(),
            FdKind::Epoll => "an epoll instance".into(),
            FdKind::Timerfd => "a timerfd".into(),
            FdKind::Signalfd => "a signalfd".into(),
            FdKind::Inotify => "an inotify instance".into(),
            FdKind::Fanotify => "a fanotify instance".into(),
            FdKind::Pidfd => "a pidfd".into(),
            FdKind::Userfaultfd => "a userfaultfd".into(),
            FdKind::IoUring => "an io_uring instance".into(),
            FdKind::Bpf => "a BPF map or program".into(),
            FdKind::PerfEvent => "a perf event".into(),
            FdKind::OtherAnon(n) => format!("an anonymous-inode descriptor ({n})"),
            FdKind::Other => "an unsupported file".into(),
        }
    }
}

/// One descriptor of a frozen process, classified.
#[derive(Clone, Debug)]
pub struct FdEntry {
    pub fd: i32,
    /// `readlink /proc/PID/fd/N`.
    pub target: String,
    pub kind: FdKind,
    /// `st_mode`, `st_dev`, `st_ino`, `st_rdev` of what it points to.
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
    /// `statfs.f_type` of its filesystem.
    pub fs_magic: i64,
    /// Open flags (fdinfo `flags`, O_CLOEXEC included) and position.
    pub flags: u32,
    pub pos: u64,
    /// fdinfo `mnt_id`.
    pub mnt_id: u64,
    /// Set by the plugin that takes it; unclaimed descriptors fail the checkpoint.
    pub claimed: bool,
}

impl FdEntry {
    pub fn major(&self) -> u32 {
        nix::sys::stat::major(self.rdev) as u32
    }

    pub fn minor(&self) -> u32 {
        nix::sys::stat::minor(self.rdev) as u32
    }

    /// The error for this descriptor when nothing takes it.
    pub fn unsupported(&self, pid: i32) -> Error {
        Error::UnsupportedFd {
            pid,
            fd: self.fd,
            kind: self.kind.describe(),
            target: self.target.clone(),
        }
    }
}

/// Whether a character device number is a terminal: pty slaves (136–143), `/dev/tty`
/// and `/dev/console` and `/dev/ptmx` (5:0–2), virtual consoles and serial lines (4),
/// and the other serial drivers' majors a host commonly has.
pub fn is_tty_device(major: u32, minor: u32) -> bool {
    matches!(major, 136..=143 | 4 | 204 | 188 | 166) || (major == 5 && minor <= 2)
}

/// Classify `fd` of `pid`. `None` when it was closed meanwhile (cannot happen while the
/// process is frozen, but a tree being surveyed still runs).
pub fn classify(pid: i32, fd: i32) -> Result<Option<FdEntry>> {
    let link = format!("/proc/{pid}/fd/{fd}");
    let target = match std::fs::read_link(&link) {
        Ok(t) => t.to_string_lossy().into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&link, e)),
    };
    let st = match nix::sys::stat::stat(link.as_str()) {
        Ok(st) => st,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(&link, std::io::Error::from(e))),
    };
    let fs_magic = match nix::sys::statfs::statfs(link.as_str()) {
        Ok(s) => s.filesystem_type().0,
        Err(_) => 0,
    };
    let info = crate::procinfo::FdInfo::read(pid, fd).ok();
    let num = |k: &str, radix| info.as_ref().and_then(|i| i.num(k, radix)).unwrap_or(0);
    let flags = num("flags", 8) as u32;
    let pos = num("pos", 10);
    let mnt_id = num("mnt_id", 10);
    let mut e = FdEntry {
        fd,
        target,
        kind: FdKind::Other,
        mode: st.st_mode,
        dev: st.st_dev,
        ino: st.st_ino,
        rdev: st.st_rdev,
        fs_magic,
        flags,
        pos,
        mnt_id,
        claimed: false,
    };
    e.kind = kind_of(&e, st.st_nlink as u64);
    Ok(Some(e))
}

fn kind_of(e: &FdEntry, nlink: u64) -> FdKind {
    let fmt = e.mode & libc::S_IFMT;
    if e.fs_magic == magic::MQUEUE {
        return FdKind::Mqueue;
    }
    match fmt {
        libc::S_IFSOCK => return FdKind::Socket,
        libc::S_IFDIR => return FdKind::Directory,
        libc::S_IFBLK => return FdKind::BlockDevice,
        libc::S_IFCHR => {
            return if is_tty_device(e.major(), e.minor()) || e.fs_magic == magic::DEVPTS {
                FdKind::Terminal
            } else {
                FdKind::CharDevice
            }
        }
        libc::S_IFIFO => {
            return if e.fs_magic == magic::PIPEFS || e.target.starts_with("pipe:[") {
                FdKind::Pipe
            } else {
                FdKind::Fifo
            }
        }
        _ => {}
    }
    if let Some(name) = e.target.strip_prefix("anon_inode:") {
        let name = name.trim_start_matches('[').trim_end_matches(']');
        return match name {
            "eventfd" => FdKind::Eventfd,
            "eventpoll" => FdKind::Epoll,
            "timerfd" => FdKind::Timerfd,
            "signalfd" => FdKind::Signalfd,
            "inotify" => FdKind::Inotify,
            "fanotify" => FdKind::Fanotify,
            "pidfd" => FdKind::Pidfd,
            "userfaultfd" => FdKind::Userfaultfd,
            "io_uring" => FdKind::IoUring,
            "perf_event" => FdKind::PerfEvent,
            n if n.starts_with("bpf") => FdKind::Bpf,
            n => FdKind::OtherAnon(n.to_string()),
        };
    }
    if e.fs_magic == magic::ANON_INODE {
        return FdKind::OtherAnon(e.target.clone());
    }
    if fmt == libc::S_IFREG {
        if e.fs_magic == magic::PROC || e.fs_magic == magic::SYSFS {
            return FdKind::Pseudo;
        }
        // A memfd lives on the internal tmpfs and reads `/memfd:NAME (deleted)`.
        if e.target.starts_with("/memfd:") && e.fs_magic == magic::TMPFS && nlink == 0 {
            return FdKind::Memfd;
        }
        if nlink == 0 || e.target.ends_with(" (deleted)") {
            return FdKind::Deleted;
        }
        return FdKind::Regular;
    }
    FdKind::Other
}

/// Every descriptor of `pid`, classified, by number; those in `skip` left out.
pub fn list(pid: i32, skip: &[i32]) -> Result<Vec<FdEntry>> {
    let dir = format!("/proc/{pid}/fd");
    let mut nums: Vec<i32> = std::fs::read_dir(&dir)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
            _ => Error::io(&dir, e),
        })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| !skip.contains(fd))
        .collect();
    nums.sort_unstable();
    let mut out = Vec::with_capacity(nums.len());
    for fd in nums {
        if let Some(e) = classify(pid, fd)? {
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn me(fd: i32) -> FdEntry {
        classify(std::process::id() as i32, fd).unwrap().unwrap()
    }

    #[test]
    fn kinds_of_our_own_descriptors() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(me(r.as_raw_fd()).kind, FdKind::Pipe);
        let f = tempfile::tempfile().unwrap();
        assert_eq!(me(f.as_raw_fd()).kind, FdKind::Deleted);
        let named = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(me(named.as_file().as_raw_fd()).kind, FdKind::Regular);
        let d = std::fs::File::open("/").unwrap();
        assert_eq!(me(d.as_raw_fd()).kind, FdKind::Directory);
        let p = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(me(p.as_raw_fd()).kind, FdKind::Pseudo);
        let n = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(me(n.as_raw_fd()).kind, FdKind::CharDevice);
        let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert_eq!(me(s.as_raw_fd()).kind, FdKind::Socket);
        let ev = spirit_kmod::fd::eventfd(0, 0).unwrap();
        assert_eq!(me(ev.as_raw_fd()).kind, FdKind::Eventfd);
    }

    #[test]
    fn terminal_numbers() {
        assert!(is_tty_device(136, 3));
        assert!(is_tty_device(5, 0));
        assert!(is_tty_device(5, 2));
        assert!(!is_tty_device(1, 3)); // /dev/null
        assert!(!is_tty_device(5, 3));
    }
}
