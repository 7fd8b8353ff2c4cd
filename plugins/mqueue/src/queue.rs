//! One POSIX message queue descriptor's whole life: dump (attributes, the
//! descriptor's flags, the name and whether it was unlinked, the queued messages in
//! receive order), restore (the queue made again with its messages, its owner and
//! mode, a descriptor with the original access mode and `O_NONBLOCK`, unlinked again
//! if it was), show.
//!
//! The queue's status (its `mq_notify` registration: refused) and its messages are
//! read from a descriptor of our own onto the queue (`/proc/self/fd/N` of
//! the copy spirit hands over, reopened read-write and non-blocking, so the process's
//! own open file description is not touched): each is received in priority order and
//! sent back at once with its priority, so the queue ends as it was (equal priorities
//! keep their order: a queue is FIFO within a priority). The whole tree is frozen
//! meanwhile.

use crate::mqueue_capnp::{message, queue};
use nix::mqueue::{mq_getattr, mq_open, mq_receive, mq_send, mq_unlink, MQ_OFlag, MqAttr, MqdT};
use nix::sys::stat::Mode;
use serde_json::{json, Value};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    pub name: String,
    pub unlinked: bool,
    pub maxmsg: i64,
    pub msgsize: i64,
    pub flags: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub messages: Vec<(u32, Vec<u8>)>,
}

/// A new open file description of the queue `fd` is on, by its /proc link.
fn reopen(fd: &impl AsRawFd, read: bool, write: bool, flags: i32) -> Result<OwnedFd, String> {
    std::fs::OpenOptions::new()
        .read(read)
        .write(write)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(OwnedFd::from)
        .map_err(|e| format!("reopening the queue: {e}"))
}

/// The `NOTIFY_PID` of the queue's status (what reading a queue descriptor gives:
/// `QSIZE:.. NOTIFY:.. SIGNO:.. NOTIFY_PID:..`; 0: no `mq_notify` registration).
fn notify_pid(own: &std::fs::File) -> Result<i64, String> {
    use std::io::Read;
    let mut info = String::new();
    (&mut &*own)
        .take(4096)
        .read_to_string(&mut info)
        .map_err(|e| format!("reading the queue's status: {e}"))?;
    info.split_whitespace()
        .find_map(|t| t.strip_prefix("NOTIFY_PID:"))
        .map(|v| v.parse().unwrap_or(-1))
        .ok_or_else(|| format!("the queue's status has no NOTIFY_PID: {info:?}"))
}

pub fn dump(copy: OwnedFd, target: &str, flags: u32) -> Result<Queue, String> {
    let (name, unlinked) = match target.strip_suffix(" (deleted)") {
        Some(n) => (n.to_string(), true),
        None => (target.to_string(), false),
    };
    if !name.starts_with('/') || name.len() < 2 || name[1..].contains('/') {
        return Err(format!("'{target}' is not the name of a message queue"));
    }
    let own = std::fs::File::from(reopen(&copy, true, true, libc::O_NONBLOCK)?);
    let pid = notify_pid(&own)?;
    if pid != 0 {
        return Err(format!(
            "message queue {name} has an mq_notify registration (by pid {pid}), which spirit-mqueue cannot restore yet"
        ));
    }
    let st = nix::sys::stat::fstat(copy.as_raw_fd()).map_err(|e| format!("fstat: {e}"))?;
    let mq = spirit_kmod::fd::mqd_from(OwnedFd::from(own));
    let attr = mq_getattr(&mq).map_err(|e| format!("mq_getattr: {e}"))?;
    let mut messages = Vec::new();
    let mut buf = vec![0u8; attr.msgsize().max(1) as usize];
    for _ in 0..attr.curmsgs() {
        let mut prio = 0u32;
        let n = mq_receive(&mq, &mut buf, &mut prio).map_err(|e| format!("mq_receive: {e}"))?;
        messages.push((prio, buf[..n].to_vec()));
    }
    let mut resent = Ok(());
    for (prio, data) in &messages {
        if let Err(e) = mq_send(&mq, data, *prio) {
            resent = Err(format!(
                "mq_send putting a message back: {e} (the queue lost messages)"
            ));
            break;
        }
    }
    resent?;
    Ok(Queue {
        name,
        unlinked,
        maxmsg: attr.maxmsg(),
        msgsize: attr.msgsize(),
        flags,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        messages,
    })
}

fn create(name: &str, q: &Queue) -> nix::Result<MqdT> {
    let attr = MqAttr::new(0, q.maxmsg, q.msgsize, 0);
    mq_open(
        name,
        MQ_OFlag::O_CREAT
            | MQ_OFlag::O_EXCL
            | MQ_OFlag::O_RDWR
            | MQ_OFlag::O_NONBLOCK
            | MQ_OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
        Some(&attr),
    )
}

