//! File identity: what a file the tree needs was at checkpoint — path, size, mtime,
//! mode, owner, ELF build-id and BLAKE3 content hash ([`FileId`]) — and how a restore
//! tells whether the file it finds is the same one.
//!
//! One place for it: the dump records the executable and every mapped file of each
//! process ([`crate::procinfo::file_ids`]) through [`identify`], which hashes what the
//! [`cache`] does not already know, in parallel; the restore's check
//! ([`crate::restore`]) compares by hash when the record has one, else by size and
//! mtime (images from before hashes, and `spirit migrate`'s survey).

pub mod cache;
pub mod elf;
pub mod embed;
pub mod store;

use crate::model::FileId;
use cache::{HashCache, Key};
use std::fs::File;
use std::os::unix::fs::MetadataExt;

impl FileId {
    /// Identity of the file at `path` now, without reading its content.
    pub fn of(path: &str) -> std::io::Result<FileId> {
        Ok(FileId::from_meta(path, &std::fs::metadata(path)?))
    }

    fn from_meta(path: &str, md: &std::fs::Metadata) -> FileId {
        FileId {
            path: path.to_string(),
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            dev: md.dev(),
            inode: md.ino(),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            ..Default::default()
        }
    }

    fn key(&self) -> Key {
        Key {
            dev: self.dev,
            inode: self.inode,
            mtime_ns: self.mtime_ns,
            size: self.size,
        }
    }

    /// How `now` differs from this record, if it does. With a content hash on both
    /// sides only the content counts (a copy on another host, or a reinstall of the
    /// same package, is the same file); otherwise size and modification time (device
    /// and inode are never compared).
    pub fn differs(&self, now: &FileId) -> Option<String> {
        if !self.hash.is_empty() && !now.hash.is_empty() {
            if self.hash == now.hash {
                return None;
            }
            let bid = |f: &FileId| {
                if f.build_id.is_empty() {
                    String::new()
                } else {
                    format!(", build-id {}", f.build_id)
                }
            };
            return Some(format!(
                "its content differs: blake3 {}{} at checkpoint, {}{} here",
                self.hash,
                bid(self),
                now.hash,
                bid(now)
            ));
        }
        if self.size != now.size {
            return Some(format!(
                "its size changed from {} to {} bytes since the checkpoint",
                self.size, now.size
            ));
        }
        if self.mtime_ns != now.mtime_ns {
            return Some("it was modified since the checkpoint".to_string());
        }
        None
    }
}

/// A file to identify: the path it is known by and where to open it (a `/proc` link
/// of the process, which reaches the very file it has even if the path was replaced).
pub struct Wanted {
    pub path: String,
    pub via: String,
}

/// Identify `wanted` (paths that cannot be opened are left out), hashing the files the
/// cache does not know on up to as many threads as there are CPUs.
pub fn identify(wanted: &[Wanted], cache: &mut HashCache) -> Vec<FileId> {
    let mut ids: Vec<(FileId, Option<File>)> = Vec::new();
    for w in wanted {
        if ids.iter().any(|(f, _)| f.path == w.path) {
            continue;
        }
        let Ok((mut f, md)) = File::open(&w.via)
            .and_then(|f| f.metadata().map(|m| (f, m)))
            .or_else(|_| File::open(&w.path).and_then(|f| f.metadata().map(|m| (f, m))))
        else {
            continue;
        };
        if !md.is_file() {
            continue;
        }
        let mut id = FileId::from_meta(&w.path, &md);
        id.build_id = elf::build_id(&mut f).unwrap_or_default();
        let open = match cache.get(&id.key()) {
            Some(h) => {
                id.hash = h;
                None
            }
            None => Some(f),
        };
        ids.push((id, open));
    }
    let todo: Vec<(usize, File)> = ids
        .iter_mut()
        .enumerate()
        .filter_map(|(i, (_, f))| Some((i, f.take()?)))
        .collect();
    let hashed = hash_parallel(todo);
    let read = hashed.len();
    for (i, h) in hashed {
        ids[i].0.hash = h.clone();
        cache.put(ids[i].0.key(), h);
    }
    tracing::debug!(
        files = ids.len(),
        read,
        cached = ids.len() - read,
        "file identities"
    );
    ids.into_iter().map(|(f, _)| f).collect()
}

/// The identity of the file at `path` now, content hash included (for the restore's
/// check against a record that has one).
pub fn identify_path(path: &str, cache: &mut HashCache) -> std::io::Result<FileId> {
    let w = [Wanted {
        path: path.to_string(),
        via: path.to_string(),
    }];
    match identify(&w, cache).pop() {
        Some(id) => Ok(id),
        // Not a regular file, or gone meanwhile: the plain identity (or its error).
        None => FileId::of(path),
    }
}

/// BLAKE3 of each file, files spread over up to as many threads as there are CPUs.
fn hash_parallel(files: Vec<(usize, File)>) -> Vec<(usize, String)> {
    parallel(files, |(i, f)| hash_file(f).map(|h| (i, h)))
        .into_iter()
        .flatten()
        .collect()
}

/// `f` of each item on up to as many threads as there are CPUs; results in the items'
/// order.
pub(crate) fn parallel<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len());
    let count = items.len();
    let queue = std::sync::Mutex::new(items.into_iter().enumerate().collect::<Vec<_>>());
    let out = std::sync::Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| loop {
                let Some((i, item)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    break;
                };
                let r = f(item);
                if let Ok(mut o) = out.lock() {
                    o.push((i, r));
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_default();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// BLAKE3 of one open file, as lower-case hex.
pub fn hash_file(mut f: File) -> Option<String> {
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(0)).ok()?;
    let mut h = blake3::Hasher::new();
    h.update_reader(&mut f).ok()?;
    Some(h.finalize().to_hex().to_string())
}

/// BLAKE3 of bytes, as lower-case hex.
pub fn hash_bytes(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// This host's manifest of `paths`: `HASH PATH` a line (what `dump
/// --embed-files=missing-from:` reads), and a message for each path that is not a
/// readable regular file.
pub fn manifest(paths: &[std::path::PathBuf]) -> (String, Vec<String>) {
    let mut cache = HashCache::load(cache::default_path());
    let (mut text, mut problems) = (String::new(), Vec::new());
    for p in paths {
        let path = p.to_string_lossy();
        match identify_path(&path, &mut cache) {
            Ok(id) if !id.hash.is_empty() => text += &format!("{} {path}\n", id.hash),
            Ok(_) => problems.push(format!("{path}: not a regular file")),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    cache.save();
    (text, problems)
}
