//! Reading a process's state from /proc.

use crate::error::{Error, Result};
use crate::fileid::{cache::HashCache, Wanted};
use crate::model::{Creds, FileId, MmState, Rlimit, Vma, VmaKind};
use procfs::process::{LimitValue, Process};

pub(crate) fn proc_err(pid: i32, e: procfs::ProcError) -> Error {
    match e {
        procfs::ProcError::NotFound(_) => Error::NoSuchProcess { pid },
        procfs::ProcError::PermissionDenied(p) => Error::PermissionDenied {
            pid,
            reason: format!(
                "cannot read {}",
                p.map(|p| p.display().to_string()).unwrap_or_default()
            ),
        },
        other => Error::Dump {
            pid,
            msg: format!("reading /proc: {other}"),
        },
    }
}

pub(crate) fn open(pid: i32) -> Result<Process> {
    Process::new(pid).map_err(|e| proc_err(pid, e))
}

/// Thread ids of `pid`, main thread first.
pub fn threads(pid: i32) -> Result<Vec<i32>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        _ => Error::io(format!("/proc/{pid}/task"), e),
    })?;
    let mut tids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_by_key(|&t| (t != pid, t));
    Ok(tids)
}

pub(crate) struct Ids {
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub comm: String,
    pub mm: MmState,
}

/// What the tree walk needs of a process.
pub(crate) struct TreeStat {
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub zombie: bool,
    /// Stopped by a signal (job control), state T.
    pub stopped: bool,
    pub exit_status: i32,
}

pub(crate) fn tree_stat(pid: i32) -> Result<TreeStat> {
    let st = open(pid)?.stat().map_err(|e| proc_err(pid, e))?;
    Ok(TreeStat {
        ppid: st.ppid,
        pgid: st.pgrp,
        sid: st.session,
        zombie: st.state == 'Z',
        stopped: st.state == 'T',
        exit_status: st.exit_code.unwrap_or(0),
    })
}