pub fn restore(q: &Queue, pid: i32) -> Result<OwnedFd, String> {
    if q.messages.len() as i64 > q.maxmsg
        || q.messages.iter().any(|(_, m)| m.len() as i64 > q.msgsize)
    {
        return Err("bad section: more or longer messages than the queue holds".into());
    }
    let mut name = q.name.clone();
    let mq = match create(&name, q) {
        Err(nix::errno::Errno::EEXIST) if q.unlinked => {
            // Its name was gone anyway: any free name will do while it is made.
            name = format!("{}.spirit-{}-{pid}", q.name, std::process::id());
            create(&name, q)
        }
        Err(nix::errno::Errno::EEXIST) => {
            return Err(format!(
                "a message queue named {} already exists on this host (the checkpointed process's own, if it still runs, or another program's); remove it (mq_unlink, or rm /dev/mqueue{}) or restore where the name is free",
                q.name, q.name
            ))
        }
        r => r,
    }
    .map_err(|e| format!("mq_open of {name} with maxmsg {} msgsize {}: {e}", q.maxmsg, q.msgsize))?;
    let made = (|| {
        for (prio, data) in &q.messages {
            mq_send(&mq, data, *prio).map_err(|e| format!("mq_send: {e}"))?;
        }
        let fd = mq.as_fd();
        nix::unistd::fchown(fd.as_raw_fd(), Some(q.uid.into()), Some(q.gid.into()))
            .map_err(|e| format!("fchown: {e}"))?;
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(q.mode))
            .map_err(|e| format!("fchmod: {e}"))?;
        let acc = q.flags as i32 & libc::O_ACCMODE;
        reopen(
            &fd,
            acc != libc::O_WRONLY,
            acc != libc::O_RDONLY,
            q.flags as i32 & libc::O_NONBLOCK,
        )
    })();
    if q.unlinked || made.is_err() {
        let _ = mq_unlink(name.as_str());
    }
    made
}

pub fn show(q: &Queue) -> Value {
    let acc = match q.flags as i32 & libc::O_ACCMODE {
        libc::O_RDONLY => "read",
        libc::O_WRONLY => "write",
        _ => "read-write",
    };
    json!({
        "name": q.name,
        "unlinked": q.unlinked,
        "maxmsg": q.maxmsg,
        "msgsize": q.msgsize,
        "access": acc,
        "nonblock": q.flags as i32 & libc::O_NONBLOCK != 0,
        "mode": format!("{:#o}", q.mode),
        "uid": q.uid,
        "gid": q.gid,
        "curmsgs": q.messages.len(),
        "messages": q.messages.iter().map(|(p, d)| json!({"priority": p, "size": d.len()})).collect::<Vec<_>>(),
    })
}

pub fn encode(q: &Queue) -> Vec<u8> {
    let mut msg = capnp::message::Builder::new_default();
    let mut b = msg.init_root::<queue::Builder>();
    b.set_name(q.name.as_str());
    b.set_unlinked(q.unlinked);
    b.set_maxmsg(q.maxmsg);
    b.set_msgsize(q.msgsize);
    b.set_flags(q.flags);
    b.set_mode(q.mode);
    b.set_uid(q.uid);
    b.set_gid(q.gid);
    let mut list = b.init_messages(q.messages.len() as u32);
    for (i, (p, d)) in q.messages.iter().enumerate() {
        let mut m: message::Builder = list.reborrow().get(i as u32);
        m.set_priority(*p);
        m.set_data(d);
    }
    let mut out = Vec::new();
    capnp::serialize::write_message(&mut out, &msg).expect("writing to a Vec cannot fail");
    out
}

pub fn decode(mut bytes: &[u8]) -> Result<Queue, String> {
    let bad = |e: capnp::Error| format!("bad section: {e}");
    let msg = capnp::serialize::read_message_from_flat_slice(
        &mut bytes,
        capnp::message::ReaderOptions::new(),
    )
    .map_err(bad)?;
    let r = msg.get_root::<queue::Reader>().map_err(bad)?;
    let mut messages = Vec::new();
    for m in r.get_messages().map_err(bad)?.iter() {
        messages.push((m.get_priority(), m.get_data().map_err(bad)?.to_vec()));
    }
    Ok(Queue {
        name: r
            .get_name()
            .map_err(bad)?
            .to_string()
            .map_err(|e| format!("bad section: {e}"))?,
        unlinked: r.get_unlinked(),
        maxmsg: r.get_maxmsg(),
        msgsize: r.get_msgsize(),
        flags: r.get_flags(),
        mode: r.get_mode(),
        uid: r.get_uid(),
        gid: r.get_gid(),
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_garbage_is_refused() {
        let q = Queue {
            name: "/q".into(),
            unlinked: true,
            maxmsg: 7,
            msgsize: 64,
            flags: libc::O_RDWR as u32 | libc::O_NONBLOCK as u32,
            mode: 0o640,
            uid: 1,
            gid: 2,
            messages: vec![(9, b"high".to_vec()), (1, b"low".to_vec())],
        };
        assert_eq!(decode(&encode(&q)).unwrap(), q);
        assert!(decode(b"not a section")
            .unwrap_err()
            .starts_with("bad section"));
        let v = show(&q);
        assert_eq!(v["curmsgs"], 2);
        assert_eq!(v["messages"][0]["priority"], 9);
        assert_eq!(v["nonblock"], true);
        // More messages than the queue holds is refused before anything is made.
        let too_many = Queue { maxmsg: 1, ..q };
        assert!(restore(&too_many, 1).unwrap_err().contains("bad section"));
    }
}
