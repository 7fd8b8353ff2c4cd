//! One running external plugin: its process, started with one end of a socketpair as
//! its standard input (`SPIRIT_PLUGIN_FD=0`), and the peer-to-peer D-Bus connection
//! over the other end (spirit authenticates as the server, the plugin as the client and
//! exports `/org/spirit/Plugin1`). Calls are synchronous for the engine (each run to
//! completion with `smol::block_on`) and each has a deadline; the process is killed and
//! reaped when the peer is dropped.
//!
//! zbus runs threads of its own (an executor and the async-io reactor), so a `Peer`
//! never lives in a process that forks restore children afterwards (see `restore.rs`).

use crate::claims::Claims;
use crate::manifest::Manifest;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use zbus::zvariant::{self, OwnedValue, Value};

const PATH: &str = "/org/spirit/Plugin1";
const IFACE: &str = "org.spirit.Plugin1";

/// The deadline of every call: `SPIRIT_PLUGIN_TIMEOUT_MS`, else 10 s.
pub fn timeout() -> Duration {
    std::env::var("SPIRIT_PLUGIN_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// What `Describe` answered.
#[derive(Clone, Debug)]
pub struct Description {
    pub name: String,
    pub version: u32,
    pub claims: Claims,
}

pub struct Peer {
    child: Child,
    conn: zbus::Connection,
    limit: Duration,
    pub described: Description,
}

fn with_deadline<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    smol::block_on(smol::future::or(fut, async {
        smol::Timer::after(limit).await;
        Err(format!(
            "no answer to {what} within {} ms (SPIRIT_PLUGIN_TIMEOUT_MS)",
            limit.as_millis()
        ))
    }))
}

fn say(e: zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({name})"),
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        zbus::Error::InputOutput(io) => format!("connection lost: {io}"),
        e => e.to_string(),
    }
}

impl Peer {
    /// Start the plugin and ask it to describe itself; it must be the plugin its
    /// manifest says.
    pub fn start(m: &Manifest) -> Result<Peer, String> {
        let limit = timeout();
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let log = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("dup of standard error: {e}"))?;
        let mut cmd = Command::new(&m.exec);
        cmd.stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(log))
            .env("SPIRIT_PLUGIN_FD", "0");
        // Nothing of spirit's (an image, a progress or verdict pipe) leaks to the plugin.
        spirit_kmod::close_inherited_fds(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", m.exec.display()))?;
        let connected = with_deadline(limit, "the connection handshake", async {
            zbus::connection::Builder::async_io_unix_stream(ours)
                .server(zbus::Guid::generate())
                .map_err(say)?
                .p2p()
                .build()
                .await
                .map_err(say)
        });
        let conn = match connected {
            Ok(c) => c,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut peer = Peer {
            child,
            conn,
            limit,
            described: Description {
                name: String::new(),
                version: 0,
                claims: Claims::default(),
            },
        };
        let (name, version, claims): (String, u32, HashMap<String, OwnedValue>) =
            peer.call("Describe", &())?;
        let claims = Claims::from_dbus(claims)?;
        if name != m.name || version != m.version {
            return Err(format!(
                "describes itself as '{name}' version {version}, but its manifest {} says '{}' version {}",
                m.path.display(),
                m.name,
                m.version
            ));
        }
        peer.described = Description {
            name,
            version,
            claims,
        };
        Ok(peer)
    }

    fn call<B, R>(&self, method: &str, body: &B) -> Result<R, String>
    where
        B: serde::Serialize + zvariant::DynamicType,
        R: for<'d> serde::Deserialize<'d> + zvariant::Type,
    {
        let conn = &self.conn;
        with_deadline(self.limit, method, async {
            let reply = conn
                .call_method(None::<&str>, PATH, Some(IFACE), method, body)
                .await
                .map_err(say)?;
            reply
                .body()
                .deserialize::<R>()
                .map_err(|e| format!("malformed answer to {method}: {e}"))
        })
    }

    /// `Dump(pid, fd, descriptor, facts) → section`.
    pub fn dump(
        &self,
        pid: i32,
        fd: i32,
        copy: &OwnedFd,
        facts: HashMap<&str, Value<'_>>,
    ) -> Result<Vec<u8>, String> {
        self.call("Dump", &(pid, fd, zvariant::Fd::from(copy), facts))
    }

    /// `Restore(section, facts) → descriptor`.
    pub fn restore(&self, data: &[u8], facts: HashMap<&str, Value<'_>>) -> Result<OwnedFd, String> {
        let fd: zvariant::OwnedFd = self.call("Restore", &(data, facts))?;
        Ok(fd.into())
    }

    /// `Discard(section, facts)`: the restore failed; remove what `Restore` made on the
    /// host. Optional: a plugin without it has nothing to remove.
    pub fn discard(&self, data: &[u8], facts: HashMap<&str, Value<'_>>) -> Result<(), String> {
        match self.call::<_, ()>("Discard", &(data, facts)) {
            Err(e) if e.contains("UnknownMethod") => Ok(()),
            r => r,
        }
    }

    /// `Show(section) → json`.
    pub fn show(&self, data: &[u8]) -> Result<serde_json::Value, String> {
        let text: String = self.call("Show", &(data,))?;
        serde_json::from_str(&text).map_err(|e| format!("Show answered something not JSON: {e}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