/// Children of every thread of `pid`.
pub fn children(pid: i32) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for tid in threads(pid)? {
        let path = format!("/proc/{pid}/task/{tid}/children");
        match std::fs::read_to_string(&path) {
            Ok(s) => out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub(crate) fn stat(pid: i32) -> Result<Ids> {
    let st = open(pid)?.stat().map_err(|e| proc_err(pid, e))?;
    Ok(Ids {
        ppid: st.ppid,
        pgid: st.pgrp,
        sid: st.session,
        comm: st.comm.clone(),
        mm: MmState {
            start_code: st.startcode,
            end_code: st.endcode,
            start_data: st.start_data.unwrap_or(0),
            end_data: st.end_data.unwrap_or(0),
            start_brk: st.start_brk.unwrap_or(0),
            brk: 0,
            start_stack: st.startstack,
            arg_start: st.arg_start.unwrap_or(0),
            arg_end: st.arg_end.unwrap_or(0),
            env_start: st.env_start.unwrap_or(0),
            env_end: st.env_end.unwrap_or(0),
        },
    })
}

/// The controlling terminal of `pid` as a device number (`tty_nr`, 0 for none) and
/// the foreground process group of that terminal (`tpgid`, -1 for none).
pub fn terminal(pid: i32) -> Result<(u64, i32)> {
    let st = open(pid)?.stat().map_err(|e| proc_err(pid, e))?;
    let nr = st.tty_nr as u32 as u64;
    // tty_nr packs major in bits 8–19 and minor in bits 0–7 and 20–31.
    let (major, minor) = ((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xf_ff00));
    Ok((nix::sys::stat::makedev(major, minor), st.tpgid))
}

/// A thread's name (`/proc/PID/task/TID/comm`, without the newline).
pub(crate) fn thread_name(pid: i32, tid: i32) -> Result<String> {
    let path = format!("/proc/{pid}/task/{tid}/comm");
    let s = std::fs::read_to_string(&path).map_err(|e| Error::io(path, e))?;
    Ok(s.strip_suffix('\n').unwrap_or(&s).to_string())
}

/// Real uid and gid of the process.
pub fn owner(pid: i32) -> Result<(u32, u32)> {
    let st = open(pid)?.status().map_err(|e| proc_err(pid, e))?;
    Ok((st.ruid, st.rgid))
}

/// `/proc/PID/status`, parsed once by procfs (ids, capabilities, umask, NSpid,
/// NoNewPrivs, Seccomp...).
pub fn status(pid: i32) -> Result<procfs::process::Status> {
    open(pid)?.status().map_err(|e| proc_err(pid, e))
}

/// Credentials from `/proc/PID/status` (dumpable is filled in by the caller).
pub(crate) fn creds(pid: i32) -> Result<Creds> {
    let st = status(pid)?;
    Ok(Creds {
        uids: [st.ruid, st.euid, st.suid, st.fuid],
        gids: [st.rgid, st.egid, st.sgid, st.fgid],
        groups: st
            .groups
            .iter()
            .filter_map(|&g| u32::try_from(g).ok())
            .collect(),
        dumpable: 0,
    })
}

/// The process's umask (022 where the kernel does not show it).
pub fn umask(pid: i32) -> Result<u32> {
    Ok(status(pid)?.umask.unwrap_or(0o022))
}

/// The pid of `pid` in the innermost pid namespace it belongs to (`NSpid`).
pub fn innermost_pid(pid: i32) -> Result<i32> {
    Ok(status(pid)?
        .nspid
        .and_then(|v| v.last().copied())
        .unwrap_or(pid))
}

/// Identity of the executable and of every mapped file, taken from the files the
/// process really has (through /proc links), named by their paths, content hashes
/// included (through the user's hash cache, see [`crate::fileid::cache`]).
pub fn file_ids(pid: i32, exe: &str, vmas: &[Vma]) -> Vec<FileId> {
    let mut cache = HashCache::load(crate::fileid::cache::default_path());
    let ids = file_ids_with(pid, exe, vmas, &mut cache);
    cache.save();
    ids
}

/// [`file_ids`] with a cache the caller loads and saves (once for a whole tree).
pub fn file_ids_with(pid: i32, exe: &str, vmas: &[Vma], cache: &mut HashCache) -> Vec<FileId> {
    let mut wanted = vec![Wanted {
        path: exe.to_string(),
        via: format!("/proc/{pid}/exe"),
    }];
    // Deleted files travel in the image (mapped.rs): no identity to check.
    wanted.extend(
        vmas.iter()
            .filter(|v| v.kind == VmaKind::File && !crate::mapped::is_deleted_file(v))
            .map(|v| Wanted {
                path: v.path.clone(),
                via: format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end),
            }),
    );
    crate::fileid::identify(&wanted, cache)
}

pub(crate) fn rlimits(pid: i32) -> Result<Vec<Rlimit>> {
    let l = open(pid)?.limits().map_err(|e| proc_err(pid, e))?;
    let v = |x: &LimitValue| match x {
        LimitValue::Unlimited => u64::MAX,
        LimitValue::Value(v) => *v,
    };
    let all = [
        (libc::RLIMIT_CPU, &l.max_cpu_time),
        (libc::RLIMIT_FSIZE, &l.max_file_size),
        (libc::RLIMIT_DATA, &l.max_data_size),
        (libc::RLIMIT_STACK, &l.max_stack_size),
        (libc::RLIMIT_CORE, &l.max_core_file_size),
        (libc::RLIMIT_RSS, &l.max_resident_set),
        (libc::RLIMIT_NPROC, &l.max_processes),
        (libc::RLIMIT_NOFILE, &l.max_open_files),
        (libc::RLIMIT_MEMLOCK, &l.max_locked_memory),
        (libc::RLIMIT_AS, &l.max_address_space),
        (libc::RLIMIT_LOCKS, &l.max_file_locks),
        (libc::RLIMIT_SIGPENDING, &l.max_pending_signals),
        (libc::RLIMIT_MSGQUEUE, &l.max_msgqueue_size),
        (libc::RLIMIT_NICE, &l.max_nice_priority),
        (libc::RLIMIT_RTPRIO, &l.max_realtime_priority),
        (libc::RLIMIT_RTTIME, &l.max_realtime_timeout),
    ];
    Ok(all
        .iter()
        .map(|(r, lim)| Rlimit {
            resource: *r,
            cur: v(&lim.soft_limit),
            max: v(&lim.hard_limit),
        })
        .collect())
}

pub(crate) fn read_file(pid: i32, name: &str) -> Result<Vec<u8>> {
    let path = format!("/proc/{pid}/{name}");
    std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        _ => Error::io(path, e),
    })
}

pub(crate) fn readlink(pid: i32, name: &str) -> Result<String> {
    let path = format!("/proc/{pid}/{name}");
    std::fs::read_link(&path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| Error::io(path, e))
}

