//! Restore plan, computed once in the restorer from every process's section: each pty is
//! created by the lowest common ancestor of the processes that hold it, lead its
//! session or are its foreground group (so the leader and the foreground process find
//! it inherited), its open file descriptions parked at numbers taken from core's
//! `Parking`; each outside terminal gets one parked number, where the restorer puts the
//! descriptor bound to it (`external.rs`).

use crate::section::{Kind, Side, Terminal, TtySection};
use spirit_core::plugin::{Parking, TreeView};
use spirit_core::{Error, Result};

/// One open file description of a pty to create (`id` 0: one the plan adds so that
/// the session leader has a slave to take as its controlling terminal).
#[derive(Clone, Debug)]
pub struct Desc {
    pub id: u32,
    pub side: Side,
    pub flags: u32,
    pub slot: i32,
}

#[derive(Clone, Debug)]
pub struct PtyPlan {
    pub terminal: Terminal,
    pub holders: Vec<i32>,
    pub creator: i32,
    /// The session leader whose controlling terminal it is.
    pub leader: Option<i32>,
    pub descs: Vec<Desc>,
}

#[derive(Clone, Debug)]
pub struct ExtPlan {
    pub id: u32,
    pub key: String,
    pub slot: i32,
    /// A holder (pid, fd), for messages.
    pub first: (i32, i32),
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub ptys: Vec<PtyPlan>,
    pub externals: Vec<ExtPlan>,
    /// One past the highest parked number.
    pub end: i32,
    /// In the restorer: outside terminals are bound to their parked numbers.
    pub bound: bool,
    /// In the restorer with `--shell-job`: its terminal's foreground group before.
    pub restorer_pgrp: Option<i32>,
    /// In the restorer: restored processes (pids as seen here) whose outside terminal
    /// now has another size than at checkpoint; their groups get SIGWINCH once the
    /// tree runs, as a resize would have sent them.
    pub winch: Vec<i32>,
}

fn bad(msg: String) -> Error {
    Error::Restore(format!(
        "malformed tty sections: {msg}; the image is damaged or was not written by spirit"
    ))
}

impl Plan {
    pub fn pty(&self, id: u32) -> Option<&PtyPlan> {
        self.ptys.iter().find(|p| p.terminal.id == id)
    }

    /// The parked number of description `desc` of terminal `id` (pty or outside).
    pub fn slot_of(&self, id: u32, desc: u32) -> Option<i32> {
        if let Some(e) = self.externals.iter().find(|e| e.id == id) {
            return Some(e.slot);
        }
        self.pty(id)?
            .descs
            .iter()
            .find(|d| d.id == desc)
            .map(|d| d.slot)
    }

    /// The parked number of a slave description of pty `id`.
    pub fn slave_slot(&self, id: u32) -> Option<i32> {
        if let Some(e) = self.externals.iter().find(|e| e.id == id) {
            return Some(e.slot);
        }
        self.pty(id)?
            .descs
            .iter()
            .find(|d| d.side != Side::Master)
            .map(|d| d.slot)
    }
}

fn push_unique(v: &mut Vec<i32>, pid: i32) {
    if !v.contains(&pid) {
        v.push(pid);
    }
}

pub fn plan(tree: &TreeView<'_>, park: &mut Parking) -> Result<Plan> {
    let mut secs: Vec<(i32, TtySection)> = Vec::new();
    for n in tree.nodes {
        if let Some((pid, data)) = tree
            .sections(crate::NAME)
            .into_iter()
            .find(|(p, _)| *p == n.pid)
        {
            secs.push((pid, TtySection::decode(data)?));
        }
    }
    compute(tree, &secs, park)
}

