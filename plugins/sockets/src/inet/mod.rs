//! TCP and UDP sockets (IPv4, IPv6). Placeholder: the inet part (TCP_REPAIR, the
//! network lock) lands separately and replaces this module with the same interface;
//! until then an inet socket is refused naming the process and fd.

use crate::inet_capnp::inet_record;
use serde_json::{json, Value};
use spirit_core::{Error, Result};
use std::os::fd::OwnedFd;

/// One inet socket as recorded (schema/inet.capnp).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InetRecord {
    pub family: u16,
    pub ty: u16,
    pub protocol: u16,
}

impl InetRecord {
    pub fn encode(&self, mut b: inet_record::Builder<'_>) {
        b.set_family(self.family);
        b.set_type(self.ty);
        b.set_protocol(self.protocol);
    }

    pub fn decode(r: inet_record::Reader<'_>) -> Result<InetRecord> {
        Ok(InetRecord {
            family: r.get_family(),
            ty: r.get_type(),
            protocol: r.get_protocol(),
        })
    }
}

/// Tree-level inet state of a dump (the network lock lives here).
pub struct DumpTree;

impl DumpTree {
    pub fn new(_tree: &spirit_core::plugin::DumpTree) -> Result<DumpTree> {
        Ok(DumpTree)
    }

    /// Once the dump ended (image committed or failed).
    pub fn end(&mut self, _outcome: spirit_core::plugin::DumpOutcome) {}
}

pub fn dump(pid: i32, fd: i32, _sock: &OwnedFd, _tree: &mut DumpTree) -> Result<InetRecord> {
    Err(Error::Dump {
        pid,
        msg: format!("fd {fd} is a TCP/UDP socket, which this spirit cannot checkpoint yet"),
    })
}

pub fn restore(_rec: &InetRecord) -> Result<OwnedFd> {
    Err(Error::Restore(
        "inet sockets are not restored by this spirit".into(),
    ))
}

pub fn show(r: &InetRecord) -> Value {
    json!({"family": r.family, "type": r.ty, "protocol": r.protocol})
}

/// Tree-level inet state of a restore (made at plan time).
pub struct RestoreTree;

impl RestoreTree {
    pub fn new(_tree: &spirit_core::plugin::TreeView<'_>) -> Result<RestoreTree> {
        Ok(RestoreTree)
    }

    /// Once the restore ended (`ok`: the tree runs), also on failure.
    pub fn end(&mut self, _ok: bool) {}
}

/// After the tree runs: what is left to do for socket `fd` of `pid` (TCP_REPAIR off).
pub fn finish(_st: &mut RestoreTree, _pid: i32, _fd: i32, _rec: &InetRecord) -> Result<()> {
    Ok(())
}
