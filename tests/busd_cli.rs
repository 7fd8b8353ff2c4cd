//! The client subcommands against a real spiritd on a private bus (its own socket in a
//! temporary directory): `peers --json` and `jobs --json` objects, and exit codes by
//! D-Bus error name: 20 with the bus up but no spiritd, 22 for an unknown peer or pid.

mod busd_common;

use busd_common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn spirit(args: &[&str]) -> Out {
    let o = Command::new(SPIRIT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run spirit");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn client_json_and_bus_exit_codes() {
    init();
    for tool in ["dbus-daemon", "busctl"] {
        if !have(tool) {
            eprintln!("SKIPPED: {tool} is not installed (apt-get install dbus systemd)");
            return;
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("spirit-busd-cli-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let bus = TestBus::start(dir.path());
    let addr = bus.address.as_str();

    // The bus is there, spiritd is not: 20, one error line.
    let o = spirit(&["jobs", "--json", "--bus", addr]);
    assert_eq!(o.code, 20, "no spiritd: {}", o.stderr);
    assert!(
        o.stderr.starts_with("spirit: error:") && o.stdout.is_empty(),
        "{}",
        o.stderr
    );

    let key = "11".repeat(32);
    let config = format!(
        "state_dir = \"{}/state\"\n[[peers]]\nname = \"hostb\"\naddress = \"198.18.0.2:7411\"\npublic_key = \"{key}\"\n",
        dir.path().display()
    );
    let _d = Daemon::start(addr, dir.path(), &config, &[]);

    let o = spirit(&["peers", "--json", "--bus", addr]);
    assert_eq!(o.code, 0, "peers: {}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).expect("peers JSON");
    let p = &v["peers"][0];
    assert_eq!(p["name"], "hostb", "{v}");
    assert_eq!(p["address"], "198.18.0.2:7411", "{v}");
    assert_eq!(p["public_key"], key.as_str(), "{v}");

    let o = spirit(&["jobs", "--json", "--bus", addr]);
    assert_eq!(o.code, 0, "jobs: {}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).expect("jobs JSON");
    assert!(v["jobs"].is_array(), "{v}");

    // Refusals by spiritd: an unknown peer, a pid that does not exist.
    let me = std::process::id().to_string();
    let o = spirit(&["migrate", &me, "--to", "nosuchpeer", "--bus", addr]);
    assert_eq!(o.code, 22, "unknown peer: {}", o.stderr);
    assert!(o.stderr.contains("UnknownPeer"), "{}", o.stderr);
    let o = spirit(&["migrate", "999999999", "--to", "hostb", "--bus", addr]);
    assert_eq!(o.code, 22, "no such pid: {}", o.stderr);
}
