//! Descriptors shared between the processes of a tree: pipes between processes, open
//! file descriptions inherited across fork (one offset, one set of status flags).
//! Depends on the kinds, never the other way round.
//!
//! Dump: the processes are dumped one after another, root first, the whole tree frozen.
//! A [`DumpTree`] (the plugin's tree state) knows every pipe end held in the tree
//! ([`TreePipes`], from core's classified descriptors), which pipes' and FIFOs' data
//! in flight was already captured, and every open file description seen so far: each owner record
//! gets a tree-wide `desc_id`, the same as an earlier process's description when
//! `kcmp(KCMP_FILE)` says they are one.
//!
//! Restore: a [`Plan`] computed from the whole tree (every process's section) groups the
//! descriptions held by more than one process: a pipe (all descriptions of its two ends),
//! a deleted file or memfd (all descriptions of its inode), or any other description. The
//! group is created once in the lowest common ancestor of its holders (which may hold none
//! of it: a shell that made the pipe for `a | b`), in `restore_before_fork`, each of its
//! descriptions parked at a number taken from core's [`Parking`]; descendants inherit
//! them, and each holder `dup3`s them into place in `restore_in_child`.

use crate::kinds::pipe::TreePipes;
use crate::kinds::pseudo::Pids;
use crate::kinds::{Built, Object};
use crate::record::{fail, Head};
use crate::section::{FdRecord, FilesSection};
use spirit_core::plugin::{FdEntry, Parking, TreeView};
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};

/// An open file description already given an id, with the first process holding it.
struct Seen {
    pid: i32,
    fd: i32,
    kind: &'static str,
    dev: u64,
    ino: u64,
    id: u64,
}

/// What the dump of one tree knows across its processes.
pub struct DumpTree {
    pub pipes: TreePipes,
    /// FIFOs (device, inode) whose data in flight an earlier record already carries.
    pub fifos: HashSet<(u64, u64)>,
    seen: Vec<Seen>,
    next_id: u64,
}

impl DumpTree {
    pub fn new(tree: &spirit_core::plugin::DumpTree) -> DumpTree {
        DumpTree {
            pipes: TreePipes::new(tree),
            fifos: HashSet::new(),
            seen: Vec::new(),
            next_id: 0,
        }
    }

