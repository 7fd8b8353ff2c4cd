//! `spiritd.toml`: where state lives, which worker binary runs jobs, where peers are
//! and which keys they hold, and the limits. Every field has a default, so an empty
//! file (or none) is a valid configuration for a daemon without peers.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity key and other state; created on first start.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The `spirit` binary each job runs as its worker (default: the `spirit` next to
    /// the `spiritd` executable).
    #[serde(default)]
    pub worker: Option<PathBuf>,
    /// TCP address peers connect to for migrations into this host (none: no incoming).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// How long a peer link may stay silent before the migration is abandoned.
    #[serde(default = "default_link_timeout")]
    pub link_timeout_secs: u64,
    /// How long a finished job object stays on the bus (for clients to read its result)
    /// before it is removed and `JobRemoved` is sent.
    #[serde(default = "default_linger")]
    pub job_linger_secs: u64,
    #[serde(default)]
    pub limits: Limits,
    /// The daemons this one trusts, in both directions.
    #[serde(default)]
    pub peers: Vec<Peer>,
}

/// Limits and policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Local jobs running at once; more wait in state `queued`.
    #[serde(default = "default_max_jobs")]
    pub max_jobs: usize,
    /// Incoming migrations accepted at once; more are refused.
    #[serde(default = "default_max_incoming")]
    pub max_incoming: usize,
    /// User names whose processes may migrate into this host (empty: every user that
    /// exists here).
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Memory (MiB) an incoming migration must leave available: one whose pages
    /// exceed `MemAvailable` minus this is refused before the source is frozen.
    #[serde(default = "default_keep_free_mib")]
    pub keep_free_mib: u64,
}

/// A trusted peer daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The name callers use (`Migrate(pid, "NAME", ...)`, `spirit migrate --to NAME`).
    pub name: String,
    /// Its `listen` address.
    pub address: SocketAddr,
    /// Its identity public key, 64 hex digits (`spiritd --show-key` prints it).
    pub public_key: String,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/spiritd")
}
fn default_link_timeout() -> u64 {
    30
}
fn default_linger() -> u64 {
    300
}
fn default_max_jobs() -> usize {
    4
}
fn default_max_incoming() -> usize {
    2
}
fn default_keep_free_mib() -> u64 {
    64
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_jobs: default_max_jobs(),
            max_incoming: default_max_incoming(),
            allowed_users: Vec::new(),
            keep_free_mib: default_keep_free_mib(),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        toml::from_str("").expect("the empty configuration is valid")
    }
}

/// A configuration that cannot be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse and check configuration text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let cfg: Config = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for p in &cfg.peers {
            crate::keys::parse_key(&p.public_key).map_err(|e| {
                invalid(format!(
                    "peer {:?}: public_key {e} (use the output of `spiritd --show-key` on that host)",
                    p.name
                ))
            })?;
        }
        if cfg.limits.max_jobs == 0 {
            return Err(invalid("limits.max_jobs must be at least 1".into()));
        }
        Ok(cfg)
    }

    pub fn link_timeout(&self) -> Duration {
        Duration::from_secs(self.link_timeout_secs.max(1))
    }

    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../dist/spiritd.toml");
        let cfg = Config::parse(text, Path::new("dist/spiritd.toml")).unwrap();
        assert_eq!(cfg.peers.len(), 1);
        assert_eq!(cfg.limits.max_incoming, 2);
    }

    #[test]
    fn bad_key_is_named() {
        let text = "[[peers]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\npublic_key = \"xyz\"\n";
        let e = Config::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("peer \"b\""), "{e}");
    }

    #[test]
    fn empty_is_default() {
        let cfg = Config::default();
        assert_eq!(cfg.limits.max_jobs, 4);
        assert!(cfg.listen.is_none());
    }
}
