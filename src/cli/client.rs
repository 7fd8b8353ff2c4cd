//! The client subcommands: `spirit jobs`, `spirit peers`, `spirit migrate` (in
//! `migrate.rs`). They talk to `spiritd` over D-Bus (proxies from
//! `spirit_busd::client`); D-Bus errors become exit codes by their error name.

use clap::{Args, Subcommand};
use serde_json::json;
use spirit_busd::client::ManagerProxyBlocking;
use zbus::blocking::Connection;

/// Which spiritd to talk to.
#[derive(Args, Clone)]
pub struct BusArg {
    /// The bus spiritd serves on: system, session, or a D-Bus address.
    #[arg(long, default_value = "system")]
    bus: String,
}

#[derive(Subcommand)]
pub enum ClientCmd {
    /// List spiritd's jobs.
    Jobs {
        #[command(flatten)]
        bus: BusArg,
        /// Machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the peers spiritd trusts.
    Peers {
        #[command(flatten)]
        bus: BusArg,
        /// Machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move a running process to a peer host through spiritd; it ends here only once
    /// it runs there, and resumes here if anything fails before that.
    Migrate {
        /// The process to move.
        pid: u32,
        /// The peer's name (see `spirit peers`).
        #[arg(long)]
        to: String,
        /// Leave the process running here too (a copy).
        #[arg(long)]
        keep_source: bool,
        /// Restore on the peer in a new pid namespace, keeping the pids.
        #[arg(long)]
        pid_ns: bool,
        #[command(flatten)]
        bus: BusArg,
        /// Print the result as one JSON object on stdout (instead of the new pid).
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes of the client subcommands beyond spirit's own table (`spirit --help`).
pub mod exit {
    /// spiritd cannot be reached: no bus, or nobody owns (or can activate) its name.
    pub const UNREACHABLE: i32 = 20;
    /// spiritd (or the bus policy) refused the caller.
    pub const DENIED: i32 = 21;
    /// A bad request: unknown peer, no such process, invalid argument.
    pub const BAD_REQUEST: i32 = 22;
    /// The job ran and failed (or was cancelled).
    pub const JOB_FAILED: i32 = 23;
    /// Any other D-Bus error.
    pub const BUS: i32 = 24;
}

/// The exit code for a D-Bus error, by its error name.
pub fn bus_exit_code(e: &zbus::Error) -> i32 {
    let zbus::Error::MethodError(name, _, _) = e else {
        return match e {
            zbus::Error::InputOutput(_) | zbus::Error::Address(_) | zbus::Error::Handshake(_) => {
                exit::UNREACHABLE
            }
            _ => exit::BUS,
        };
    };
    match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner"
        | "org.freedesktop.DBus.Error.NoServer"
        | "org.freedesktop.DBus.Error.Spawn.Failed"
        | "org.freedesktop.DBus.Error.Spawn.ChildExited"
        | "org.freedesktop.DBus.Error.Timeout"
        | "org.freedesktop.DBus.Error.NoReply" => exit::UNREACHABLE,
        "org.freedesktop.DBus.Error.AccessDenied" | "org.spirit.Spirit1.Error.PermissionDenied" => {
            exit::DENIED
        }
        "org.freedesktop.DBus.Error.InvalidArgs"
        | "org.freedesktop.DBus.Error.UnknownMethod"
        | "org.spirit.Spirit1.Error.NoSuchProcess"
        | "org.spirit.Spirit1.Error.InvalidArgument"
        | "org.spirit.Spirit1.Error.UnknownPeer"
        | "org.spirit.Spirit1.Error.NotCancellable" => exit::BAD_REQUEST,
        _ => exit::BUS,
    }
}

fn connect(bus: &BusArg) -> zbus::Result<Connection> {
    match bus.bus.as_str() {
        "system" => Connection::system(),
        "session" => Connection::session(),
        a => zbus::blocking::connection::Builder::address(a)?.build(),
    }
}

/// The one-line message of a D-Bus error (its text, without the error name).
fn say(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({name})"),
        other => other.to_string(),
    }
}

pub fn client(cmd: ClientCmd) -> i32 {
    let bus = match &cmd {
        ClientCmd::Jobs { bus, .. }
        | ClientCmd::Peers { bus, .. }
        | ClientCmd::Migrate { bus, .. } => bus.clone(),
    };
    let res = connect(&bus).and_then(|c| {
        let m = ManagerProxyBlocking::new(&c)?;
        Ok((c, m))
    });
    let (conn, mgr) = match res {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "spirit: error: cannot reach spiritd on the {} bus: {}",
                bus.bus,
                say(&e)
            );
            return exit::UNREACHABLE;
        }
    };
    let r = match cmd {
        ClientCmd::Jobs { json, .. } => jobs(&mgr, json),
        ClientCmd::Peers { json, .. } => peers(&mgr, json),
        ClientCmd::Migrate {
            pid,
            to,
            keep_source,
            pid_ns,
            json,
            ..
        } => super::migrate::migrate(&conn, &mgr, pid, &to, keep_source, pid_ns, json),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spirit: error: {}", say(&e));
            bus_exit_code(&e)
        }
    }
}

