//! The network lock: while a tree is frozen and until its restored sockets run, every
//! packet of its TCP connections is dropped by nftables rules, so a peer sees neither a
//! reset nor an acknowledgement it should not have, and retransmits until the
//! connection is live again (KERNEL-NOTES.md, "TCP repair").
//!
//! One table (family `inet`, a unique name) per dump, with an `input` and an `output`
//! chain at the raw priority: per established flow one drop rule each way; per
//! listening socket one input rule for its port, so a client that connects while the
//! tree is frozen has its SYN dropped and retries into the restored listener (it never
//! lands in the frozen listener's accept queue, which cannot be restored). Packets
//! carrying [`super::fin::MARK`] pass: the peer's FIN replayed by the restore.
//!
//! The table is created in the tree's network namespace (through `nsenter` when that is
//! not the dumper's). Its name goes into the image: the restore on the same host removes
//! it once every socket runs again (and on a failed restore). A migration target never
//! has the table and ignores it; the source removes its own with [`remove_table`] once
//! the target confirms (spiritd), since the original sockets are gone by then.

use spirit_core::{Error, Result};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

/// What the lock holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// A connection: both directions dropped.
    Conn { local: SocketAddr, peer: SocketAddr },
    /// A listening socket: new connections to it dropped.
    Listen { local: SocketAddr },
}

/// A lock installed by this process. Not removed on drop: the owner decides (a dump
/// that ended with the tree killed keeps it for the restore).
#[derive(Debug)]
pub struct NetLock {
    table: String,
    /// Run nft in this process's network namespace (None: ours).
    ns_pid: Option<i32>,
}

/// A table name no other dump on this host uses.
pub fn unique_name() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("spirit_lock_{}_{}", std::process::id(), t)
}

/// `ip`/`ip6` match for an address (v4-mapped v6 addresses travel as IPv4).
fn ip_match(ip: IpAddr) -> (&'static str, String) {
    match ip {
        IpAddr::V4(a) => ("ip", a.to_string()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => ("ip", v4.to_string()),
            None => ("ip6", a.to_string()),
        },
    }
}

/// The table's body: one set of connections per IP version (a lookup per packet, and
/// an nft transaction whose cost hardly grows with the number of connections), one
/// rule per listener.
fn script(name: &str, flows: &[Flow]) -> String {
    let (mut c4, mut c6, mut listen) = (Vec::new(), Vec::new(), Vec::new());
    for f in flows {
        match f {
            Flow::Conn { local, peer } => {
                let (fam, l) = ip_match(local.ip());
                let (_, p) = ip_match(peer.ip());
                let e = format!("{p} . {} . {l} . {}", peer.port(), local.port());
                if fam == "ip" {
                    c4.push(e)
                } else {
                    c6.push(e)
                }
            }
            Flow::Listen { local } => {
                let lp = local.port();
                listen.push(if local.ip().is_unspecified() {
                    format!("tcp dport {lp} drop")
                } else {
                    let (fam, l) = ip_match(local.ip());
                    format!("{fam} daddr {l} tcp dport {lp} drop")
                });
            }
        }
    }
    let mut s = format!("table inet {name} {{\n");
    let (mut input, mut output) = (
        vec![format!("meta mark {:#x} accept", super::fin::MARK)],
        Vec::new(),
    );
    for (set, fam, ty, elems) in [
        ("c4", "ip", "ipv4_addr", &c4),
        ("c6", "ip6", "ipv6_addr", &c6),
    ] {
        if elems.is_empty() {
            continue;
        }
        s += &format!(
            "  set {set} {{\n    type {ty} . inet_service . {ty} . inet_service\n    elements = {{ {} }}\n  }}\n",
            elems.join(", ")
        );
        input.push(format!(
            "{fam} saddr . tcp sport . {fam} daddr . tcp dport @{set} drop"
        ));
        output.push(format!(
            "{fam} daddr . tcp dport . {fam} saddr . tcp sport @{set} drop"
        ));
    }
    input.extend(listen);
    for (chain, rs) in [("input", &input), ("output", &output)] {
        s += &format!(
            "  chain {chain} {{\n    type filter hook {chain} priority -300; policy accept;\n"
        );
        for r in rs.iter() {
            s += &format!("    {r}\n");
        }
        s += "  }\n";
    }
    s + "}\n"
}

