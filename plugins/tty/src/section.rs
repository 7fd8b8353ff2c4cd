//! The tty section: model and its Cap'n Proto encoding (`schema/tty.capnp`).

use crate::tty_capnp as s;
use capnp::message::{Builder, ReaderOptions};
use spirit_core::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Side {
    #[default]
    Master,
    Slave,
    /// `/dev/tty`: the controlling terminal, whatever it is.
    Controlling,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Master => "master",
            Side::Slave => "slave",
            Side::Controlling => "controlling",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TtyFd {
    pub fd: i32,
    pub terminal: u32,
    pub side: Side,
    pub desc: u32,
    pub flags: u32,
    pub key: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Pty,
    External,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: Vec<u8>,
    pub ispeed: u32,
    pub ospeed: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Terminal {
    pub id: u32,
    pub kind: Kind,
    pub key: String,
    pub index: u32,
    pub termios: Option<Termios>,
    /// rows, cols, xpixel, ypixel.
    pub winsize: [u16; 4],
    pub packet: bool,
    pub locked: bool,
    pub exclusive: bool,
    pub to_slave: Vec<u8>,
    pub to_master: Vec<u8>,
    pub foreground: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TtySection {
    pub fds: Vec<TtyFd>,
    pub terminals: Vec<Terminal>,
    pub ctty_of: u32,
    pub foreground_of: Vec<u32>,
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::Restore(format!(
        "malformed tty section: {e}; the image is damaged or was not written by spirit"
    ))
}

impl TtySection {
    pub fn encode(&self) -> Vec<u8> {
        let mut msg = Builder::new_default();
        let mut b = msg.init_root::<s::tty::Builder>();
        b.set_ctty_of(self.ctty_of);
        let mut fg = b
            .reborrow()
            .init_foreground_of(self.foreground_of.len() as u32);
        for (i, t) in self.foreground_of.iter().enumerate() {
            fg.set(i as u32, *t);
        }
        let mut fds = b.reborrow().init_fds(self.fds.len() as u32);
        for (i, f) in self.fds.iter().enumerate() {
            let mut e = fds.reborrow().get(i as u32);
            e.set_fd(f.fd);
            e.set_terminal(f.terminal);
            e.set_side(match f.side {
                Side::Master => s::Side::Master,
                Side::Slave => s::Side::Slave,
                Side::Controlling => s::Side::Controlling,
            });
            e.set_desc(f.desc);
            e.set_flags(f.flags);
            e.set_key(f.key.as_str());
        }
        let mut ts = b.init_terminals(self.terminals.len() as u32);
        for (i, t) in self.terminals.iter().enumerate() {
            let mut e = ts.reborrow().get(i as u32);
            e.set_id(t.id);
            e.set_kind(match t.kind {
                Kind::Pty => s::Kind::Pty,
                Kind::External => s::Kind::External,
            });
            e.set_key(t.key.as_str());
            e.set_index(t.index);
            e.set_rows(t.winsize[0]);
            e.set_cols(t.winsize[1]);
            e.set_xpixel(t.winsize[2]);
            e.set_ypixel(t.winsize[3]);
            e.set_packet(t.packet);
            e.set_locked(t.locked);
            e.set_exclusive(t.exclusive);
            e.set_to_slave(&t.to_slave);
            e.set_to_master(&t.to_master);
            e.set_foreground(t.foreground);
            e.set_has_termios(t.termios.is_some());
            if let Some(tio) = &t.termios {
                let mut m = e.init_termios();
                m.set_iflag(tio.iflag);
                m.set_oflag(tio.oflag);
                m.set_cflag(tio.cflag);
                m.set_lflag(tio.lflag);
                m.set_line(tio.line);
                m.set_cc(&tio.cc);
                m.set_ispeed(tio.ispeed);
                m.set_ospeed(tio.ospeed);
            }
        }
        capnp::serialize::write_message_to_words(&msg)
    }

    pub fn decode(data: &[u8]) -> Result<TtySection> {
        let msg =
            capnp::serialize::read_message_from_flat_slice(&mut &data[..], ReaderOptions::new())
                .map_err(bad)?;
        let r = msg.get_root::<s::tty::Reader>().map_err(bad)?;
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> Result<String> {
            Ok(t.map_err(bad)?.to_str().map_err(bad)?.to_string())
        };
        let mut out = TtySection {
            ctty_of: r.get_ctty_of(),
            foreground_of: r.get_foreground_of().map_err(bad)?.iter().collect(),
            ..Default::default()
        };
        for f in r.get_fds().map_err(bad)?.iter() {
            out.fds.push(TtyFd {
                fd: f.get_fd(),
                terminal: f.get_terminal(),
                side: match f.get_side().map_err(bad)? {
                    s::Side::Master => Side::Master,
                    s::Side::Slave => Side::Slave,
                    s::Side::Controlling => Side::Controlling,
                },
                desc: f.get_desc(),
                flags: f.get_flags(),
                key: text(f.get_key())?,
            });
        }
        for t in r.get_terminals().map_err(bad)?.iter() {
            let termios = if t.get_has_termios() {
                let m = t.get_termios().map_err(bad)?;
                let cc = m.get_cc().map_err(bad)?.to_vec();
                if cc.len() != 32 {
                    return Err(bad(format!("termios with {} control characters", cc.len())));
                }
                Some(Termios {
                    iflag: m.get_iflag(),
                    oflag: m.get_oflag(),
                    cflag: m.get_cflag(),
                    lflag: m.get_lflag(),
                    line: m.get_line(),
                    cc,
                    ispeed: m.get_ispeed(),
                    ospeed: m.get_ospeed(),
                })
            } else {
                None
            };
            out.terminals.push(Terminal {
                id: t.get_id(),
                kind: match t.get_kind().map_err(bad)? {
                    s::Kind::Pty => Kind::Pty,
                    s::Kind::External => Kind::External,
                },
                key: text(t.get_key())?,
                index: t.get_index(),
                termios,
                winsize: [t.get_rows(), t.get_cols(), t.get_xpixel(), t.get_ypixel()],
                packet: t.get_packet(),
                locked: t.get_locked(),
                exclusive: t.get_exclusive(),
                to_slave: t.get_to_slave().map_err(bad)?.to_vec(),
                to_master: t.get_to_master().map_err(bad)?.to_vec(),
                foreground: t.get_foreground(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let sec = TtySection {
            fds: vec![TtyFd {
                fd: 0,
                terminal: 1,
                side: Side::Slave,
                desc: 2,
                flags: 0o2,
                key: "/dev/pts/3".into(),
            }],
            terminals: vec![Terminal {
                id: 1,
                kind: Kind::Pty,
                key: "/dev/pts/3".into(),
                index: 3,
                termios: Some(Termios {
                    lflag: 0o10,
                    cc: vec![7; 32],
                    ..Default::default()
                }),
                winsize: [24, 80, 0, 0],
                to_slave: b"ls\n".to_vec(),
                ..Default::default()
            }],
            ctty_of: 1,
            foreground_of: vec![1],
        };
        assert_eq!(TtySection::decode(&sec.encode()).unwrap(), sec);
        assert!(TtySection::decode(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).is_err());
    }
}
