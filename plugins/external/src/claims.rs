//! What an external plugin claims: descriptors on filesystems of given magic numbers,
//! anonymous inodes of given names, character devices of given majors, paths under
//! given prefixes. Declared in the manifest (to decide, without starting the plugin,
//! whether it is needed) and by the plugin's `Describe` (what it really takes: a
//! descriptor goes to the plugin only if both match).

use spirit_core::plugin::FdEntry;
use std::collections::HashMap;
use zbus::zvariant::OwnedValue;

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    #[serde(default)]
    pub fs_magic: Vec<u64>,
    #[serde(default)]
    pub anon_inode: Vec<String>,
    #[serde(default)]
    pub char_major: Vec<u32>,
    #[serde(default)]
    pub path_prefix: Vec<String>,
}

impl Claims {
    pub fn is_empty(&self) -> bool {
        self == &Claims::default()
    }

    /// Whether the descriptor is of a kind claimed here.
    pub fn matches(&self, e: &FdEntry) -> bool {
        let anon = e
            .target
            .strip_prefix("anon_inode:")
            .map(|n| n.trim_start_matches('[').trim_end_matches(']'));
        self.fs_magic.iter().any(|&m| m as i64 == e.fs_magic)
            || anon.is_some_and(|n| self.anon_inode.iter().any(|a| a == n))
            || (e.mode & libc::S_IFMT == libc::S_IFCHR && self.char_major.contains(&e.major()))
            || (e.target.starts_with('/')
                && self
                    .path_prefix
                    .iter()
                    .any(|p| !p.is_empty() && e.target.starts_with(p.as_str())))
    }

    /// From `Describe`'s `a{sv}`: unknown keys are ignored (a newer plugin may claim
    /// kinds this spirit does not know), a known key of the wrong type is an error.
    pub fn from_dbus(map: HashMap<String, OwnedValue>) -> Result<Claims, String> {
        let mut c = Claims::default();
        for (k, v) in map {
            let bad = |e: zbus::zvariant::Error| format!("claim '{k}': {e}");
            match k.as_str() {
                "fs_magic" => c.fs_magic = Vec::<u64>::try_from(v).map_err(bad)?,
                "anon_inode" => c.anon_inode = Vec::<String>::try_from(v).map_err(bad)?,
                "char_major" => c.char_major = Vec::<u32>::try_from(v).map_err(bad)?,
                "path_prefix" => c.path_prefix = Vec::<String>::try_from(v).map_err(bad)?,
                _ => {}
            }
        }
        Ok(c)
    }

    /// A short text for listings: `fs_magic 0x19800202, path_prefix /dev/x`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for m in &self.fs_magic {
            parts.push(format!("fs_magic {m:#x}"));
        }
        for a in &self.anon_inode {
            parts.push(format!("anon_inode [{a}]"));
        }
        for m in &self.char_major {
            parts.push(format!("char_major {m}"));
        }
        for p in &self.path_prefix {
            parts.push(format!("path_prefix {p}"));
        }
        parts.join(", ")
    }
}