    /// Give each owner record of `pid` its tree-wide description id: the id of an
    /// earlier process's description if it is the same one, else a new id.
    pub fn assign_ids(
        &mut self,
        pid: i32,
        recs: &mut [FdRecord],
        entries: &HashMap<i32, &FdEntry>,
    ) -> Result<()> {
        for r in recs.iter_mut().filter(|r| r.is_owner()) {
            let Some(e) = entries.get(&r.fd()) else {
                continue;
            };
            let kind = r.payload.name();
            let mut id = None;
            for s in self
                .seen
                .iter()
                .filter(|s| s.pid != pid && s.kind == kind && s.dev == e.dev && s.ino == e.ino)
            {
                let same = kfd::kcmp_same_file(s.pid, s.fd, pid, r.fd()).map_err(|err| Error::Dump {
                    pid,
                    msg: format!(
                        "comparing fd {} with fd {} of process {} (kcmp) failed ({err}); spirit needs kcmp (CONFIG_CHECKPOINT_RESTORE) to find descriptors shared in a tree",
                        r.fd(), s.fd, s.pid
                    ),
                })?;
                if same {
                    id = Some(s.id);
                    break;
                }
            }
            r.desc_id = match id {
                Some(id) => id,
                None => {
                    self.next_id += 1;
                    self.seen.push(Seen {
                        pid,
                        fd: r.fd(),
                        kind,
                        dev: e.dev,
                        ino: e.ino,
                        id: self.next_id,
                    });
                    self.next_id
                }
            };
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Restore

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Object(Object),
    Desc(u64),
}

/// One object shared between processes, with its descriptions.
pub struct Group {
    key: Key,
    holders: Vec<i32>,
    /// The process that creates it before forking its children.
    pub creator: i32,
    /// Each description: its parked number and a record of it (from its first holder).
    descs: Vec<(i32, FdRecord)>,
    /// Pipe data in flight, or a deleted file's or memfd's content.
    data: Vec<u8>,
    capacity: u32,
    seals: u32,
}

/// How the tree's shared descriptions are rebuilt.
pub struct Plan {
    pub groups: Vec<Group>,
    /// Description id → parked number.
    pub slots: HashMap<u64, i32>,
    /// One past the highest parked number.
    pub end: i32,
}

fn bad(msg: String) -> Error {
    Error::Restore(format!(
        "malformed files sections: {msg}; the image is damaged or was not written by spirit"
    ))
}

/// The pids process `pid`'s /proc paths may name, for reopening them in its restore
/// child (run there: `getpid` tells whether it got another pid).
pub fn pids_of(tree: &TreeView<'_>, pid: i32) -> Pids {
    Pids {
        image_pid: pid,
        renumbered: nix::unistd::getpid().as_raw() != pid,
        tree: tree
            .nodes
            .iter()
            .flat_map(|n| n.threads.iter().copied().chain([n.pid]))
            .collect::<HashSet<i32>>(),
    }
}

/// The plan for `tree`, computed once per restore in the restorer (forked restore
/// children inherit it with the pipeline's state).
pub fn plan(tree: &TreeView<'_>, park: &mut Parking) -> Result<Plan> {
    compute(tree, &tree.sections(crate::NAME), park)
}

fn compute(tree: &TreeView<'_>, secs: &[(i32, &[u8])], park: &mut Parking) -> Result<Plan> {
    let mut decoded: Vec<(i32, FilesSection)> = Vec::new();
    for n in tree.nodes {
        if let Some((pid, data)) = secs.iter().find(|(p, _)| *p == n.pid) {
            decoded.push((*pid, FilesSection::decode(data)?));
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut desc_of: HashMap<u64, (Key, &'static str)> = HashMap::new();
    for (pid, sec) in &decoded {
        for f in sec
            .fds
            .iter()
            .filter(|f| f.is_owner() && f.desc_id != 0 && !f.is_epoll())
        {
            let key = f.payload.object().map_or(Key::Desc(f.desc_id), Key::Object);
            let kind = f.payload.name();
            match desc_of.get(&f.desc_id) {
                Some(&(k, kd)) if k != key || kd != kind => {
                    return Err(bad(format!(
                        "description {} of fd {} of process {pid} is listed as two different files",
                        f.desc_id,
                        f.fd()
                    )))
                }
                Some(_) => {}
                None => {
                    desc_of.insert(f.desc_id, (key, kind));
                }
            }
            let gi = *index.entry(key).or_insert_with(|| {
                groups.push(Group {
                    key,
                    holders: Vec::new(),
                    creator: 0,
                    descs: Vec::new(),
                    data: Vec::new(),
                    capacity: 0,
                    seals: 0,
                });
                groups.len() - 1
            });
            let g = &mut groups[gi];
            if let Some((_, first)) = g.descs.first() {
                if !first.payload.same_kind(&f.payload) {
                    return Err(bad(format!(
                        "fd {} of process {pid} is listed as another kind of file than the other descriptions of its object",
                        f.fd()
                    )));
                }
            }
            if !g.holders.contains(pid) {
                g.holders.push(*pid);
            }
            if !g.descs.iter().any(|(_, d)| d.desc_id == f.desc_id) {
                let mut rec = f.clone();
                rec.payload = f.payload.without_content();
                g.descs.push((0, rec));
            }
            if g.data.is_empty() && !f.payload.content().is_empty() {
                g.data = f.payload.content().to_vec();
            }
            match &f.payload {
                crate::kinds::Payload::Pipe(p) => g.capacity = g.capacity.max(p.capacity),
                crate::kinds::Payload::Fifo(p) => g.capacity = g.capacity.max(p.capacity),
                crate::kinds::Payload::Memfd(m) => g.seals |= m.seals,
                _ => {}
            }
        }
    }
    groups.retain(|g| g.holders.len() > 1);
    if let Some(max_fd) = decoded
        .iter()
        .flat_map(|(_, s)| s.fds.iter().map(|f| f.fd()))
        .max()
    {
        park.above(max_fd);
    }
    let mut next = park.take(groups.iter().map(|g| g.descs.len()).sum())?;
    let mut slots = HashMap::new();
    for g in &mut groups {
        g.creator = tree.common_ancestor(&g.holders).ok_or_else(|| {
            bad(format!(
                "processes {:?} share a descriptor but have no common ancestor in the tree",
                g.holders
            ))
        })?;
        for (slot, rec) in &mut g.descs {
            *slot = next;
            slots.insert(rec.desc_id, next);
            next = next
                .checked_add(1)
                .ok_or_else(|| bad("too many descriptors".into()))?;
        }
    }
    Ok(Plan {
        groups,
        slots,
        end: next,
    })
}

/// In process `pid`, before it forks its children: create every shared object it is
/// the creator of, each description parked at its number.
pub fn before_fork(plan: &Plan, tree: &TreeView<'_>, pid: i32) -> Result<()> {
    let mine: Vec<&Group> = plan.groups.iter().filter(|g| g.creator == pid).collect();
    if mine.is_empty() {
        return Ok(());
    }
    spirit_core::plugin::ensure_fd_room(pid, plan.end, "the descriptors its tree shares")?;
    let pids = pids_of(tree, pid);
    for g in mine {
        create(g, plan.end, &pids).map_err(|e| match e {
            Error::Restore(m) => Error::Restore(format!(
                "process {pid}, creating a descriptor shared by processes {:?}: {m}",
                g.holders
            )),
            other => other,
        })?;
    }
    Ok(())
}

/// Leave description `fd` open at number `slot` (for the descendants to inherit).
fn park_at(h: &Head, fd: OwnedFd, slot: i32) -> Result<()> {
    if fd.as_raw_fd() == slot {
        // Opened right there: keep it open (the number is the descendants' now).
        let _ = fd.into_raw_fd();
        return Ok(());
    }
    nix::unistd::dup3(fd.as_raw_fd(), slot, nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| fail(h, &format!("parking it at descriptor {slot}"), e))?;
    Ok(())
}

/// Create group `g`'s descriptions at their numbers. What helps building them (a pipe's
/// ends, a memfd) is first moved above every parked number (`end`), so that parking
/// one description never lands on it.
fn create(g: &Group, end: i32, pids: &Pids) -> Result<()> {
    let Some((_, first)) = g.descs.first() else {
        return Ok(());
    };
    match g.key {
        Key::Object(_) => {
            let packet = g
                .descs
                .iter()
                .any(|(_, d)| d.head.flags as i32 & libc::O_DIRECT != 0);
            let mut obj =
                Built::make(&first.payload, &first.head, &g.data, g.capacity, packet)?.park(end)?;
            for (slot, d) in &g.descs {
                park_at(&d.head, obj.take(&d.head, &d.payload)?, *slot)?;
            }
            obj.seal(&first.head, g.seals)?;
        }
        Key::Desc(_) => {
            for (i, (slot, d)) in g.descs.iter().enumerate() {
                let fd = if i == 0 && !g.data.is_empty() {
                    d.payload.with_content(&g.data).open(&d.head, pids)?
                } else {
                    d.payload.open(&d.head, pids)?
                };
                park_at(&d.head, fd, *slot)?;
            }
        }
    }
    Ok(())
}

/// For process `pid`: its descriptions that are shared (fd → parked number), and the
/// parked numbers it inherited (to close once its own descriptors are in place).
pub fn for_process(
    plan: &Plan,
    tree: &TreeView<'_>,
    pid: i32,
    sec: &FilesSection,
) -> (HashMap<i32, i32>, Vec<i32>) {
    let shared = sec
        .fds
        .iter()
        .filter(|f| f.is_owner() && !f.is_epoll())
        .filter_map(|f| {
            Some((
                f.fd(),
                *plan.slots.get(&f.desc_id).filter(|_| f.desc_id != 0)?,
            ))
        })
        .collect();
    let inherited = plan
        .groups
        .iter()
        .filter(|g| tree.is_ancestor_or_self(g.creator, pid))
        .flat_map(|g| g.descs.iter().map(|(s, _)| *s))
        .collect();
    (shared, inherited)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::chardev::CharDevice;
    use crate::kinds::pipe::Pipe;
    use crate::kinds::Payload;
    use spirit_core::model::{ProcessImage, Section, TreeNode};

    fn node(pid: i32, ppid: i32) -> TreeNode {
        TreeNode {
            pid,
            ppid,
            threads: vec![pid],
            pgid: 1,
            sid: 1,
            zombie: false,
            exit_status: 0,
        }
    }

    fn proc(pid: i32, fds: Vec<FdRecord>) -> ProcessImage {
        let sec = FilesSection {
            cwd: "/".into(),
            root: "/".into(),
            umask: 0o22,
            fds,
        };
        ProcessImage {
            pid,
            sections: vec![Section {
                plugin: crate::NAME.into(),
                version: crate::VERSION,
                data: sec.encode(),
            }],
            ..Default::default()
        }
    }

    fn rec(fd: i32, flags: u32, desc_id: u64, payload: Payload) -> FdRecord {
        FdRecord {
            head: Head {
                fd,
                flags,
                ..Default::default()
            },
            dup_of: None,
            desc_id,
            locks: Vec::new(),
            owner: None,
            lease: None,
            payload,
        }
    }

    fn pipe_end(fd: i32, write: bool, desc_id: u64) -> FdRecord {
        let flags = if write { libc::O_WRONLY as u32 } else { 0 };
        let pipe = Pipe {
            inode: 77,
            ..Default::default()
        };
        rec(fd, flags, desc_id, Payload::Pipe(pipe))
    }

    fn null(fd: i32, desc_id: u64) -> FdRecord {
        let mut dev = CharDevice::default();
        dev.file.path = "/dev/null".into();
        rec(fd, 0, desc_id, Payload::CharDevice(dev))
    }

    #[test]
    fn a_pipe_between_siblings_is_made_by_their_parent() {
        // 1 ─┬─ 2 (write end, fd 1)   1 holds no pipe end; 3 is a zombie.
        //    ├─ 3 (zombie)
        //    └─ 4 ── 5 (read end, fd 0; fd 9 its own /dev/null, and 4's fd 2)
        let nodes = vec![node(1, 0), node(2, 1), node(3, 1), node(4, 1), node(5, 4)];
        let procs = vec![
            proc(1, vec![null(2, 1)]),
            proc(2, vec![pipe_end(1, true, 2), null(2, 1)]),
            proc(4, vec![null(2, 3)]),
            proc(5, vec![pipe_end(0, false, 4), null(9, 3)]),
        ];
        let tree = TreeView {
            nodes: &nodes,
            procs: &procs,
            opts: &Default::default(),
        };
        let plan = compute(&tree, &tree.sections(crate::NAME), &mut Parking::new(&tree)).unwrap();
        let creators: Vec<(Key, i32)> = plan.groups.iter().map(|g| (g.key, g.creator)).collect();
        assert_eq!(
            creators,
            vec![
                (Key::Desc(1), 1),
                (Key::Object(Object::Pipe(77)), 1),
                (Key::Desc(3), 4)
            ]
        );
        // Parked above fd 9, the highest number in the tree, in group order.
        assert_eq!(plan.slots[&1], 10);
        assert_eq!((plan.slots[&2], plan.slots[&4]), (11, 12));
        assert_eq!(plan.slots[&3], 13);
        assert_eq!(plan.end, 14);
        let sec5 = FilesSection::decode(tree.sections(crate::NAME)[3].1).unwrap();
        let (shared, inherited) = for_process(&plan, &tree, 5, &sec5);
        assert_eq!(shared, HashMap::from([(0, 12), (9, 13)]));
        assert_eq!(inherited, vec![10, 11, 12, 13]);
        let sec2 = FilesSection::decode(tree.sections(crate::NAME)[1].1).unwrap();
        let (_, inherited) = for_process(&plan, &tree, 2, &sec2);
        assert_eq!(inherited, vec![10, 11, 12], "not 4's /dev/null");
    }

    #[test]
    fn one_description_as_two_files_is_refused() {
        let nodes = vec![node(1, 0), node(2, 1)];
        let procs = vec![
            proc(1, vec![pipe_end(3, true, 5)]),
            proc(2, vec![null(3, 5)]),
        ];
        let tree = TreeView {
            nodes: &nodes,
            procs: &procs,
            opts: &Default::default(),
        };
        let e = compute(&tree, &tree.sections(crate::NAME), &mut Parking::new(&tree))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("two different files"), "{e}");
    }

    #[test]
    fn garbage_sections_are_errors() {
        let nodes = vec![node(1, 0)];
        let procs = vec![ProcessImage {
            pid: 1,
            sections: vec![Section {
                plugin: crate::NAME.into(),
                version: 1,
                data: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
            }],
            ..Default::default()
        }];
        let tree = TreeView {
            nodes: &nodes,
            procs: &procs,
            opts: &Default::default(),
        };
        assert!(plan(&tree, &mut Parking::new(&tree)).is_err());
    }
}
