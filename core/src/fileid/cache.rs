//! The content-hash cache: a file's BLAKE3 hash keyed by (device, inode, mtime, size),
//! so a second dump of the same program does not re-read its libraries.
//!
//! One text file, one entry a line: `dev inode mtime_ns size hash`. It lives at
//! `$XDG_CACHE_HOME/spirit/file-hashes`, else `/var/cache/spirit/file-hashes` for root
//! and `$HOME/.cache/spirit/file-hashes` for a user. A missing or unreadable cache is
//! an empty one; lines that do not parse are dropped; it is rewritten whole (through a
//! temporary file and a rename) when something new was hashed, keeping at most
//! [`MAX_ENTRIES`] entries.

use std::collections::HashMap;
use std::path::PathBuf;

/// Entries kept when the cache is written (the newest, by order of use).
pub const MAX_ENTRIES: usize = 20_000;

/// What the cache keys a file by.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub dev: u64,
    pub inode: u64,
    pub mtime_ns: i64,
    pub size: u64,
}

#[derive(Debug, Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    entries: HashMap<Key, (String, u64)>,
    tick: u64,
    dirty: bool,
    /// Lookups answered from the cache, for logs and tests.
    pub hits: usize,
}

/// Where the cache file is.
pub fn default_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("spirit/file-hashes"));
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/cache/spirit/file-hashes"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/spirit/file-hashes"))
}

impl HashCache {
    /// The cache at `path` (empty if there is none or it cannot be read).
    pub fn load(path: Option<PathBuf>) -> HashCache {
        let mut c = HashCache {
            path,
            ..Default::default()
        };
        let Some(text) = c
            .path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        else {
            return c;
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [dev, inode, mtime, size, hash] = f[..] else {
                continue;
            };
            let (Ok(dev), Ok(inode), Ok(mtime_ns), Ok(size)) =
                (dev.parse(), inode.parse(), mtime.parse(), size.parse())
            else {
                continue;
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            c.tick += 1;
            let key = Key {
                dev,
                inode,
                mtime_ns,
                size,
            };
            c.entries.insert(key, (hash.to_string(), c.tick));
        }
        c
    }

    pub fn get(&mut self, key: &Key) -> Option<String> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.entries.get_mut(key)?;
        e.1 = tick;
        self.hits += 1;
        Some(e.0.clone())
    }

    pub fn put(&mut self, key: Key, hash: String) {
        self.tick += 1;
        self.entries.insert(key, (hash, self.tick));
        self.dirty = true;
    }

    /// Write the cache back if anything was added (failures are logged: a cache that
    /// cannot be written only costs time).
    pub fn save(&mut self) {
        let Some(path) = self.path.as_ref().filter(|_| self.dirty) else {
            return;
        };
        let mut all: Vec<(&Key, &(String, u64))> = self.entries.iter().collect();
        all.sort_by_key(|(_, (_, t))| std::cmp::Reverse(*t));
        all.truncate(MAX_ENTRIES);
        let text: String = all
            .iter()
            .rev()
            .map(|(k, (h, _))| format!("{} {} {} {} {h}\n", k.dev, k.inode, k.mtime_ns, k.size))
            .collect();
        let write = || -> std::io::Result<()> {
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::fs::write(tmp.path(), text)?;
            tmp.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        match write() {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot write the file-hash cache: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/c");
        let k = Key {
            dev: 1,
            inode: 2,
            mtime_ns: -3,
            size: 4,
        };
        let mut c = HashCache::load(Some(p.clone()));
        assert_eq!(c.get(&k), None);
        c.put(k, "a".repeat(64));
        c.save();
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("garbage\n1 2 3 4 nothex\n");
        std::fs::write(&p, text).unwrap();
        let mut c = HashCache::load(Some(p));
        assert_eq!(c.get(&k), Some("a".repeat(64)));
        assert_eq!((c.entries.len(), c.hits), (1, 1));
    }
}
