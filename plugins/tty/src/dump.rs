//! Dump, once for the whole frozen tree: every terminal descriptor of the tree is
//! sorted into terminals (a pty whose master the tree holds, or a terminal outside the
//! tree), each open file description gets a tree-wide id (`kcmp`), session leaders and
//! foreground groups are found, and each pty's state is read (queued bytes taken out,
//! see `pty.rs`). The per-process `dump` then only hands out the section built here.
//! Terminals spirit cannot give back (virtual consoles, serial lines, the console, ptys
//! of another devpts instance, an outside terminal without `--shell-job`) are refused
//! here, naming the process and fd.

use crate::section::{Kind, Side, Terminal, TtyFd, TtySection};
use crate::{ctty, external, pty};
use spirit_core::plugin::{DumpTree, FdEntry, FdKind};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use spirit_kmod::tty as ktty;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// A pty of the tree whose queued bytes were taken out at dump, to put back if the tree
/// runs on.
pub struct Taken {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub terminal: Terminal,
}

/// What one dump of a tree knows.
pub struct DumpState {
    pub sections: HashMap<i32, TtySection>,
    pub taken: Vec<Taken>,
}

/// One terminal of the tree, by (devpts instance, slave device number).
struct Obj {
    id: u32,
    /// (pid, fd) of the master, and a copy of it.
    master: Option<(i32, i32, OwnedFd)>,
    index: u32,
    /// A slave opened through the master's copy (unlocked ptys).
    peer: Option<OwnedFd>,
    /// The link text of a slave descriptor (`/dev/pts/N`).
    path: String,
}

/// A terminal descriptor and what it is.
struct Held {
    pid: i32,
    fd: i32,
    key: (u64, u64),
    side: Side,
    flags: u32,
    target: String,
}

const MASTER: (u32, u32) = (5, 2);
const DEV_TTY: (u32, u32) = (5, 0);

pub fn is_pty_slave(major: u32) -> bool {
    (136..=143).contains(&major)
}

/// The st_dev of the host's devpts instance.
pub fn host_devpts() -> Result<u64> {
    Ok(std::fs::metadata("/dev/pts")
        .map_err(|e| Error::io("/dev/pts", e))?
        .dev())
}

fn refuse(pid: i32, e: &FdEntry, kind: &str) -> Error {
    Error::UnsupportedFd {
        pid,
        fd: e.fd,
        kind: kind.into(),
        target: e.target.clone(),
    }
}

fn copy_of(pid: i32, fd: i32) -> Result<OwnedFd> {
    let err = |e: spirit_kmod::Error| Error::Dump {
        pid,
        msg: format!("taking a copy of terminal fd {fd} (pidfd_getfd): {e}"),
    };
    kfd::pidfd_getfd(&kfd::pidfd_open(pid).map_err(err)?, fd).map_err(err)
}

