//! An authenticated, encrypted link to a peer: TCP, a Noise XX handshake with both
//! static keys checked against the configuration, then length-prefixed encrypted
//! frames. A frame's first plaintext byte says what it is: `J` a JSON [`Msg`], `D`
//! image bytes.

use super::msg::Msg;
use crate::config::Peer;
use crate::keys::{hex, parse_key, BadKey, Keypair, NOISE_PARAMS};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

const PROLOGUE: &[u8] = b"spirit-peer-link-1";
/// Largest Noise message; a frame carries up to this minus the tag.
const MAX_FRAME: usize = 65535;
const TAG_LEN: usize = 16;
/// Image bytes per frame.
pub const CHUNK: usize = MAX_FRAME - TAG_LEN - 1;

/// An I/O error on a link, in words (a socket timeout reads as EAGAIN otherwise).
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            "timed out (no progress within link_timeout_secs)".to_string()
        }
        _ => e.to_string(),
    }
}

/// Why a link could not be made. Handshake failures keep the I/O error, in words.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach peer {peer} at {addr}: {source}")]
    Unreachable {
        peer: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("handshake with peer {peer} at {addr} failed: {source}")]
    Handshake {
        peer: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error(transparent)]
    BadPinnedKey(#[from] BadKey),
    #[error("peer {peer} at {addr} presented key {presented} but the configuration pins {pinned}: refused, nothing sent")]
    WrongKey {
        peer: String,
        addr: SocketAddr,
        presented: String,
        pinned: String,
    },
    #[error("connection without an address: {0}")]
    NoAddress(io::Error),
    #[error("handshake with {addr} failed: {source}")]
    HandshakeFrom { addr: SocketAddr, source: io::Error },
    #[error("refused a connection from {addr}: its key {key} is not a configured peer's")]
    UnknownKey { addr: SocketAddr, key: String },
}

pub struct Link {
    stream: TcpStream,
    noise: snow::TransportState,
    pub peer_name: String,
    pub peer_addr: SocketAddr,
    cipher: Vec<u8>,
    plain: Vec<u8>,
}

/// What arrived.
pub enum Frame {
    Msg(Msg),
    Data(Vec<u8>),
}

fn write_raw(s: &mut TcpStream, b: &[u8]) -> io::Result<()> {
    s.write_all(&(b.len() as u16).to_be_bytes())?;
    s.write_all(b)
}

fn read_raw(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    buf.resize(u16::from_be_bytes(len) as usize, 0);
    s.read_exact(buf)
}

fn proto(e: snow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("noise: {e}"))
}

fn builder(key: &Keypair) -> snow::Builder<'_> {
    snow::Builder::new(NOISE_PARAMS.parse().expect("valid Noise parameters"))
        .local_private_key(&key.private)
        .prologue(PROLOGUE)
}

