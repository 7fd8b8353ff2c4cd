//! Two "hosts" on one machine: each a network namespace (veth pair, 198.18.0.1 and
//! 198.18.0.2, no default route) whose `spiritd` also has its own mount namespace
//! with a private /tmp, on its own `dbus-daemon`. Dropped in order: daemons, buses,
//! namespaces (deleting a namespace deletes its veth end).

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

pub const ADDR_A: &str = "198.18.0.1";
pub const ADDR_B: &str = "198.18.0.2";
pub const PORT: u16 = 7411;

pub fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The namespaces; deleted on drop.
pub struct Net {
    pub a: String,
    pub b: String,
    pub veth_a: String,
}

impl Net {
    fn new() -> Net {
        static N: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let net = Net {
            a: format!("spa{tag}"),
            b: format!("spb{tag}"),
            veth_a: format!("va{tag}"),
        };
        let veth_b = format!("vb{tag}");
        ip(&["netns", "add", &net.a]);
        ip(&["netns", "add", &net.b]);
        ip(&[
            "link",
            "add",
            &net.veth_a,
            "type",
            "veth",
            "peer",
            "name",
            &veth_b,
        ]);
        ip(&["link", "set", &net.veth_a, "netns", &net.a]);
        ip(&["link", "set", &veth_b, "netns", &net.b]);
        for (ns, dev, addr) in [(&net.a, &net.veth_a, ADDR_A), (&net.b, &veth_b, ADDR_B)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

pub struct Host {
    pub name: &'static str,
    pub ns: String,
    pub dir: PathBuf,
    pub key: String,
    pub addr: &'static str,
    /// `link_timeout_secs` in its configuration.
    pub link_timeout: u64,
}

impl Host {
    fn new(name: &'static str, ns: &str, root: &Path, addr: &'static str) -> Host {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let o = Command::new(SPIRITD)
            .args(["--show-key", "--state-dir"])
            .arg(dir.join("state"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "spiritd --show-key: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Host {
            name,
            ns: ns.to_string(),
            dir,
            key: String::from_utf8(o.stdout).unwrap().trim().to_string(),
            addr,
            link_timeout: 3,
        }
    }

    /// Its configuration trusting `peers` (name, address, key).
    pub fn config(&self, peers: &[(&str, &str, &str)]) -> String {
        let mut c = format!(
            "state_dir = \"{}/state\"\nlisten = \"{}:{PORT}\"\nlink_timeout_secs = {}\njob_linger_secs = 120\n",
            self.dir.display(),
            self.addr,
            self.link_timeout
        );
        for (n, a, k) in peers {
            c.push_str(&format!(
                "\n[[peers]]\nname = \"{n}\"\naddress = \"{a}:{PORT}\"\npublic_key = \"{k}\"\n"
            ));
        }
        c
    }

    /// Start its spiritd in its namespaces (private /tmp) on `bus`. When the build
    /// itself lives under /tmp (a checkout there), its target directory is bound back
    /// over the private /tmp, so binaries, programs and test files stay reachable.
    pub fn start(&self, bus: &TestBus, config: &str) -> Daemon {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .to_string_lossy()
            .into_owned();
        let keep = if target.starts_with("/tmp/") {
            target
        } else {
            String::new()
        };
        let keep_env = format!("SPIRIT_KEEP={keep}");
        let prefix = [
            "ip",
            "netns",
            "exec",
            &self.ns,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "env",
            &keep_env,
            "sh",
            "-c",
            KEEP_TARGET_SCRIPT,
        ];
        Daemon::start(&bus.address, &self.dir, config, &prefix)
    }

    /// A command run in this host's network namespace.
    pub fn cmd(&self, prog: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(prog);
        c
    }
}

/// Mount a private /tmp; bind $SPIRIT_KEEP (a directory under /tmp) back over it.
const KEEP_TARGET_SCRIPT: &str = r#"set -e
if [ -n "$SPIRIT_KEEP" ]; then
  hold=/mnt; [ -d "$hold" ] || { hold=/run/spirit-keep; mkdir -p "$hold"; }
  mount --bind "$SPIRIT_KEEP" "$hold"
fi
mount -t tmpfs tmpfs /tmp
if [ -n "$SPIRIT_KEEP" ]; then
  mkdir -p "$SPIRIT_KEEP"
  mount --bind "$hold" "$SPIRIT_KEEP"
fi
exec "$0" "$@""#;

/// Two hosts that trust each other, daemons running.
pub struct Hosts {
    pub da: Option<Daemon>,
    pub db: Option<Daemon>,
    pub bus_a: TestBus,
    pub bus_b: TestBus,
    pub a: Host,
    pub b: Host,
    pub net: Net,
    pub dir: tempfile::TempDir,
}

impl Hosts {
    /// `b_trusts_a`: whether b's configuration lists a.
    pub fn new(b_trusts_a: bool, extra_a_peers: &[(&str, &str, &str)]) -> Hosts {
        Hosts::new_with_timeout(b_trusts_a, extra_a_peers, 3)
    }

    /// The same with another `link_timeout_secs` (short for the fault tests, long for
    /// big images).
    pub fn new_with_timeout(
        b_trusts_a: bool,
        extra_a_peers: &[(&str, &str, &str)],
        link_timeout: u64,
    ) -> Hosts {
        Hosts::new_full(b_trusts_a, extra_a_peers, link_timeout, "")
    }

    /// `b_extra`: more configuration for b (e.g. a `[limits]` table).
    pub fn new_full(
        b_trusts_a: bool,
        extra_a_peers: &[(&str, &str, &str)],
        link_timeout: u64,
        b_extra: &str,
    ) -> Hosts {
        // Outside /tmp: each host mounts its own /tmp.
        let dir = tempfile::Builder::new()
            .prefix("busd-mig-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let net = Net::new();
        let mut a = Host::new("a", &net.a, dir.path(), ADDR_A);
        let mut b = Host::new("b", &net.b, dir.path(), ADDR_B);
        a.link_timeout = link_timeout;
        b.link_timeout = link_timeout;
        let bus_a = TestBus::start(&a.dir);
        let bus_b = TestBus::start(&b.dir);
        let mut pa = vec![("b", ADDR_B, b.key.as_str())];
        pa.extend_from_slice(extra_a_peers);
        let da = a.start(&bus_a, &a.config(&pa));
        let pb: Vec<(&str, &str, &str)> = if b_trusts_a {
            vec![("a", ADDR_A, a.key.as_str())]
        } else {
            vec![]
        };
        let db = b.start(&bus_b, &format!("{}\n{b_extra}", b.config(&pb)));
        Hosts {
            da: Some(da),
            db: Some(db),
            bus_a,
            bus_b,
            a,
            b,
            net,
            dir,
        }
    }

    pub fn log_a(&self) -> String {
        self.da.as_ref().map(|d| d.log_text()).unwrap_or_default()
    }
    pub fn log_b(&self) -> String {
        self.db.as_ref().map(|d| d.log_text()).unwrap_or_default()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.da.take();
        self.db.take();
    }
}

/// Can this test make namespaces? (root, ip, unshare)
pub fn can_make_hosts() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: two-host tests need root (network and mount namespaces)");
        return false;
    }
    for t in ["ip", "unshare", "nsenter", "dbus-daemon", "busctl", "gcc"] {
        if !have(t) {
            eprintln!("SKIPPED: {t} is not installed (apt-get install iproute2 util-linux dbus systemd gcc)");
            return false;
        }
    }
    true
}
