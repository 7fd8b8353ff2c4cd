//! The harness of the external-plugin tests (`plugins_external.rs`,
//! `plugins_mqueue.rs`): a per-test plugin directory with manifests for spirit-mqueue
//! (built by cargo beside the spirit under test) and the Python toy plugin, named to
//! spirit with SPIRIT_PLUGIN_PATH; finding leftover plugin processes; message queues.

#![allow(dead_code)]

use crate::common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The spirit-mqueue binary beside the spirit under test (cargo builds it as a
/// workspace member; built here when only this test's package was).
pub fn mqueue_plugin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_mqueue_plugin).clone()
}

fn build_mqueue_plugin() -> PathBuf {
    let dir = Path::new(SPIRIT).parent().expect("target dir");
    let bin = dir.join("spirit-mqueue");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "spirit-mqueue", "--manifest-path"])
        .arg(Path::new(ROOT).join("Cargo.toml"));
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    let st = cmd.status().expect("cargo build -p spirit-mqueue");
    assert!(st.success() && bin.exists(), "building spirit-mqueue");
    bin
}

/// Whether the distribution's Python GLib bindings are there for the toy plugin.
pub fn have_gdbus_python() -> bool {
    Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('Gio', '2.0'); from gi.repository import Gio",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// A test's plugin directory with the mqueue manifest (pointing at the built binary)
/// and the toy plugin's, claiming `dir/toy/`. Returns the environment for spirit.
pub struct Plugins {
    pub env: Vec<(String, String)>,
    pub toy_dir: PathBuf,
}

impl Plugins {
    pub fn new(dir: &TestDir) -> Plugins {
        let pdir = dir.join("plugins");
        let toy_dir = dir.join("toy");
        fs::create_dir_all(&pdir).unwrap();
        fs::create_dir_all(&toy_dir).unwrap();
        let mq = fs::read_to_string(Path::new(ROOT).join("plugins/mqueue/mqueue.toml")).unwrap();
        let mq = mq.replace(
            "exec = \"spirit-mqueue\"",
            &format!("exec = \"{}\"", mqueue_plugin().display()),
        );
        fs::write(pdir.join("mqueue.toml"), mq).unwrap();
        let prefix = format!("{}/", toy_dir.display());
        fs::write(
            pdir.join("toy.toml"),
            format!(
                "name = \"toy\"\nversion = 1\nexec = \"{ROOT}/tests/plugins/toy_plugin.py\"\ndescription = \"files under a prefix (test)\"\n[claims]\npath_prefix = [\"{prefix}\"]\n"
            ),
        )
        .unwrap();
        Plugins {
            env: vec![
                ("SPIRIT_PLUGIN_PATH".into(), pdir.display().to_string()),
                ("TOY_PREFIX".into(), prefix),
                (
                    "TOY_XML".into(),
                    format!("{ROOT}/busd/org.spirit.Plugin1.xml"),
                ),
            ],
            toy_dir,
        }
    }

    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        spirit_env(args, &env)
    }

    pub fn dump(&self, pid: i32, img: &Path, extra: &[(&str, &str)]) -> Run {
        self.run(
            &["dump", &pid.to_string(), "-o", &img.to_string_lossy()],
            extra,
        )
    }

    pub fn restore(&self, img: &Path, extra: &[(&str, &str)]) -> (Run, Option<Proc>) {
        let run = self.run(&["restore", &img.to_string_lossy(), "--detach"], extra);
        let pid = (run.code == 0)
            .then(|| run.stdout.split_whitespace().find_map(|w| w.parse().ok()))
            .flatten();
        (run, pid.map(Proc::adopt))
    }
}

/// The program's report lines once it said `done`; panics on `FAIL`.
pub fn report(out: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(&format!("done in {}", out.display()), TIMEOUT, || {
        lines = log_lines(out);
        lines.iter().any(|l| l == "done" || l.starts_with("FAIL"))
    });
    assert!(
        !lines.iter().any(|l| l.starts_with("FAIL")),
        "the program failed:\n{}",
        lines.join("\n")
    );
    lines
}

/// Processes (other than us) whose environment holds `marker` (a test's unique plugin
/// directory): the plugins and helpers a spirit started for this test.
pub fn procs_with_env(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me && pid_alive(p))
        .filter(|p| {
            fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|e| String::from_utf8_lossy(&e).contains(marker))
        })
        .collect()
}

pub fn queue_name(tag: &str) -> String {
    format!("/spirit-test-{}-{tag}", std::process::id())
}

/// Removes a named queue when the test ends, also on failure.
pub struct QueueGuard(pub String);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let _ = nix::mqueue::mq_unlink(self.0.as_str());
    }
}

/// Whether a message queue of that name exists on the host.
pub fn queue_exists(name: &str) -> bool {
    use nix::mqueue::{mq_close, mq_open, MQ_OFlag};
    use nix::sys::stat::Mode;
    match mq_open(name, MQ_OFlag::O_RDONLY, Mode::empty(), None) {
        Ok(q) => {
            let _ = mq_close(q);
            true
        }
        Err(_) => false,
    }
}
