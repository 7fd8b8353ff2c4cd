//! Who creates what at restore, from every process's section before anything exists.
//!
//! Sockets that must be made together form a group — both ends of a pair, a listener
//! with its accepted connections and the clients queued on it, a datagram socket and
//! the peer it connects to, a socket in flight with the socket whose queue carries it,
//! a queued datagram's named sender. Each group is created once, by the lowest common
//! ancestor of all its holders, before that process forks its children (`create.rs`);
//! each socket is parked at a number from core's `Parking`, inherited by the
//! descendants, and `dup3`'d into place by each holder.

use crate::model::{Payload, PeerKind, Section, Socket};
use crate::unix::TCP_LISTEN;
use spirit_core::plugin::{Parking, TreeView};
use spirit_core::{Error, Result};
use std::collections::HashMap;

/// One socket of the tree.
#[derive(Clone, Debug)]
pub struct Obj {
    pub rec: Socket,
    pub holders: Vec<(i32, i32)>,
    pub slot: i32,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub creator: i32,
    /// Socket inodes, in the order their records were met.
    pub members: Vec<u64>,
}

pub struct Plan {
    pub objs: HashMap<u64, Obj>,
    pub groups: Vec<Group>,
    /// Socket inode → the restorer's descriptor standing for it (`--inherit-fd`).
    pub inherit: HashMap<u64, i32>,
    /// One past the highest parked number.
    pub end: i32,
    /// Socket files a restore binds: (path, the file there before the restore).
    pub files: Vec<(String, Option<FileId>)>,
    /// Inet sockets already let out of repair mode (`inet::finish`), by inode.
    pub inet_done: std::collections::HashSet<u64>,
}

struct Uf(HashMap<u64, u64>);

impl Uf {
    fn find(&mut self, x: u64) -> u64 {
        let p = *self.0.entry(x).or_insert(x);
        if p == x {
            return x;
        }
        let r = self.find(p);
        self.0.insert(x, r);
        r
    }
    fn union(&mut self, a: u64, b: u64) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0.insert(ra, rb);
        }
    }
}

