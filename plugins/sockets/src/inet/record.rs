//! [`InetRecord`] to and from the `InetSocket` Cap'n Proto struct, and its JSON for
//! `spirit show`. Bad bytes from an image are errors, never panics.

use super::ipopts::Opt;
use super::mcast::Membership;
use super::tcp::{self, TcpConn};
use super::InetRecord;
use crate::inet_capnp::{addr, inet_socket};
use serde_json::{json, Value};
use spirit_core::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Restore(format!(
        "inet socket record in the image is corrupt: {what}"
    ))
}

pub(super) fn family_name(f: i32) -> &'static str {
    match f {
        libc::AF_INET => "ipv4",
        libc::AF_INET6 => "ipv6",
        _ => "other",
    }
}

pub(super) fn type_name(t: i32) -> &'static str {
    match t {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "dgram",
        libc::SOCK_RAW => "raw",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "other",
    }
}

fn protocol_name(p: i32) -> String {
    match p {
        libc::IPPROTO_TCP => "tcp".into(),
        libc::IPPROTO_UDP => "udp".into(),
        libc::IPPROTO_UDPLITE => "udplite".into(),
        libc::IPPROTO_ICMP => "icmp".into(),
        libc::IPPROTO_ICMPV6 => "icmpv6".into(),
        n => n.to_string(),
    }
}

fn put_addr(a: SocketAddr, mut b: addr::Builder<'_>) {
    match a {
        SocketAddr::V4(a) => b.set_ip(&a.ip().octets()),
        SocketAddr::V6(a) => {
            b.set_ip(&a.ip().octets());
            b.set_flowinfo(a.flowinfo());
            b.set_scope_id(a.scope_id());
        }
    }
    b.set_port(a.port());
}

fn get_addr(r: addr::Reader<'_>) -> Result<SocketAddr> {
    let ip = r.get_ip().map_err(bad)?;
    let port = r.get_port();
    if let Ok(v4) = <[u8; 4]>::try_from(ip) {
        Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(v4), port)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(ip) {
        Ok(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(v6),
            port,
            r.get_flowinfo(),
            r.get_scope_id(),
        )))
    } else {
        Err(bad(format!("an address of {} bytes", ip.len())))
    }
}

