//! epoll instances: the descriptors they watch (`tfd: N events: E data: D` fdinfo
//! lines), each of which must still be open in the process and be one this plugin
//! restores — or a socket, which the sockets plugin restores after this plugin's
//! descriptors are in place: those are added to the set in `restore_remote`, by a remote
//! `epoll_ctl` once every plugin placed its descriptors. Rebuilt last in a process, once
//! what they watch is in place (an epoll set may watch another; one shared across fork
//! is rebuilt in each process).

use crate::files_capnp as s;
use crate::record::{bad, fail, tokens, Head, Probe, SETTABLE};
use serde_json::{json, Map, Value};
use spirit_core::plugin::Remote;
use spirit_core::{Error, Result};
use spirit_kmod::fd as kfd;
use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    /// A socket: added in `restore_remote` (see the module doc).
    pub socket: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Epoll {
    pub targets: Vec<Target>,
}

impl Epoll {
    pub fn dump(_p: &Probe<'_>) -> Result<Option<Epoll>> {
        Ok(Some(Epoll::default()))
    }

    /// Owner records: the watched descriptors; `mine` are the fds this plugin restores
    /// and the process's sockets.
    pub fn fill(&mut self, p: &Probe<'_>, mine: &HashSet<i32>) -> Result<()> {
        let (pid, fd) = (p.pid, p.entry.fd);
        for l in p.info.lines("tfd:") {
            let t = tokens(&format!("tfd:{l}"));
            let parse = |k: &str, radix| t.get(k).and_then(|v| u64::from_str_radix(v, radix).ok());
            let (Some(tfd), Some(events), Some(data)) =
                (parse("tfd", 10), parse("events", 16), parse("data", 16))
            else {
                return Err(Error::Dump {
                    pid,
                    msg: format!("fd {fd}: unexpected epoll fdinfo line {l:?}"),
                });
            };
            let tfd = tfd as i32;
            let current = kfd::epoll_target_is_current(pid, fd, tfd).unwrap_or(false);
            let socket = current
                && mine.contains(&tfd)
                && std::fs::read_link(format!("/proc/{pid}/fd/{tfd}"))
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
            if !current || !mine.contains(&tfd) {
                let why = if !current {
                    "closed or reused for another file since (the watched file lives on only inside the epoll set)"
                } else if Path::new(&format!("/proc/{pid}/fd/{tfd}")).exists() {
                    "a descriptor left out or of a kind the files plugin does not restore (epoll sets over terminals are not supported yet)"
                } else {
                    "closed (its file lives on only inside the epoll set)"
                };
                return Err(p.refuse(format!(
                    "an epoll instance watching fd {tfd}, which is {why}"
                )));
            }
            self.targets.push(Target {
                fd: tfd,
                events: events as u32,
                data,
                socket,
            });
        }
        Ok(())
    }

    pub fn encode(&self, b: s::epoll::Builder<'_>) {
        let mut l = b.init_targets(self.targets.len() as u32);
        for (j, t) in self.targets.iter().enumerate() {
            let mut x = l.reborrow().get(j as u32);
            x.set_fd(t.fd);
            x.set_events(t.events);
            x.set_data(t.data);
            x.set_socket(t.socket);
        }
    }

    pub fn decode(r: capnp::Result<s::epoll::Reader<'_>>) -> Result<Epoll> {
        let r = r.map_err(|e| bad(format!("epoll: {e}")))?;
        let list = r
            .get_targets()
            .map_err(|e| bad(format!("epoll targets: {e}")))?;
        Ok(Epoll {
            targets: list
                .iter()
                .map(|t| Target {
                    fd: t.get_fd(),
                    events: t.get_events(),
                    data: t.get_data(),
                    socket: t.get_socket(),
                })
                .collect(),
        })
    }

    /// Whether every watched fd is among `placed` (sockets come later).
    pub fn ready(&self, placed: &HashSet<i32>) -> bool {
        self.targets
            .iter()
            .all(|t| t.socket || placed.contains(&t.fd))
    }

    /// The epoll set, its targets in place under their numbers.
    pub fn open(&self, h: &Head) -> Result<OwnedFd> {
        let ep = kfd::epoll_create(libc::EPOLL_CLOEXEC)?;
        for t in self.targets.iter().filter(|t| !t.socket) {
            kfd::epoll_add(&ep, t.fd, t.events, t.data).map_err(|err| {
                fail(
                    h,
                    &format!("watching fd {} (events {:#x})", t.fd, t.events),
                    err,
                )
            })?;
        }
        kfd::set_status_flags(&ep, h.flags as i32 & SETTABLE)?;
        Ok(ep)
    }

    /// In the stopped restored process, every descriptor in place: add the watched
    /// sockets to the set at fd `ep` (`struct epoll_event` is packed on x86-64: events,
    /// then data at offset 4).
    pub fn add_sockets(&self, remote: &mut Remote<'_>, ep: i32) -> Result<()> {
        for t in self.targets.iter().filter(|t| t.socket) {
            let mut ev = [0u8; 12];
            ev[..4].copy_from_slice(&t.events.to_ne_bytes());
            ev[4..].copy_from_slice(&t.data.to_ne_bytes());
            remote.write(remote.scratch, &ev)?;
            let ret = remote.syscall(
                0,
                libc::SYS_epoll_ctl,
                &[
                    ep as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    t.fd as u64,
                    remote.scratch,
                ],
            )?;
            if ret < 0 {
                return Err(Error::Restore(format!(
                    "pid {}: epoll fd {ep}: watching socket fd {} (events {:#x}) again: {}",
                    remote.pid,
                    t.fd,
                    t.events,
                    nix::errno::Errno::from_raw(-ret as i32)
                )));
            }
        }
        Ok(())
    }

    pub fn show(&self, m: &mut Map<String, Value>) {
        m.insert(
            "watches".into(),
            json!(self
                .targets
                .iter()
                .map(
                    |t| json!({"fd": t.fd, "events": t.events, "data": t.data, "socket": t.socket})
                )
                .collect::<Vec<_>>()),
        );
    }
}
