//! spirit-mqueue: spirit's plugin for POSIX message queues, an external plugin (its own
//! executable, speaking `org.spirit.Plugin1` over peer-to-peer D-Bus on the socket
//! spirit gives it as standard input; `busd/org.spirit.Plugin1.xml` is the interface).
//!
//! It claims descriptors on the mqueue filesystem (magic 0x19800202). `Dump` turns a
//! copy of one into a section (`queue.rs`: attributes, flags, name, queued messages),
//! `Restore` makes the queue again and returns a descriptor on it, `Discard` removes a
//! named queue `Restore` made for a restore that failed, `Show` renders a section as
//! JSON. It keeps no state between calls and exits when spirit hangs up.

#[allow(clippy::all, clippy::pedantic)]
mod mqueue_capnp {
    include!(concat!(env!("OUT_DIR"), "/mqueue_capnp.rs"));
}

mod queue;

use std::collections::HashMap;
use std::os::fd::AsFd;
use zbus::zvariant::{OwnedFd, OwnedValue, Value};

const NAME: &str = "mqueue";
const VERSION: u32 = 1;
const MQUEUE_MAGIC: u64 = 0x1980_0202;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.spirit.Plugin1.Error")]
enum PluginError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A state this plugin cannot checkpoint or restore; the message says why.
    Refused(String),
}

fn fact<T: TryFrom<OwnedValue>>(facts: &HashMap<String, OwnedValue>, k: &str) -> Option<T> {
    facts
        .get(k)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| T::try_from(v).ok())
}

struct Mqueue;

#[zbus::interface(name = "org.spirit.Plugin1")]
impl Mqueue {
    fn describe(&self) -> (String, u32, HashMap<String, OwnedValue>) {
        let claims = HashMap::from([(
            "fs_magic".to_string(),
            OwnedValue::try_from(Value::from(vec![MQUEUE_MAGIC])).expect("an array of u64"),
        )]);
        (NAME.into(), VERSION, claims)
    }

    fn dump(
        &self,
        _pid: i32,
        _fd: i32,
        descriptor: OwnedFd,
        facts: HashMap<String, OwnedValue>,
    ) -> Result<Vec<u8>, PluginError> {
        let target: String = fact(&facts, "target").unwrap_or_default();
        let flags: u32 = fact(&facts, "flags").unwrap_or(0);
        let q = queue::dump(descriptor.into(), &target, flags).map_err(PluginError::Refused)?;
        Ok(queue::encode(&q))
    }

    fn restore(
        &self,
        section: Vec<u8>,
        facts: HashMap<String, OwnedValue>,
    ) -> Result<OwnedFd, PluginError> {
        let q = queue::decode(&section).map_err(PluginError::Refused)?;
        let pid: i32 = fact(&facts, "pid").unwrap_or(0);
        let fd = queue::restore(&q, pid).map_err(PluginError::Refused)?;
        Ok(fd.into())
    }

    /// The restore failed after `restore`: a named queue it made goes (an unlinked one
    /// has no name left; its last descriptor closing removes it).
    fn discard(
        &self,
        section: Vec<u8>,
        _facts: HashMap<String, OwnedValue>,
    ) -> Result<(), PluginError> {
        let q = queue::decode(&section).map_err(PluginError::Refused)?;
        if !q.unlinked {
            let _ = nix::mqueue::mq_unlink(q.name.as_str());
        }
        Ok(())
    }

    fn show(&self, section: Vec<u8>) -> Result<String, PluginError> {
        let q = queue::decode(&section).map_err(PluginError::Refused)?;
        Ok(queue::show(&q).to_string())
    }
}

fn main() {
    let fd: i32 = std::env::var("SPIRIT_PLUGIN_FD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    if fd != 0 {
        eprintln!("spirit-mqueue: a spirit plugin; spirit starts it (SPIRIT_PLUGIN_FD=0 and a socket as standard input)");
        std::process::exit(2);
    }
    let sock = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(s) => std::os::unix::net::UnixStream::from(s),
        Err(e) => {
            eprintln!("spirit-mqueue: standard input: {e}");
            std::process::exit(2);
        }
    };
    let served = smol::block_on(async {
        use smol::stream::StreamExt;
        let conn = zbus::connection::Builder::async_io_unix_stream(sock)
            .p2p()
            .serve_at("/org/spirit/Plugin1", Mqueue)?
            .build()
            .await?;
        // Serve until spirit hangs up.
        let mut msgs = zbus::MessageStream::from(&conn);
        while let Some(Ok(_)) = msgs.next().await {}
        Ok::<(), zbus::Error>(())
    });
    if let Err(e) = served {
        eprintln!("spirit-mqueue: {e}");
        std::process::exit(1);
    }
}
