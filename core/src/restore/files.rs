//! The files the image needs (executable, mapped files), looked for on this host
//! before anything exists: the file at the same path with the same content is used as
//! is; otherwise, if the image carries the content (`dump --embed-files`), it is put in
//! the content store ([`crate::fileid::store`]) and the process's executable and
//! mappings are made from that copy instead (its /proc/PID/maps names the copy);
//! otherwise the restore is refused naming the file, unless `--allow-changed-files`
//! accepts a file that changed (a missing one is always refused).

use crate::error::{Error, Result};
use crate::fileid::cache::HashCache;
use crate::model::{EmbeddedFile, FileId, ProcessImage};
use std::collections::HashMap;

/// Check every process's needed files, substituting embedded copies where the host's
/// file is missing or different.
pub(crate) fn resolve(procs: &mut [ProcessImage], allow_changed_files: bool) -> Result<()> {
    let embedded: HashMap<String, EmbeddedFile> = procs
        .iter()
        .flat_map(|p| p.embedded.iter())
        .map(|e| (e.hash.clone(), e.clone()))
        .collect();
    let mut hashes = HashCache::load(crate::fileid::cache::default_path());
    let mut stored: HashMap<String, String> = HashMap::new();
    for p in procs.iter_mut() {
        let mut subs: Vec<(String, String)> = Vec::new();
        for f in &p.files {
            let Some(what) = problem(f, &mut hashes) else {
                continue;
            };
            if let Some(e) = embedded.get(&f.hash).filter(|_| !f.hash.is_empty()) {
                let at = match stored.get(&f.hash) {
                    Some(at) => at.clone(),
                    None => {
                        let at = crate::fileid::store::materialize(e)?
                            .to_string_lossy()
                            .into_owned();
                        stored.insert(f.hash.clone(), at.clone());
                        at
                    }
                };
                tracing::info!(path = %f.path, copy = %at, "{what}; using the image's copy");
                subs.push((f.path.clone(), at));
                continue;
            }
            let missing = what.starts_with("missing");
            if allow_changed_files && !missing {
                tracing::warn!(path = %f.path, "{what}; restoring anyway (--allow-changed-files)");
                continue;
            }
            let way_out = if missing {
                "the image holds no copy of it: dump with --embed-files to carry it"
            } else {
                "the process may crash with another version: dump with --embed-files to carry the original, or restore with --allow-changed-files to accept it"
            };
            return Err(Error::FileMismatch {
                path: f.path.clone(),
                what: format!("{what}; {way_out}"),
            });
        }
        for (from, to) in subs {
            substitute(p, &from, &to);
        }
    }
    hashes.save();
    Ok(())
}

/// What is wrong with the host's file at `f.path`, if anything.
fn problem(f: &FileId, hashes: &mut HashCache) -> Option<String> {
    let now = if f.hash.is_empty() {
        FileId::of(&f.path)
    } else {
        crate::fileid::identify_path(&f.path, hashes)
    };
    match now {
        Err(e) => Some(format!("missing on this host ({e})")),
        Ok(now) => f.differs(&now),
    }
}

/// Make `p`'s executable and mappings of `from` come from `to`.
fn substitute(p: &mut ProcessImage, from: &str, to: &str) {
    if p.exe == from {
        p.exe = to.to_string();
    }
    for v in p.vmas.iter_mut().filter(|v| v.path == from) {
        v.path = to.to_string();
    }
}