/// The `--json` object of `spirit jobs` (field names are stable; README, "JSON").
pub fn jobs_json(rows: &[spirit_busd::client::JobRow]) -> serde_json::Value {
    let jobs: Vec<_> = rows
        .iter()
        .map(|(id, kind, state, progress, desc, path)| {
            json!({"id": id, "kind": kind, "state": state, "progress": progress,
                   "description": desc, "path": path.as_str()})
        })
        .collect();
    json!({ "jobs": jobs })
}

/// The `--json` object of `spirit peers`.
pub fn peers_json(rows: &[(String, String, String)]) -> serde_json::Value {
    let peers: Vec<_> = rows
        .iter()
        .map(|(name, addr, key)| json!({"name": name, "address": addr, "public_key": key}))
        .collect();
    json!({ "peers": peers })
}

fn jobs(mgr: &ManagerProxyBlocking, as_json: bool) -> zbus::Result<i32> {
    let rows = mgr.list_jobs()?;
    if as_json {
        println!("{}", jobs_json(&rows));
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no jobs");
    }
    for (id, kind, state, progress, desc, _) in rows {
        println!(
            "{id:>4} {kind:<10} {state:<9} {:>5.1}%  {desc}",
            progress * 100.0
        );
    }
    Ok(0)
}

fn peers(mgr: &ManagerProxyBlocking, as_json: bool) -> zbus::Result<i32> {
    let rows = mgr.list_peers()?;
    if as_json {
        println!("{}", peers_json(&rows));
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no peers configured");
    }
    for (name, addr, key) in rows {
        println!("{name:<16} {addr:<24} {key}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_errors_map_to_exit_codes_by_name() {
        let err = |name: &str| {
            let msg = zbus::message::Message::method_call("/", "X")
                .unwrap()
                .build(&())
                .unwrap();
            zbus::Error::MethodError(
                zbus::names::OwnedErrorName::try_from(name).unwrap(),
                Some("m".into()),
                msg,
            )
        };
        for (name, code) in [
            (
                "org.freedesktop.DBus.Error.ServiceUnknown",
                exit::UNREACHABLE,
            ),
            ("org.freedesktop.DBus.Error.AccessDenied", exit::DENIED),
            ("org.spirit.Spirit1.Error.PermissionDenied", exit::DENIED),
            ("org.spirit.Spirit1.Error.UnknownPeer", exit::BAD_REQUEST),
            ("org.spirit.Spirit1.Error.NoSuchProcess", exit::BAD_REQUEST),
            ("org.example.Other", exit::BUS),
        ] {
            assert_eq!(bus_exit_code(&err(name)), code, "{name}");
        }
    }

    #[test]
    fn jobs_and_peers_json_have_their_documented_fields() {
        let path = zbus::zvariant::OwnedObjectPath::try_from("/org/spirit/Spirit1/job/3").unwrap();
        let v = jobs_json(&[(
            3,
            "migrate".into(),
            "running".into(),
            0.5,
            "pid 7".into(),
            path,
        )]);
        let j = &v["jobs"][0];
        for k in ["id", "kind", "state", "progress", "description", "path"] {
            assert!(!j[k].is_null(), "jobs[0] lacks {k}: {v}");
        }
        assert_eq!(j["path"], "/org/spirit/Spirit1/job/3");
        let v = peers_json(&[("b".into(), "198.18.0.2:7411".into(), "00".into())]);
        assert_eq!(v["peers"][0]["address"], "198.18.0.2:7411");
        assert_eq!(v["peers"][0]["public_key"], "00");
    }
}