fn ours_netns(pid: i32) -> bool {
    let a = std::fs::metadata(format!("/proc/{pid}/ns/net"));
    let b = std::fs::metadata("/proc/self/ns/net");
    use std::os::unix::fs::MetadataExt;
    match (a, b) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => true,
    }
}

fn nft(ns_pid: Option<i32>, script: &str) -> Result<()> {
    let mut cmd = match ns_pid {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net")).arg("nft");
            c
        }
        None => Command::new("nft"),
    };
    cmd.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        Error::Restore(format!(
            "network lock: cannot run nft ({e}); install the `nftables` package"
        ))
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Restore(format!("network lock: nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Restore(format!(
            "network lock: nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl NetLock {
    /// Create table `name` dropping `flows`, in the network namespace of `pid` (the
    /// tree's). One atomic nft transaction: all rules or none.
    pub fn install(name: &str, flows: &[Flow], pid: i32) -> Result<NetLock> {
        let ns_pid = (!ours_netns(pid)).then_some(pid);
        let s = script(name, flows);
        nft(ns_pid, &s)?;
        Ok(NetLock {
            table: name.to_string(),
            ns_pid,
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Delete the table (the flows run again).
    pub fn remove(&self) -> Result<()> {
        delete(self.ns_pid, &self.table)
    }
}

fn delete(ns_pid: Option<i32>, table: &str) -> Result<()> {
    nft(ns_pid, &format!("delete table inet {table}\n"))
}

/// Whether table `name` exists in this network namespace.
pub fn table_exists(name: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Remove a lock table left by a dump (by name from the image), in this network
/// namespace; a table that is not there (a migration target, or already removed) is
/// not an error. Names that are not spirit's are refused, so an image cannot make the
/// restorer delete another table.
pub fn remove_table(name: &str) -> Result<()> {
    if name.is_empty() {
        return Ok(());
    }
    if !name.starts_with("spirit_lock_")
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::Restore(format!(
            "network lock table {name:?} in the image is not one spirit makes"
        )));
    }
    if !table_exists(name) {
        return Ok(());
    }
    delete(None, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_v4_v6_mapped_listen() {
        let flows = vec![
            Flow::Conn {
                local: "127.0.0.1:5000".parse().unwrap(),
                peer: "127.0.0.1:40000".parse().unwrap(),
            },
            Flow::Conn {
                local: "[::ffff:127.0.0.1]:5001".parse().unwrap(),
                peer: "[::ffff:127.0.0.2]:40001".parse().unwrap(),
            },
            Flow::Conn {
                local: "[::1]:5002".parse().unwrap(),
                peer: "[::1]:40002".parse().unwrap(),
            },
            Flow::Listen {
                local: "[::]:6000".parse().unwrap(),
            },
        ];
        let s = script("T", &flows);
        assert!(s.contains("elements = { 127.0.0.1 . 40000 . 127.0.0.1 . 5000, 127.0.0.2 . 40001 . 127.0.0.1 . 5001 }"), "{s}");
        assert!(s.contains("elements = { ::1 . 40002 . ::1 . 5002 }"), "{s}");
        assert!(s.contains("ip saddr . tcp sport . ip daddr . tcp dport @c4 drop"));
        assert!(s.contains("ip6 daddr . tcp dport . ip6 saddr . tcp sport @c6 drop"));
        assert!(s.contains("meta mark 0x53504952 accept"));
        assert!(s.contains("tcp dport 6000 drop"));
        let only_listen = script("T", &flows[3..]);
        assert!(!only_listen.contains("set "), "{only_listen}");
    }

    #[test]
    fn foreign_table_names_refused() {
        assert!(remove_table("filter").is_err());
        assert!(remove_table("spirit_lock_1; flush ruleset").is_err());
        assert!(remove_table("").is_ok());
    }
}
