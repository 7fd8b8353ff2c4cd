//! The sockets section: model and its Cap'n Proto encoding (`schema/sockets.capnp`).

use crate::sockets_capnp as s;
use capnp::message::{Builder, ReaderOptions};
use serde::Serialize;
use spirit_core::{Error, Result};

/// Generic SOL_SOCKET options (`opts.rs` reads and sets them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Options {
    pub reuse_addr: bool,
    pub reuse_port: bool,
    pub keep_alive: bool,
    /// The user's value (the kernel reports it doubled).
    pub snd_buf: u32,
    pub rcv_buf: u32,
    pub linger: Option<i32>,
    pub priority: i32,
    pub mark: u32,
    pub bind_to_device: String,
    pub pass_cred: bool,
    pub pass_sec: bool,
    pub rcv_lowat: i32,
    pub rcv_timeo_us: i64,
    pub snd_timeo_us: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<u8>,
    pub filter_locked: bool,
    pub peek_off: i32,
    pub broadcast: bool,
    pub oob_inline: bool,
    pub timestamp: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    #[default]
    None,
    InTree,
    Reconnect,
    Inherit,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SockFile {
    pub present: bool,
    pub path: String,
    pub base: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InFlight {
    pub path: String,
    pub flags: u32,
    pub pos: u64,
    /// A unix socket in flight (its inode; 0: a file by path).
    #[serde(skip_serializing_if = "is_zero")]
    pub socket: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub data: Vec<u8>,
    pub files: Vec<InFlight>,
    pub from: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unix {
    pub ty: u8,
    pub state: u8,
    pub name: Vec<u8>,
    pub name_inherited: bool,
    pub file: Option<SockFile>,
    pub peer: u64,
    pub peer_name: Vec<u8>,
    pub peer_kind: PeerKind,
    pub backlog: u32,
    pub pending: Vec<u64>,
    pub shutdown: u8,
    pub queue: Vec<Message>,
    pub embryo: bool,
    pub listener: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Netlink {
    pub protocol: i32,
    pub ty: u8,
    pub portid: u32,
    pub groups: Vec<u32>,
    pub dst_portid: u32,
    pub dst_group: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Dup,
    Unix(Unix),
    /// TCP/UDP: the inet module's record (schema/inet.capnp).
    Inet(crate::inet::InetRecord),
    Netlink(Netlink),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socket {
    pub fd: i32,
    pub flags: u32,
    pub cloexec: bool,
    pub inode: u64,
    pub dup_of: Option<i32>,
    pub opts: Options,
    pub payload: Payload,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub sockets: Vec<Socket>,
    /// Sockets only in flight in this process's queues.
    pub inflight: Vec<Socket>,
}

pub fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Restore(format!(
        "malformed sockets section: {msg}; the image is damaged or was not written by spirit"
    ))
}

fn text(r: capnp::Result<capnp::text::Reader<'_>>) -> Result<String> {
    r.map_err(bad)?.to_string().map_err(bad)
}

impl Section {
    pub fn encode(&self) -> Vec<u8> {
        let mut msg = Builder::new_default();
        let mut root = msg.init_root::<s::sockets::Builder>();
        encode_list(
            &self.sockets,
            root.reborrow().init_sockets(self.sockets.len() as u32),
        );
        encode_list(
            &self.inflight,
            root.init_inflight(self.inflight.len() as u32),
        );
        capnp::serialize::write_message_to_words(&msg)
    }

    pub fn decode(data: &[u8]) -> Result<Section> {
        let msg =
            capnp::serialize::read_message_from_flat_slice(&mut &data[..], ReaderOptions::new())
                .map_err(bad)?;
        let root = msg.get_root::<s::sockets::Reader>().map_err(bad)?;
        Ok(Section {
            sockets: decode_list(root.get_sockets().map_err(bad)?)?,
            inflight: decode_list(root.get_inflight().map_err(bad)?)?,
        })
    }
}

fn encode_list(list: &[Socket], mut l: capnp::struct_list::Builder<'_, s::socket::Owned>) {
    for (i, k) in list.iter().enumerate() {
        let mut b = l.reborrow().get(i as u32);
        b.set_fd(k.fd);
        b.set_flags(k.flags);
        b.set_cloexec(k.cloexec);
        b.set_inode(k.inode);
        b.set_dup_of(k.dup_of.unwrap_or(-1));
        encode_opts(&k.opts, b.reborrow().init_opts());
        match &k.payload {
            Payload::Dup => b.set_dup(()),
            Payload::Unix(u) => encode_unix(u, b.init_unix()),
            Payload::Inet(rec) => crate::inet::encode(rec, b.init_inet()),
            Payload::Netlink(n) => {
                let mut nb = b.init_netlink();
                nb.set_protocol(n.protocol);
                nb.set_type(n.ty);
                nb.set_portid(n.portid);
                nb.set_dst_portid(n.dst_portid);
                nb.set_dst_group(n.dst_group);
                let mut g = nb.init_groups(n.groups.len() as u32);
                for (j, x) in n.groups.iter().enumerate() {
                    g.set(j as u32, *x);
                }
            }
        }
    }
}

fn decode_list(list: capnp::struct_list::Reader<'_, s::socket::Owned>) -> Result<Vec<Socket>> {
    let mut out = Vec::new();
    for r in list.iter() {
        let payload = match r.which().map_err(bad)? {
            s::socket::Dup(()) => Payload::Dup,
            s::socket::Unix(u) => Payload::Unix(decode_unix(u.map_err(bad)?)?),
            s::socket::Inet(i) => Payload::Inet(crate::inet::decode(i.map_err(bad)?)?),
            s::socket::Netlink(n) => {
                let n = n.map_err(bad)?;
                Payload::Netlink(Netlink {
                    protocol: n.get_protocol(),
                    ty: n.get_type(),
                    portid: n.get_portid(),
                    groups: n.get_groups().map_err(bad)?.iter().collect(),
                    dst_portid: n.get_dst_portid(),
                    dst_group: n.get_dst_group(),
                })
            }
            s::socket::Packet(_) => {
                return Err(bad(format!(
                    "fd {} is a packet socket, which spirit does not restore",
                    r.get_fd()
                )))
            }
        };
        let dup = r.get_dup_of();
        out.push(Socket {
            fd: r.get_fd(),
            flags: r.get_flags(),
            cloexec: r.get_cloexec(),
            inode: r.get_inode(),
            dup_of: (dup >= 0).then_some(dup),
            opts: decode_opts(r.get_opts().map_err(bad)?)?,
            payload,
        });
    }
    Ok(out)
}

fn encode_opts(o: &Options, mut b: s::options::Builder<'_>) {
    b.set_reuse_addr(o.reuse_addr);
    b.set_reuse_port(o.reuse_port);
    b.set_keep_alive(o.keep_alive);
    b.set_snd_buf(o.snd_buf);
    b.set_rcv_buf(o.rcv_buf);
    b.set_linger_on(o.linger.is_some());
    b.set_linger_secs(o.linger.unwrap_or(0));
    b.set_priority(o.priority);
    b.set_mark(o.mark);
    b.set_bind_to_device(&o.bind_to_device);
    b.set_pass_cred(o.pass_cred);
    b.set_pass_sec(o.pass_sec);
    b.set_rcv_lowat(o.rcv_lowat);
    b.set_rcv_timeo_us(o.rcv_timeo_us);
    b.set_snd_timeo_us(o.snd_timeo_us);
    b.set_filter(&o.filter);
    b.set_filter_locked(o.filter_locked);
    b.set_peek_off(o.peek_off);
    b.set_broadcast(o.broadcast);
    b.set_oob_inline(o.oob_inline);
    b.set_timestamp(o.timestamp);
}

fn decode_opts(r: s::options::Reader<'_>) -> Result<Options> {
    Ok(Options {
        reuse_addr: r.get_reuse_addr(),
        reuse_port: r.get_reuse_port(),
        keep_alive: r.get_keep_alive(),
        snd_buf: r.get_snd_buf(),
        rcv_buf: r.get_rcv_buf(),
        linger: r.get_linger_on().then(|| r.get_linger_secs()),
        priority: r.get_priority(),
        mark: r.get_mark(),
        bind_to_device: text(r.get_bind_to_device())?,
        pass_cred: r.get_pass_cred(),
        pass_sec: r.get_pass_sec(),
        rcv_lowat: r.get_rcv_lowat(),
        rcv_timeo_us: r.get_rcv_timeo_us(),
        snd_timeo_us: r.get_snd_timeo_us(),
        filter: r.get_filter().map_err(bad)?.to_vec(),
        filter_locked: r.get_filter_locked(),
        peek_off: r.get_peek_off(),
        broadcast: r.get_broadcast(),
        oob_inline: r.get_oob_inline(),
        timestamp: r.get_timestamp(),
    })
}

const PEER_KINDS: [(PeerKind, s::PeerKind); 4] = [
    (PeerKind::None, s::PeerKind::None),
    (PeerKind::InTree, s::PeerKind::InTree),
    (PeerKind::Reconnect, s::PeerKind::Reconnect),
    (PeerKind::Inherit, s::PeerKind::Inherit),
];

fn encode_unix(u: &Unix, mut b: s::unix::Builder<'_>) {
    b.set_type(u.ty);
    b.set_state(u.state);
    b.set_name(&u.name);
    b.set_name_inherited(u.name_inherited);
    if let Some(f) = &u.file {
        let mut fb = b.reborrow().init_file();
        fb.set_present(f.present);
        fb.set_path(&f.path);
        fb.set_base(&f.base);
        fb.set_mode(f.mode);
        fb.set_uid(f.uid);
        fb.set_gid(f.gid);
    }
    b.set_peer(u.peer);
    b.set_peer_name(&u.peer_name);
    let pk = PEER_KINDS
        .iter()
        .find(|(k, _)| *k == u.peer_kind)
        .map(|p| p.1);
    b.set_peer_kind(pk.unwrap_or(s::PeerKind::None));
    b.set_backlog(u.backlog);
    let mut p = b.reborrow().init_pending(u.pending.len() as u32);
    for (i, x) in u.pending.iter().enumerate() {
        p.set(i as u32, *x);
    }
    b.set_shutdown(u.shutdown);
    b.set_embryo(u.embryo);
    b.set_listener(u.listener);
    let mut q = b.init_queue(u.queue.len() as u32);
    for (i, m) in u.queue.iter().enumerate() {
        let mut mb = q.reborrow().get(i as u32);
        mb.set_data(&m.data);
        mb.set_from(&m.from);
        let mut fl = mb.init_files(m.files.len() as u32);
        for (j, f) in m.files.iter().enumerate() {
            let mut fb = fl.reborrow().get(j as u32);
            fb.set_path(&f.path);
            fb.set_flags(f.flags);
            fb.set_pos(f.pos);
            fb.set_socket(f.socket);
        }
    }
}

fn decode_unix(r: s::unix::Reader<'_>) -> Result<Unix> {
    let file = if r.has_file() {
        let f = r.get_file().map_err(bad)?;
        Some(SockFile {
            present: f.get_present(),
            path: text(f.get_path())?,
            base: text(f.get_base())?,
            mode: f.get_mode(),
            uid: f.get_uid(),
            gid: f.get_gid(),
        })
    } else {
        None
    };
    let pk = r.get_peer_kind().map_err(bad)?;
    let mut queue = Vec::new();
    for m in r.get_queue().map_err(bad)?.iter() {
        let mut files = Vec::new();
        for f in m.get_files().map_err(bad)?.iter() {
            files.push(InFlight {
                path: text(f.get_path())?,
                flags: f.get_flags(),
                pos: f.get_pos(),
                socket: f.get_socket(),
            });
        }
        queue.push(Message {
            data: m.get_data().map_err(bad)?.to_vec(),
            files,
            from: m.get_from().map_err(bad)?.to_vec(),
        });
    }
    Ok(Unix {
        ty: r.get_type(),
        state: r.get_state(),
        name: r.get_name().map_err(bad)?.to_vec(),
        name_inherited: r.get_name_inherited(),
        file,
        peer: r.get_peer(),
        peer_name: r.get_peer_name().map_err(bad)?.to_vec(),
        peer_kind: PEER_KINDS
            .iter()
            .find(|(_, w)| *w == pk)
            .map(|p| p.0)
            .unwrap_or_default(),
        backlog: r.get_backlog(),
        pending: r.get_pending().map_err(bad)?.iter().collect(),
        shutdown: r.get_shutdown(),
        queue,
        embryo: r.get_embryo(),
        listener: r.get_listener(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let sec = Section {
            sockets: vec![
                Socket {
                    fd: 3,
                    flags: 0o4002,
                    cloexec: true,
                    inode: 77,
                    dup_of: None,
                    opts: Options {
                        snd_buf: 4096,
                        linger: Some(5),
                        filter: vec![6, 0, 0, 0, 0xff, 0xff, 0, 0],
                        peek_off: -1,
                        ..Default::default()
                    },
                    payload: Payload::Unix(Unix {
                        ty: 2,
                        state: 1,
                        name: b"\0abs".to_vec(),
                        peer: 78,
                        peer_kind: PeerKind::InTree,
                        queue: vec![Message {
                            data: b"one".to_vec(),
                            files: vec![InFlight {
                                path: "/etc/hostname".into(),
                                flags: 0,
                                pos: 2,
                                socket: 0,
                            }],
                            from: vec![],
                        }],
                        file: Some(SockFile {
                            present: true,
                            path: "/tmp/x".into(),
                            mode: 0o140755,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
                Socket {
                    fd: 4,
                    flags: 2,
                    cloexec: false,
                    inode: 77,
                    dup_of: Some(3),
                    opts: Options::default(),
                    payload: Payload::Dup,
                },
                Socket {
                    fd: 5,
                    flags: 2,
                    cloexec: false,
                    inode: 79,
                    dup_of: None,
                    opts: Options::default(),
                    payload: Payload::Netlink(Netlink {
                        protocol: 0,
                        ty: 3,
                        portid: 1234,
                        groups: vec![1, 40],
                        ..Default::default()
                    }),
                },
            ],
            inflight: vec![Socket {
                fd: -1,
                flags: 2,
                cloexec: false,
                inode: 90,
                dup_of: None,
                opts: Options::default(),
                payload: Payload::Unix(Unix {
                    ty: 2,
                    ..Default::default()
                }),
            }],
        };
        assert_eq!(Section::decode(&sec.encode()).unwrap(), sec);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Section::decode(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).is_err());
        assert!(Section::decode(&[]).is_err());
    }
}