pub fn compute(
    tree: &TreeView<'_>,
    secs: &[(i32, TtySection)],
    park: &mut Parking,
) -> Result<Plan> {
    let mut plan = Plan::default();
    for (pid, sec) in secs {
        for t in &sec.terminals {
            match t.kind {
                Kind::Pty if plan.pty(t.id).is_some() => {
                    return Err(bad(format!("pty {} is described twice", t.id)))
                }
                Kind::Pty => plan.ptys.push(PtyPlan {
                    terminal: t.clone(),
                    holders: Vec::new(),
                    creator: 0,
                    leader: None,
                    descs: Vec::new(),
                }),
                Kind::External => {
                    if !plan.externals.iter().any(|e| e.id == t.id) {
                        let fd = sec
                            .fds
                            .iter()
                            .find(|f| f.terminal == t.id)
                            .map_or(-1, |f| f.fd);
                        plan.externals.push(ExtPlan {
                            id: t.id,
                            key: t.key.clone(),
                            slot: 0,
                            first: (*pid, fd),
                        });
                    }
                }
            }
        }
        if let Some(max) = sec.fds.iter().map(|f| f.fd).max() {
            park.above(max);
        }
    }
    if plan
        .externals
        .iter()
        .any(|e| plan.ptys.iter().any(|p| p.terminal.id == e.id))
    {
        return Err(bad("a terminal is both a pty and outside the tree".into()));
    }
    for (pid, sec) in secs {
        for f in &sec.fds {
            if plan.externals.iter().any(|e| e.id == f.terminal) {
                continue;
            }
            let p = plan
                .ptys
                .iter_mut()
                .find(|p| p.terminal.id == f.terminal)
                .ok_or_else(|| {
                    bad(format!(
                        "fd {} of process {pid} is on terminal {}, which no section describes",
                        f.fd, f.terminal
                    ))
                })?;
            push_unique(&mut p.holders, *pid);
            if f.desc == 0 {
                return Err(bad(format!(
                    "fd {} of process {pid} has no description id",
                    f.fd
                )));
            }
            let side = if f.side == Side::Master {
                Side::Master
            } else {
                Side::Slave
            };
            match p.descs.iter().find(|d| d.id == f.desc) {
                Some(d) if d.side != side => {
                    return Err(bad(format!(
                        "description {} of fd {} of process {pid} is both a master and a slave",
                        f.desc, f.fd
                    )))
                }
                Some(_) => {}
                None => p.descs.push(Desc {
                    id: f.desc,
                    side,
                    flags: f.flags,
                    slot: 0,
                }),
            }
        }
        let leads = (sec.ctty_of != 0).then_some(sec.ctty_of);
        for (id, leader) in leads
            .map(|t| (t, true))
            .into_iter()
            .chain(sec.foreground_of.iter().map(|t| (*t, false)))
        {
            if let Some(p) = plan.ptys.iter_mut().find(|p| p.terminal.id == id) {
                push_unique(&mut p.holders, *pid);
                if leader {
                    p.leader = Some(*pid);
                }
            } else {
                return Err(bad(format!(
                    "process {pid} leads or is the foreground of terminal {id}, which no section describes as a pty"
                )));
            }
        }
    }
    let total: usize =
        plan.ptys.iter().map(|p| p.descs.len() + 1).sum::<usize>() + plan.externals.len();
    let mut next = park.take(total)?;
    for p in &mut plan.ptys {
        if p.descs.iter().filter(|d| d.side == Side::Master).count() != 1 {
            return Err(bad(format!(
                "pty {} has no master, or more than one, in the tree",
                p.terminal.index
            )));
        }
        let needs_slave = p.leader.is_some()
            || secs
                .iter()
                .any(|(_, s)| s.foreground_of.contains(&p.terminal.id));
        if needs_slave && !p.descs.iter().any(|d| d.side == Side::Slave) {
            p.descs.push(Desc {
                id: 0,
                side: Side::Slave,
                flags: libc::O_RDWR as u32,
                slot: 0,
            });
        }
        p.creator = tree.common_ancestor(&p.holders).ok_or_else(|| {
            bad(format!(
                "processes {:?} share a pty but have no common ancestor in the tree",
                p.holders
            ))
        })?;
        for d in &mut p.descs {
            d.slot = next;
            next += 1;
        }
    }
    for e in &mut plan.externals {
        e.slot = next;
        next += 1;
    }
    plan.end = next;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::section::{Terminal, TtyFd};
    use spirit_core::model::{ProcessImage, Section, TreeNode};

    fn node(pid: i32, ppid: i32, sid: i32) -> TreeNode {
        TreeNode {
            pid,
            ppid,
            threads: vec![pid],
            pgid: pid,
            sid,
            zombie: false,
            exit_status: 0,
        }
    }

    fn proc(pid: i32, sec: &TtySection) -> ProcessImage {
        ProcessImage {
            pid,
            fd_end: sec.fds.iter().map(|f| f.fd + 1).max().unwrap_or(0),
            sections: vec![Section {
                plugin: crate::NAME.into(),
                version: crate::VERSION,
                data: sec.encode(),
            }],
            ..Default::default()
        }
    }

    fn fd(fd: i32, terminal: u32, side: Side, desc: u32) -> TtyFd {
        TtyFd {
            fd,
            terminal,
            side,
            desc,
            flags: libc::O_RDWR as u32,
            key: String::new(),
        }
    }

    fn pty(id: u32) -> Terminal {
        Terminal {
            id,
            kind: Kind::Pty,
            key: format!("/dev/pts/{id}"),
            index: id,
            ..Default::default()
        }
    }

    fn plan_of(nodes: &[TreeNode], procs: &[ProcessImage]) -> Result<Plan> {
        let tree = TreeView {
            nodes,
            procs,
            opts: &Default::default(),
        };
        plan(&tree, &mut Parking::new(&tree))
    }

    #[test]
    fn a_servers_pane_is_made_by_the_server_and_led_by_the_pane() {
        // 1 (server: master of pty 1 at fd 7) ── 2 (session leader on the slave, fds
        // 0-2 one description) ── 3 (foreground job: fd 0 the same description).
        let nodes = vec![node(1, 0, 1), node(2, 1, 2), node(3, 2, 2)];
        let server = TtySection {
            fds: vec![fd(7, 1, Side::Master, 1)],
            terminals: vec![pty(1)],
            ..Default::default()
        };
        let leader = TtySection {
            fds: (0..3).map(|n| fd(n, 1, Side::Slave, 2)).collect(),
            ctty_of: 1,
            ..Default::default()
        };
        let job = TtySection {
            fds: vec![fd(0, 1, Side::Slave, 2)],
            foreground_of: vec![1],
            ..Default::default()
        };
        let procs = vec![proc(1, &server), proc(2, &leader), proc(3, &job)];
        let p = plan_of(&nodes, &procs).unwrap();
        assert_eq!(p.ptys.len(), 1);
        let pp = &p.ptys[0];
        assert_eq!((pp.creator, pp.leader), (1, Some(2)));
        assert_eq!(pp.descs.len(), 2, "one master and one slave description");
        let (m, s) = (p.slot_of(1, 1).unwrap(), p.slot_of(1, 2).unwrap());
        assert!(m >= 8 && s >= 8 && m != s, "parked above every fd: {m} {s}");
        assert_eq!(p.slave_slot(1), Some(s));
        assert_eq!(p.end, m.max(s) + 1);
    }

    #[test]
    fn a_leader_holding_no_fd_of_its_terminal_gets_one_parked() {
        let nodes = vec![node(1, 0, 1), node(2, 1, 2)];
        let server = TtySection {
            fds: vec![fd(3, 1, Side::Master, 1)],
            terminals: vec![pty(1)],
            ..Default::default()
        };
        let leader = TtySection {
            ctty_of: 1,
            ..Default::default()
        };
        let procs = vec![proc(1, &server), proc(2, &leader)];
        let p = plan_of(&nodes, &procs).unwrap();
        let pp = &p.ptys[0];
        assert_eq!(pp.creator, 1);
        assert!(pp.descs.iter().any(|d| d.id == 0 && d.side == Side::Slave));
        assert!(p.slave_slot(1).is_some());
    }

    #[test]
    fn an_outside_terminal_gets_one_slot() {
        let nodes = vec![node(1, 0, 99)];
        let sec = TtySection {
            fds: (0..3).map(|n| fd(n, 5, Side::Slave, 1)).collect(),
            terminals: vec![Terminal {
                id: 5,
                kind: Kind::External,
                key: "/dev/pts/9".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = plan_of(&nodes, &[proc(1, &sec)]).unwrap();
        assert!(p.ptys.is_empty());
        assert_eq!(p.externals.len(), 1);
        assert_eq!(p.externals[0].key, "/dev/pts/9");
        assert_eq!(p.externals[0].first, (1, 0));
        assert_eq!(p.slot_of(5, 1), Some(p.externals[0].slot));
    }

    #[test]
    fn malformed_plans_are_errors() {
        let nodes = vec![node(1, 0, 1)];
        // An fd on a terminal no section describes.
        let orphan = TtySection {
            fds: vec![fd(0, 4, Side::Slave, 1)],
            ..Default::default()
        };
        assert!(plan_of(&nodes, &[proc(1, &orphan)]).is_err());
        // A pty with no master in the tree.
        let masterless = TtySection {
            fds: vec![fd(0, 1, Side::Slave, 1)],
            terminals: vec![pty(1)],
            ..Default::default()
        };
        assert!(plan_of(&nodes, &[proc(1, &masterless)]).is_err());
        // One description both master and slave.
        let both = TtySection {
            fds: vec![fd(3, 1, Side::Master, 1), fd(4, 1, Side::Slave, 1)],
            terminals: vec![pty(1)],
            ..Default::default()
        };
        assert!(plan_of(&nodes, &[proc(1, &both)]).is_err());
        // Bytes that are no section.
        let garbage = ProcessImage {
            pid: 1,
            sections: vec![Section {
                plugin: crate::NAME.into(),
                version: 1,
                data: vec![9; 9],
            }],
            ..Default::default()
        };
        assert!(plan_of(&nodes, &[garbage]).is_err());
    }
}