pub fn plan(tree: &TreeView<'_>, park: &mut Parking) -> Result<Plan> {
    let mut objs: HashMap<u64, Obj> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    for n in tree.nodes {
        let Some(p) = tree.procs.iter().find(|p| p.pid == n.pid) else {
            continue;
        };
        let Some(sec) = p.section(crate::NAME) else {
            continue;
        };
        let sec = Section::decode(&sec.data)?;
        for s in sec.inflight {
            objs.entry(s.inode).or_insert_with(|| {
                order.push(s.inode);
                Obj {
                    rec: s.clone(),
                    holders: Vec::new(),
                    slot: -1,
                }
            });
        }
        for s in sec.sockets {
            park.above(s.fd);
            let o = objs.entry(s.inode).or_insert_with(|| {
                order.push(s.inode);
                Obj {
                    rec: s.clone(),
                    holders: Vec::new(),
                    slot: -1,
                }
            });
            o.holders.push((p.pid, s.fd));
            if !matches!(s.payload, Payload::Dup) {
                o.rec = s;
            }
        }
    }
    // Sockets by the name they bound themselves: the senders of queued datagrams.
    let mut named: HashMap<Vec<u8>, u64> = HashMap::new();
    for ino in &order {
        if let Payload::Unix(u) = &objs[ino].rec.payload {
            if !u.name.is_empty() && !u.name_inherited {
                named.insert(u.name.clone(), *ino);
            }
        }
    }
    let mut inherit = HashMap::new();
    let mut uf = Uf(HashMap::new());
    let mut files = Vec::new();
    for ino in &order {
        let o = &objs[ino];
        let what = || match o.holders.first() {
            Some((pid, fd)) => format!("process {pid} fd {fd}"),
            None => format!("socket:[{ino}] in flight"),
        };
        let u = match &o.rec.payload {
            Payload::Dup => {
                return Err(crate::model::bad(format!(
                    "{}: socket:[{ino}] is only ever recorded as a duplicate",
                    what()
                )))
            }
            Payload::Unix(u) => u,
            _ => continue,
        };
        uf.find(*ino);
        if let Some(f) = u.file.as_ref().filter(|f| f.present) {
            let before = std::fs::symlink_metadata(&f.path).ok().map(|m| file_id(&m));
            files.push((f.path.clone(), before));
        }
        match u.peer_kind {
            PeerKind::InTree if u.embryo => {
                if !objs.contains_key(&u.listener) {
                    return Err(crate::model::bad(format!(
                        "{}: waits on listener socket:[{}], which no process holds",
                        what(),
                        u.listener
                    )));
                }
                uf.union(*ino, u.listener);
            }
            PeerKind::InTree => {
                if !objs.contains_key(&u.peer) {
                    return Err(crate::model::bad(format!(
                        "{}: its peer socket:[{}] is held by no process",
                        what(),
                        u.peer
                    )));
                }
                uf.union(*ino, u.peer);
            }
            PeerKind::Inherit => {
                let key = format!("socket:[{ino}]");
                let given = tree.opts.inherit_fds.iter().find(|i| i.key == key).ok_or_else(|| {
                    Error::Restore(format!(
                        "{}: unix socket {key} was connected outside the tree at checkpoint ({}); give one with --inherit-fd fd[N]:{key}",
                        what(),
                        crate::unix::show_name(&u.peer_name)
                    ))
                })?;
                inherit.insert(*ino, given.fd);
            }
            _ => {}
        }
        // A socket in flight is made with the socket whose queue carries it.
        for f in u
            .queue
            .iter()
            .flat_map(|m| &m.files)
            .filter(|f| f.socket != 0)
        {
            if !objs.contains_key(&f.socket) {
                return Err(crate::model::bad(format!(
                    "{}: socket:[{}] in flight is recorded nowhere",
                    what(),
                    f.socket
                )));
            }
            uf.union(*ino, f.socket);
        }
        if u.ty as i32 == libc::SOCK_DGRAM && u.peer_kind == PeerKind::None {
            // Datagrams queued from named sockets of the tree are sent again by them.
            for m in &u.queue {
                if let Some(s) = named.get(&m.from).filter(|s| **s != *ino) {
                    uf.union(*ino, *s);
                }
            }
        }
        if u.name_inherited {
            let listener = order.iter().find(|l| {
                matches!(&objs[*l].rec.payload, Payload::Unix(x) if x.state == TCP_LISTEN && x.name == u.name)
            });
            if let Some(l) = listener {
                uf.union(*ino, *l);
            }
        }
    }
    let mut by_root: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for ino in &order {
        let r = uf.find(*ino);
        let gi = *by_root.entry(r).or_insert_with(|| {
            groups.push(Group {
                creator: 0,
                members: Vec::new(),
            });
            groups.len() - 1
        });
        groups[gi].members.push(*ino);
    }
    let mut next = park.take(order.len())?;
    for g in &mut groups {
        let mut pids: Vec<i32> = g
            .members
            .iter()
            .flat_map(|m| objs[m].holders.iter().map(|h| h.0))
            .collect();
        pids.dedup();
        g.creator = tree.common_ancestor(&pids).ok_or_else(|| {
            crate::model::bad(format!(
                "processes {pids:?} share sockets but have no common ancestor in the tree"
            ))
        })?;
        for m in &g.members {
            if let Some(o) = objs.get_mut(m) {
                o.slot = next;
                next += 1;
            }
        }
    }
    Ok(Plan {
        objs,
        groups,
        inherit,
        end: next,
        files,
        inet_done: Default::default(),
    })
}

/// A file's identity: inode and change time (a filesystem may give a new file the
/// inode number of the one just removed).
pub type FileId = (u64, i64, i64);

fn file_id(md: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (md.ino(), md.ctime(), md.ctime_nsec())
}

