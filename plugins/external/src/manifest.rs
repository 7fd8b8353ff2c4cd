//! Finding external plugins: one manifest (`NAME.toml`) per plugin in a plugin
//! directory, naming the plugin, its section version, its executable and what it claims
//! — all known without starting it, so a plugin only runs when a descriptor it claims
//! exists or an image has a section of it.
//!
//! ```toml
//! name = "mqueue"                 # [a-z0-9_-]+, the section's name in images
//! version = 1                     # the section format version
//! exec = "spirit-mqueue"          # relative to the manifest's directory, or absolute
//! description = "POSIX message queues"
//! [claims]                        # any of: fs_magic, anon_inode, char_major, path_prefix
//! fs_magic = [0x19800202]
//! ```
//!
//! Directories, in order (a name found twice: the first wins): each of
//! `$SPIRIT_PLUGIN_PATH` (colon-separated), `plugins/` beside the running `spirit`
//! executable, `/usr/lib/spirit/plugins`.

use crate::claims::Claims;
use std::path::{Path, PathBuf};

/// The system directory of external plugins.
pub const SYSTEM_DIR: &str = "/usr/lib/spirit/plugins";

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    version: u32,
    exec: PathBuf,
    #[serde(default)]
    description: String,
    #[serde(default)]
    claims: Claims,
}

/// One plugin's manifest, checked.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub name: String,
    pub version: u32,
    /// The executable, absolute.
    pub exec: PathBuf,
    pub description: String,
    pub claims: Claims,
    /// Where the manifest was found.
    pub path: PathBuf,
}

/// A plugin name: what the image stores sections under.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Manifest {
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        if !valid_name(&raw.name) {
            return Err(format!(
                "{}: plugin name '{}' is not [a-z0-9_-]+",
                path.display(),
                raw.name
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        Ok(Manifest {
            exec: dir.join(&raw.exec),
            name: raw.name,
            version: raw.version,
            description: raw.description,
            claims: raw.claims,
            path: path.to_path_buf(),
        })
    }
}

/// The plugin directories, in the order they are searched.
pub fn dirs() -> Vec<PathBuf> {
    let mut d: Vec<PathBuf> = std::env::var_os("SPIRIT_PLUGIN_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    if let Some(bin_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        d.push(bin_dir.join("plugins"));
    }
    d.push(PathBuf::from(SYSTEM_DIR));
    d
}

/// Every manifest found (the first of a name wins, as do built-in plugins' names over
/// external ones: `reserved`), and one message per manifest that could not be used.
pub fn discover(reserved: &[&str]) -> (Vec<Manifest>, Vec<String>) {
    let mut found: Vec<Manifest> = Vec::new();
    let mut problems = Vec::new();
    for dir in dirs() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let m = std::fs::read_to_string(&p)
                .map_err(|e| format!("{}: {e}", p.display()))
                .and_then(|t| Manifest::parse(&p, &t));
            match m {
                Ok(m) if reserved.contains(&m.name.as_str()) => problems.push(format!(
                    "{}: '{}' is the name of a built-in plugin",
                    p.display(),
                    m.name
                )),
                Ok(m) if found.iter().any(|f| f.name == m.name) => {}
                Ok(m) => found.push(m),
                Err(e) => problems.push(e),
            }
        }
    }
    (found, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_manifest() {
        let m = Manifest::parse(
            Path::new("/opt/p/mq.toml"),
            "name = \"mqueue\"\nversion = 1\nexec = \"spirit-mqueue\"\n[claims]\nfs_magic = [0x19800202]\npath_prefix = [\"/dev/x\"]\n",
        )
        .unwrap();
        assert_eq!(m.exec, Path::new("/opt/p/spirit-mqueue"));
        assert_eq!(m.claims.fs_magic, vec![0x1980_0202]);
        assert!(Manifest::parse(
            Path::new("/a.toml"),
            "name = \"Bad Name\"\nversion = 1\nexec = \"x\""
        )
        .is_err());
        assert!(Manifest::parse(
            Path::new("/a.toml"),
            "name = \"a\"\nversion = 1\nexec = \"x\"\nbogus = 2"
        )
        .is_err());
    }
}