pub(crate) fn personality(pid: i32) -> Result<u32> {
    let s = String::from_utf8_lossy(&read_file(pid, "personality")?)
        .trim()
        .to_string();
    u32::from_str_radix(&s, 16).map_err(|_| Error::Dump {
        pid,
        msg: format!("unreadable /proc/{pid}/personality: {s:?}"),
    })
}

/// The process's VMAs from `/proc/PID/smaps` (for VmFlags), in address order.
pub fn vmas(pid: i32) -> Result<Vec<Vma>> {
    let text = String::from_utf8_lossy(&read_file(pid, "smaps")?).into_owned();
    parse_smaps(&text).ok_or_else(|| Error::Dump {
        pid,
        msg: format!("unparsable /proc/{pid}/smaps"),
    })
}

pub(crate) fn parse_smaps(text: &str) -> Option<Vec<Vma>> {
    let mut out: Vec<Vma> = Vec::new();
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            out.last_mut()?.vm_flags = flags.split_whitespace().map(str::to_string).collect();
            continue;
        }
        let first = line.split_whitespace().next()?;
        let Some((s, e)) = first.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        // "start-end perms offset dev inode   path" — path may contain spaces.
        let mut rest = line[first.len()..].trim_start();
        let mut field = || {
            let (f, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            rest = r.trim_start();
            f
        };
        let perms = field().as_bytes().to_vec();
        let offset = u64::from_str_radix(field(), 16).ok()?;
        let dev = field().to_string();
        let inode: u64 = field().parse().ok()?;
        let path = rest.to_string();
        if perms.len() < 4 {
            return None;
        }
        let prot = (u8::from(perms[0] == b'r'))
            | (u8::from(perms[1] == b'w') << 1)
            | (u8::from(perms[2] == b'x') << 2);
        let shared = perms[3] == b's';
        let kind = match path.as_str() {
            "[heap]" => VmaKind::Heap,
            "[stack]" => VmaKind::Stack,
            "[vdso]" => VmaKind::Vdso,
            "[vvar]" => VmaKind::Vvar,
            "[vvar_vclock]" => VmaKind::VvarVclock,
            "[vsyscall]" => VmaKind::Vsyscall,
            _ if inode == 0 && shared => VmaKind::SharedAnon,
            p if inode != 0 && shared && (p.starts_with("/dev/zero") || p.starts_with("/SYSV")) => {
                VmaKind::SharedAnon
            }
            _ if inode == 0 => VmaKind::Anon,
            _ => VmaKind::File,
        };
        out.push(Vma {
            start,
            end,
            prot,
            shared,
            kind,
            path,
            offset,
            dev,
            inode,
            vm_flags: Vec::new(),
            pages: 0,
        });
    }
    Some(out)
}

/// `/proc/PID/fdinfo/N`, parsed on demand (`key:\tvalue` lines; what follows the
/// common `pos`, `flags`, `mnt_id`, `ino` lines depends on the descriptor's kind).
pub struct FdInfo {
    text: String,
}

impl FdInfo {
    pub fn read(pid: i32, fd: i32) -> Result<FdInfo> {
        let p = format!("/proc/{pid}/fdinfo/{fd}");
        Ok(FdInfo {
            text: std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?,
        })
    }

    /// The value of `name:` (first match), trimmed.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }

    pub fn num(&self, name: &str, radix: u32) -> Option<u64> {
        u64::from_str_radix(self.field(name)?, radix).ok()
    }

    /// Lines starting with `prefix`.
    pub fn lines<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.text
            .lines()
            .filter_map(move |l| l.strip_prefix(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_kinds_paths_and_flags() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:00 123   /usr/bin/my prog
Size:                  4 kB
VmFlags: rd mr mw me sd
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
VmFlags: rd wr mr mw me ac sd
7f0000100000-7f0000200000 rw-s 00000000 00:01 77   /dev/zero (deleted)
VmFlags: rd wr sh mr mw me ms sd
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
VmFlags: rd wr mr mw me gd ac
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
VmFlags: ex
";
        let v = parse_smaps(text).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(
            (v[0].kind, v[0].path.as_str(), v[0].prot, v[0].inode),
            (VmaKind::File, "/usr/bin/my prog", 1, 123)
        );
        assert_eq!((v[1].kind, v[1].prot), (VmaKind::Anon, 3));
        assert_eq!((v[2].kind, v[2].shared), (VmaKind::SharedAnon, true));
        assert!(v[3].has_flag("gd") && v[3].kind == VmaKind::Stack);
        assert_eq!((v[4].kind, v[4].prot), (VmaKind::Vsyscall, 4));
    }
}