/// After a failed restore: remove the socket files it bound (those that are not the
/// file that was there before).
pub fn clean_files(plan: &Plan) {
    use std::os::unix::fs::FileTypeExt;
    for (path, before) in &plan.files {
        if let Ok(md) = std::fs::symlink_metadata(path) {
            if md.file_type().is_socket() && Some(file_id(&md)) != *before {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Options, Unix};
    use spirit_core::model::{ProcessImage, Section as CoreSection, TreeNode};
    use spirit_core::restore::{InheritFd, RestoreOptions};

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

    fn sock(fd: i32, inode: u64, payload: Payload) -> Socket {
        Socket {
            fd,
            flags: 2,
            cloexec: false,
            inode,
            dup_of: None,
            opts: Options::default(),
            payload,
        }
    }

    fn unix(peer: u64, kind: PeerKind) -> Payload {
        Payload::Unix(Unix {
            ty: 1,
            state: 1,
            peer,
            peer_kind: kind,
            ..Default::default()
        })
    }

    fn proc(pid: i32, sockets: Vec<Socket>) -> ProcessImage {
        ProcessImage {
            pid,
            fd_end: 10,
            sections: vec![CoreSection {
                plugin: crate::NAME.into(),
                version: crate::VERSION,
                data: Section {
                    sockets,
                    inflight: Vec::new(),
                }
                .encode(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_pair_between_siblings_and_a_shared_listener() {
        // 1 ─┬─ 2 (pair end 100 at fd 3; listener 300 at fd 5, shared with 1)
        //    └─ 3 (pair end 200 at fd 4)
        let listener = Payload::Unix(Unix {
            ty: 1,
            state: crate::unix::TCP_LISTEN,
            name: b"\0srv".to_vec(),
            backlog: 5,
            ..Default::default()
        });
        let nodes = vec![node(1, 0), node(2, 1), node(3, 1)];
        let procs = vec![
            proc(1, vec![sock(6, 300, listener)]),
            proc(
                2,
                vec![
                    sock(3, 100, unix(200, PeerKind::InTree)),
                    sock(5, 300, Payload::Dup),
                ],
            ),
            proc(3, vec![sock(4, 200, unix(100, PeerKind::InTree))]),
        ];
        let opts = RestoreOptions::default();
        let tree = TreeView {
            nodes: &nodes,
            procs: &procs,
            opts: &opts,
        };
        let plan = plan(&tree, &mut Parking::new(&tree)).unwrap();
        let creators: Vec<(Vec<u64>, i32)> = plan
            .groups
            .iter()
            .map(|g| (g.members.clone(), g.creator))
            .collect();
        assert_eq!(creators, vec![(vec![300], 1), (vec![100, 200], 1)]);
        let slots: Vec<i32> = [300, 100, 200].iter().map(|i| plan.objs[i].slot).collect();
        assert_eq!(slots, vec![10, 11, 12], "parked above every fd of the tree");
        assert_eq!(plan.objs[&300].holders, vec![(1, 6), (2, 5)]);
        assert_eq!(plan.end, 13);
    }

    #[test]
    fn an_external_socket_to_inherit_needs_its_descriptor() {
        let nodes = vec![node(1, 0)];
        let procs = vec![proc(1, vec![sock(3, 77, unix(5, PeerKind::Inherit))])];
        let mut opts = RestoreOptions::default();
        let tree = TreeView {
            nodes: &nodes,
            procs: &procs,
            opts: &opts,
        };
        let e = plan(&tree, &mut Parking::new(&tree))
            .err()
            .expect("refused");
        assert!(
            e.to_string().contains("--inherit-fd fd[N]:socket:[77]"),
            "{e}"
        );
        opts.inherit_fds.push(InheritFd {
            fd: 20,
            key: "socket:[77]".into(),
        });
        let tree = TreeView {
            nodes: &nodes,
            procs: &procs,
            opts: &opts,
        };
        let mut park = Parking::new(&tree);
        let plan = plan(&tree, &mut park).unwrap();
        assert_eq!(plan.inherit[&77], 20);
        assert!(
            plan.objs[&77].slot > 20,
            "parked above the given descriptor"
        );
    }

    #[test]
    fn a_peer_no_process_holds_is_an_error() {
        let nodes = vec![node(1, 0)];
        let procs = vec![proc(1, vec![sock(3, 77, unix(78, PeerKind::InTree))])];
        let opts = RestoreOptions::default();
        let tree = TreeView {
            nodes: &nodes,
            procs: &procs,
            opts: &opts,
        };
        assert!(plan(&tree, &mut Parking::new(&tree)).is_err());
    }
}