/// Sort every terminal descriptor of the frozen tree; build each process's section.
pub fn dump_tree(tree: &DumpTree) -> Result<DumpState> {
    let pts = host_devpts()?;
    let mut objs: HashMap<(u64, u64), Obj> = HashMap::new();
    let mut held: Vec<Held> = Vec::new();
    let mut next_id = 0u32;
    let mut new_id = || {
        next_id += 1;
        next_id
    };
    for (pid, e) in tree.all_fds().filter(|(_, e)| e.kind == FdKind::Terminal) {
        let (maj, min) = (e.major(), e.minor());
        let (key, side) = if (maj, min) == MASTER {
            let copy = copy_of(pid, e.fd)?;
            let derr = |what: &str, err: spirit_kmod::Error| Error::Dump {
                pid,
                msg: format!("pty master at fd {}: {what}: {err}", e.fd),
            };
            let index = ktty::pty_index(&copy).map_err(|x| derr("TIOCGPTN", x))?;
            let locked = ktty::pty_locked(&copy).map_err(|x| derr("TIOCGPTLCK", x))?;
            let (key, peer) = if locked {
                ((u64::MAX, u64::from(index)), None)
            } else {
                let peer = ktty::open_peer(&copy, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
                    .map_err(|x| derr("opening its slave (TIOCGPTPEER)", x))?;
                let st = nix::sys::stat::fstat(peer.as_raw_fd()).map_err(|x| Error::Dump {
                    pid,
                    msg: format!("pty master at fd {}: fstat of its slave: {x}", e.fd),
                })?;
                if st.st_dev != pts {
                    return Err(refuse(
                        pid,
                        e,
                        "a pty master of another devpts instance (a container's /dev/pts)",
                    ));
                }
                ((st.st_dev, st.st_rdev), Some(peer))
            };
            let o = objs.entry(key).or_insert_with(|| Obj {
                id: new_id(),
                master: None,
                index,
                peer: None,
                path: format!("/dev/pts/{index}"),
            });
            if o.master.is_some() {
                return Err(Error::Dump {
                    pid,
                    msg: format!("fd {} is a pty master already seen elsewhere in the tree as another description; spirit cannot rebuild that", e.fd),
                });
            }
            o.master = Some((pid, e.fd, copy));
            o.peer = peer;
            (key, Side::Master)
        } else if is_pty_slave(maj) {
            if e.dev != pts {
                return Err(refuse(
                    pid,
                    e,
                    "a pty of another devpts instance (a container's /dev/pts)",
                ));
            }
            let key = (e.dev, e.rdev);
            let index = (maj - 136) * 256 + min;
            let o = objs.entry(key).or_insert_with(|| Obj {
                id: new_id(),
                master: None,
                index,
                peer: None,
                path: e.target.clone(),
            });
            o.path = e.target.clone();
            (key, Side::Slave)
        } else if (maj, min) == DEV_TTY {
            let (ctty, _) = spirit_core::procinfo::terminal(pid)?;
            let (cmaj, cmin) = (
                nix::sys::stat::major(ctty) as u32,
                nix::sys::stat::minor(ctty) as u32,
            );
            if ctty == 0 || !is_pty_slave(cmaj) {
                return Err(refuse(
                    pid,
                    e,
                    "/dev/tty on a controlling terminal that is not a pty (or is gone)",
                ));
            }
            let key = (pts, ctty);
            let index = (cmaj - 136) * 256 + cmin;
            objs.entry(key).or_insert_with(|| Obj {
                id: new_id(),
                master: None,
                index,
                peer: None,
                path: format!("/dev/pts/{index}"),
            });
            (key, Side::Controlling)
        } else {
            let kind = match (maj, min) {
                (5, 1) => "the system console (/dev/console)",
                (4, 0..=63) => "a virtual console",
                (4, _) | (204 | 188 | 166, _) => "a serial line",
                _ => "a terminal device spirit cannot restore",
            };
            return Err(refuse(pid, e, &format!("{kind}; spirit restores ptys and, with --shell-job, the terminal it was started from, never consoles or serial lines")));
        };
        held.push(Held {
            pid,
            fd: e.fd,
            key,
            side,
            flags: e.flags,
            target: e.target.clone(),
        });
    }
    let mut state = DumpState {
        sections: HashMap::new(),
        taken: Vec::new(),
    };
    // Outside terminals: only with --shell-job.
    for h in &held {
        if objs[&h.key].master.is_none() && !tree.opts.shell_job {
            return Err(Error::Dump {
                pid: h.pid,
                msg: format!(
                    "fd {} is a terminal outside the checkpointed tree ({}: its master is held by a process outside the tree, e.g. the terminal the program was started from); checkpoint it with --shell-job and restore it with `spirit restore --shell-job` from a terminal, or leave it out with --skip-fd {}",
                    h.fd, h.target, h.fd
                ),
            });
        }
    }
    let descs = desc_ids(&held)?;
    for (h, desc) in held.iter().zip(&descs) {
        let o = &objs[&h.key];
        state.sections.entry(h.pid).or_default().fds.push(TtyFd {
            fd: h.fd,
            terminal: o.id,
            side: h.side,
            desc: *desc,
            flags: h.flags,
            key: h.target.clone(),
        });
    }
    // Sessions and foreground groups.
    let by_rdev: HashMap<u64, u32> = objs
        .iter()
        .filter(|(_, o)| o.master.is_some())
        .map(|((_, rdev), o)| (*rdev, o.id))
        .collect();
    ctty::find(tree, &by_rdev, &mut state.sections)?;
    if let Some((pid, fd, path)) = outside_holder(tree, pts, &by_rdev) {
        let (holder, hfd) = objs
            .values()
            .find(|o| o.path == path)
            .and_then(|o| o.master.as_ref())
            .map_or((tree.procs[0].pid, -1), |(p, f, _)| (*p, *f));
        return Err(Error::Dump {
            pid: holder,
            msg: format!(
                "fd {hfd} is the master of {path}, whose slave is also held outside the tree (fd {fd} of process {pid}); after a restore that process would keep a dead terminal: checkpoint a tree that holds both ends"
            ),
        });
    }
    // Each terminal's record: an outside one in each of its holders' sections (with
    // what that process saw of it), a pty in its master holder's.
    let mut described = std::collections::HashSet::new();
    for h in &held {
        let o = &objs[&h.key];
        if o.master.is_some() || !described.insert((h.pid, o.id)) {
            continue;
        }
        let t = Terminal {
            id: o.id,
            kind: Kind::External,
            key: o.path.clone(),
            index: o.index,
            ..Default::default()
        };
        let rec = external::describe(h.pid, h.fd, h.key.1, t)?;
        state.sections.entry(h.pid).or_default().terminals.push(rec);
    }
    let mut failed = None;
    for o in objs.into_values() {
        let Some((pid, fd, master)) = o.master else {
            continue;
        };
        let mut t = Terminal {
            id: o.id,
            kind: Kind::Pty,
            key: o.path.clone(),
            index: o.index,
            ..Default::default()
        };
        if let Err(e) = pty::capture(&master, o.peer.as_ref(), &mut t) {
            let why = match e {
                Error::Restore(m) => m,
                other => other.to_string(),
            };
            failed.get_or_insert(Error::Dump {
                pid,
                msg: format!("fd {fd} is the master of pty {}: {why}", o.index),
            });
        }
        state
            .sections
            .entry(pid)
            .or_default()
            .terminals
            .push(t.clone());
        if let Some(slave) = o.peer {
            state.taken.push(Taken {
                master,
                slave,
                terminal: t,
            });
        }
    }
    match failed {
        Some(e) => {
            put_back(&mut state.taken);
            Err(e)
        }
        None => Ok(state),
    }
}

/// A process outside the tree (not this one either: the dump holds slaves of its
/// own) holding the slave of one of the tree's ptys (`ptys`: slave device → id):
/// (pid, fd, path).
fn outside_holder(
    tree: &DumpTree,
    pts: u64,
    ptys: &HashMap<u64, u32>,
) -> Option<(i32, i32, String)> {
    if ptys.is_empty() {
        return None;
    }
    let me = std::process::id() as i32;
    let procs = std::fs::read_dir("/proc").ok()?;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || tree.contains(pid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for f in fds.flatten() {
            let Ok(target) = std::fs::read_link(f.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if !target.starts_with("/dev/pts/") {
                continue;
            }
            let Ok(md) = std::fs::metadata(f.path()) else {
                continue;
            };
            if md.dev() == pts && ptys.contains_key(&md.rdev()) {
                let fd = f
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(-1);
                return Some((pid, fd, target.into_owned()));
            }
        }
    }
    None
}

/// Tree-wide open-file-description ids: two descriptors of one terminal and side get
/// the same id when `kcmp` says they are one description.
fn desc_ids(held: &[Held]) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = Vec::with_capacity(held.len());
    let mut next = 0u32;
    for (i, h) in held.iter().enumerate() {
        let mut id = None;
        for (j, o) in held[..i].iter().enumerate() {
            if o.key != h.key || o.side != h.side {
                continue;
            }
            let same = kfd::kcmp_same_file(o.pid, o.fd, h.pid, h.fd).map_err(|e| Error::Dump {
                pid: h.pid,
                msg: format!(
                    "comparing terminal fd {} with fd {} of process {} (kcmp) failed ({e}); spirit needs kcmp (CONFIG_CHECKPOINT_RESTORE)",
                    h.fd, o.fd, o.pid
                ),
            })?;
            if same {
                id = Some(ids[j]);
                break;
            }
        }
        ids.push(id.unwrap_or_else(|| {
            next += 1;
            next
        }));
    }
    Ok(ids)
}

/// Put the queued bytes taken out at dump back into the running tree's ptys.
pub fn put_back(taken: &mut Vec<Taken>) {
    for t in taken.drain(..) {
        let _ = pty::fill(&t.master, &t.slave, &t.terminal);
    }
}