/// Write `rec` into the `InetSocket` builder.
pub fn encode(rec: &InetRecord, mut b: inet_socket::Builder<'_>) {
    b.set_family(rec.family as u16);
    b.set_type(rec.sotype as u16);
    b.set_protocol(rec.protocol as u16);
    b.set_state(rec.state);
    if let Some(a) = rec.local {
        put_addr(a, b.reborrow().init_local());
    }
    if let Some(a) = rec.peer {
        put_addr(a, b.reborrow().init_peer());
    }
    let mut ol = b.reborrow().init_opts(rec.opts.len() as u32);
    for (i, o) in rec.opts.iter().enumerate() {
        let mut e = ol.reborrow().get(i as u32);
        e.set_level(o.level);
        e.set_name(o.name);
        e.set_value(&o.value);
    }
    b.set_backlog(rec.backlog);
    if let Some(c) = &rec.tcp {
        let mut t = b.reborrow().init_tcp();
        t.set_snd_seq(c.snd_seq);
        t.set_rcv_seq(c.rcv_seq);
        t.set_send_queue(&c.send_queue);
        t.set_unsent(c.unsent);
        t.set_recv_queue(&c.recv_queue);
        t.set_mss(c.mss);
        t.set_snd_wscale(c.snd_wscale);
        t.set_rcv_wscale(c.rcv_wscale);
        t.set_opt_wscale(c.opt_wscale);
        t.set_opt_sack(c.opt_sack);
        t.set_opt_timestamps(c.opt_timestamps);
        t.set_timestamp(c.timestamp);
        t.set_snd_wl1(c.window[0]);
        t.set_snd_wnd(c.window[1]);
        t.set_max_window(c.window[2]);
        t.set_rcv_wnd(c.window[3]);
        t.set_rcv_wup(c.window[4]);
        t.set_fin_sent(c.fin_sent);
        t.set_fin_received(c.fin_received);
    }
    b.set_netlock(rec.netlock.as_str());
    b.set_rcv_dropped(rec.rcv_dropped);
    b.set_reuse_addr(rec.reuse_addr);
    let mut ml = b.reborrow().init_mcast(rec.mcast.len() as u32);
    for (i, m) in rec.mcast.iter().enumerate() {
        let mut e = ml.reborrow().get(i as u32);
        e.set_ifindex(m.ifindex);
        e.set_group(&ip_bytes(m.group));
        e.set_exclude(m.exclude);
        let mut sl = e.init_sources(m.sources.len() as u32);
        for (k, s) in m.sources.iter().enumerate() {
            sl.set(k as u32, &ip_bytes(*s));
        }
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn get_ip(b: &[u8]) -> Result<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        Ok(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
        Ok(IpAddr::from(v6))
    } else {
        Err(bad(format!("an address of {} bytes", b.len())))
    }
}

/// Read an `InetSocket` back.
pub fn decode(r: inet_socket::Reader<'_>) -> Result<InetRecord> {
    let family = r.get_family() as i32;
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(bad(format!("address family {family}")));
    }
    let local = if r.has_local() {
        Some(get_addr(r.get_local().map_err(bad)?)?)
    } else {
        None
    };
    let peer = if r.has_peer() {
        Some(get_addr(r.get_peer().map_err(bad)?)?)
    } else {
        None
    };
    let mut opts = Vec::new();
    for o in r.get_opts().map_err(bad)?.iter() {
        opts.push(Opt {
            level: o.get_level(),
            name: o.get_name(),
            value: o.get_value().map_err(bad)?.to_vec(),
        });
    }
    let tcp = if r.has_tcp() {
        let t = r.get_tcp().map_err(bad)?;
        let send_queue = t.get_send_queue().map_err(bad)?.to_vec();
        if t.get_unsent() as usize > send_queue.len() {
            return Err(bad("more unsent bytes than the send queue holds"));
        }
        Some(TcpConn {
            snd_seq: t.get_snd_seq(),
            rcv_seq: t.get_rcv_seq(),
            send_queue,
            unsent: t.get_unsent(),
            recv_queue: t.get_recv_queue().map_err(bad)?.to_vec(),
            mss: t.get_mss(),
            snd_wscale: t.get_snd_wscale(),
            rcv_wscale: t.get_rcv_wscale(),
            opt_wscale: t.get_opt_wscale(),
            opt_sack: t.get_opt_sack(),
            opt_timestamps: t.get_opt_timestamps(),
            timestamp: t.get_timestamp(),
            window: [
                t.get_snd_wl1(),
                t.get_snd_wnd(),
                t.get_max_window(),
                t.get_rcv_wnd(),
                t.get_rcv_wup(),
            ],
            fin_sent: t.get_fin_sent(),
            fin_received: t.get_fin_received(),
        })
    } else {
        None
    };
    let netlock = r
        .get_netlock()
        .map_err(bad)?
        .to_str()
        .map_err(bad)?
        .to_string();
    let mut mcast = Vec::new();
    for m in r.get_mcast().map_err(bad)?.iter() {
        let mut sources = Vec::new();
        for s in m.get_sources().map_err(bad)?.iter() {
            sources.push(get_ip(s.map_err(bad)?)?);
        }
        mcast.push(Membership {
            ifindex: m.get_ifindex(),
            group: get_ip(m.get_group().map_err(bad)?)?,
            exclude: m.get_exclude(),
            sources,
        });
    }
    Ok(InetRecord {
        mcast,
        family,
        sotype: r.get_type() as i32,
        protocol: r.get_protocol() as i32,
        state: r.get_state(),
        local,
        peer,
        opts,
        backlog: r.get_backlog(),
        tcp,
        netlock,
        rcv_dropped: r.get_rcv_dropped(),
        reuse_addr: r.get_reuse_addr(),
    })
}

/// `rec` as a standalone Cap'n Proto message (tests, tools).
pub fn to_bytes(rec: &InetRecord) -> Vec<u8> {
    let mut m = capnp::message::Builder::new_default();
    encode(rec, m.init_root::<inet_socket::Builder>());
    capnp::serialize::write_message_to_words(&m)
}

/// A standalone message back.
pub fn from_bytes(mut bytes: &[u8]) -> Result<InetRecord> {
    let m = capnp::serialize::read_message(&mut bytes, capnp::message::ReaderOptions::new())
        .map_err(bad)?;
    decode(m.get_root::<inet_socket::Reader>().map_err(bad)?)
}

/// The record as JSON: family, type, protocol, state, addresses, queue sizes, options.
pub fn show(rec: &InetRecord) -> Value {
    let mut v = json!({
        "family": family_name(rec.family),
        "type": type_name(rec.sotype),
        "protocol": protocol_name(rec.protocol),
        "local": rec.local.map(|a| a.to_string()),
        "peer": rec.peer.map(|a| a.to_string()),
        "options": super::ipopts::show(&rec.opts),
        "reuse_addr": rec.reuse_addr,
    });
    if rec.protocol == libc::IPPROTO_TCP {
        v["state"] = json!(tcp::state_name(rec.state));
    }
    if rec.state == tcp::LISTEN {
        v["backlog"] = json!(rec.backlog);
    }
    if let Some(c) = &rec.tcp {
        v["tcp"] = tcp::show(c);
    }
    if !rec.netlock.is_empty() {
        v["netlock"] = json!(rec.netlock);
    }
    if rec.sotype == libc::SOCK_DGRAM {
        v["dropped_datagram_bytes"] = json!(rec.rcv_dropped);
        v["multicast"] = super::mcast::show(&rec.mcast);
    }
    v
}
