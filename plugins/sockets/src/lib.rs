//! spirit's sockets plugin — on this branch only its inet part (TCP, UDP, UDPLite, ICMP
//! ping sockets over IPv4 and IPv6, their IP/TCP-level options and the network lock);
//! the plugin itself (the `Plugin` impl, the per-descriptor record, unix sockets,
//! sharing across processes) lives in the framework's `lib.rs`, which adds this module.
//! See `inet/mod.rs` for the API and the data flow.

pub mod inet;

/// Generated from `schema/inet.capnp` (the `inet` member of the sockets record).
pub mod inet_capnp {
    #![allow(clippy::all, unused)]
    include!(concat!(env!("OUT_DIR"), "/inet_capnp.rs"));
}