impl Link {
    /// Connect to `peer` and prove both identities; the peer must hold exactly the key
    /// the configuration pins for it.
    pub fn connect(key: &Keypair, peer: &Peer, timeout: Duration) -> Result<Link, LinkError> {
        let addr = peer.address;
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|source| {
            LinkError::Unreachable {
                peer: peer.name.clone(),
                addr,
                source,
            }
        })?;
        s.set_read_timeout(Some(timeout)).ok();
        s.set_write_timeout(Some(timeout)).ok();
        s.set_nodelay(true).ok();
        let hs_err = |source: io::Error| LinkError::Handshake {
            peer: peer.name.clone(),
            addr,
            source,
        };
        let mut hs = builder(key)
            .build_initiator()
            .map_err(|e| hs_err(proto(e)))?;
        let (mut buf, mut out) = (Vec::new(), vec![0u8; MAX_FRAME]);
        let n = hs
            .write_message(&[], &mut out)
            .map_err(|e| hs_err(proto(e)))?;
        write_raw(&mut s, &out[..n]).map_err(hs_err)?;
        read_raw(&mut s, &mut buf).map_err(hs_err)?;
        hs.read_message(&buf, &mut out)
            .map_err(|e| hs_err(proto(e)))?;
        let theirs = hs
            .get_remote_static()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let pinned = parse_key(&peer.public_key)?;
        if theirs != pinned {
            let e = LinkError::WrongKey {
                peer: peer.name.clone(),
                addr,
                presented: hex(&theirs),
                pinned: peer.public_key.clone(),
            };
            tracing::warn!("{e}");
            return Err(e);
        }
        let n = hs
            .write_message(&[], &mut out)
            .map_err(|e| hs_err(proto(e)))?;
        write_raw(&mut s, &out[..n]).map_err(hs_err)?;
        let noise = hs.into_transport_mode().map_err(|e| hs_err(proto(e)))?;
        Ok(Link {
            stream: s,
            noise,
            peer_name: peer.name.clone(),
            peer_addr: addr,
            cipher: buf,
            plain: out,
        })
    }

    /// Answer a connection: the initiator must prove a key pinned for one of `peers`,
    /// else the connection is closed (and logged) before anything else is read.
    pub fn accept(
        key: &Keypair,
        peers: &[Peer],
        mut s: TcpStream,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let addr = s.peer_addr().map_err(LinkError::NoAddress)?;
        s.set_read_timeout(Some(timeout)).ok();
        s.set_write_timeout(Some(timeout)).ok();
        s.set_nodelay(true).ok();
        let hs_err = |source: io::Error| LinkError::HandshakeFrom { addr, source };
        let mut hs = builder(key)
            .build_responder()
            .map_err(|e| hs_err(proto(e)))?;
        let (mut buf, mut out) = (Vec::new(), vec![0u8; MAX_FRAME]);
        read_raw(&mut s, &mut buf).map_err(hs_err)?;
        hs.read_message(&buf, &mut out)
            .map_err(|e| hs_err(proto(e)))?;
        let n = hs
            .write_message(&[], &mut out)
            .map_err(|e| hs_err(proto(e)))?;
        write_raw(&mut s, &out[..n]).map_err(hs_err)?;
        read_raw(&mut s, &mut buf).map_err(hs_err)?;
        hs.read_message(&buf, &mut out)
            .map_err(|e| hs_err(proto(e)))?;
        let theirs = hs
            .get_remote_static()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let Some(peer) = peers
            .iter()
            .find(|p| parse_key(&p.public_key).is_ok_and(|k| k == theirs))
        else {
            let _ = s.shutdown(Shutdown::Both);
            return Err(LinkError::UnknownKey {
                addr,
                key: hex(&theirs),
            });
        };
        let noise = hs.into_transport_mode().map_err(|e| hs_err(proto(e)))?;
        Ok(Link {
            stream: s,
            noise,
            peer_name: peer.name.clone(),
            peer_addr: addr,
            cipher: buf,
            plain: out,
        })
    }

    /// A handle that can break the link from another thread (cancel).
    pub fn breaker(&self) -> Option<TcpStream> {
        self.stream.try_clone().ok()
    }

    fn send_frame(&mut self, tag: u8, body: &[u8]) -> io::Result<()> {
        debug_assert!(body.len() <= CHUNK);
        let mut plain = Vec::with_capacity(body.len() + 1);
        plain.push(tag);
        plain.extend_from_slice(body);
        self.cipher.resize(plain.len() + TAG_LEN, 0);
        let n = self
            .noise
            .write_message(&plain, &mut self.cipher)
            .map_err(proto)?;
        write_raw(&mut self.stream, &self.cipher[..n])
    }

    pub fn send(&mut self, m: &Msg) -> io::Result<()> {
        let json = serde_json::to_vec(m).map_err(io::Error::other)?;
        self.send_frame(b'J', &json)
    }

    pub fn send_data(&mut self, b: &[u8]) -> io::Result<()> {
        for c in b.chunks(CHUNK) {
            self.send_frame(b'D', c)?;
        }
        Ok(())
    }

    pub fn recv(&mut self) -> io::Result<Frame> {
        read_raw(&mut self.stream, &mut self.cipher)?;
        let n = self
            .noise
            .read_message(&self.cipher, &mut self.plain)
            .map_err(proto)?;
        match self.plain[..n].split_first() {
            Some((b'J', j)) => serde_json::from_slice(j)
                .map(Frame::Msg)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Some((b'D', d)) => Ok(Frame::Data(d.to_vec())),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a frame of unknown kind",
            )),
        }
    }

    /// The next control message (image bytes are not expected here).
    pub fn recv_msg(&mut self) -> io::Result<Msg> {
        match self.recv()? {
            Frame::Msg(m) => Ok(m),
            Frame::Data(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "image bytes where a message was expected",
            )),
        }
    }

    /// Has the other side sent something (without blocking)?
    pub fn has_incoming(&self) -> bool {
        let mut b = [0u8; 1];
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let r = self.stream.peek(&mut b);
        let _ = self.stream.set_nonblocking(false);
        matches!(r, Ok(n) if n > 0)
    }

    pub fn set_read_timeout(&self, t: Duration) {
        let _ = self.stream.set_read_timeout(Some(t));
    }
}
