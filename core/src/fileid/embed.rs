//! `spirit dump --embed-files`: the content of needed files carried in the image,
//! content-addressed (one copy per content, in the first process record that needs
//! it), zstd-compressed. Which files: all of them, or those whose hash a target's
//! manifest (`spirit manifest PATH...` there) does not list.

use crate::error::{Error, Result};
use crate::model::{EmbeddedFile, FileId, ProcessImage, VmaKind};
use std::collections::HashSet;

/// zstd level: fast, and most of a library's size goes anyway.
const LEVEL: i32 = 3;

/// Which needed files a dump carries.
#[derive(Clone, Debug, Default)]
pub enum EmbedFiles {
    /// None: the image names files by identity only.
    #[default]
    None,
    All,
    /// Those whose hash is not in this set (a target host's manifest).
    MissingFrom(HashSet<String>),
}

impl EmbedFiles {
    pub fn wants(&self, hash: &str) -> bool {
        match self {
            EmbedFiles::None => false,
            EmbedFiles::All => true,
            EmbedFiles::MissingFrom(have) => !have.contains(hash),
        }
    }

    /// Parse a manifest: one hash a line, as the first word (what follows, a path, is
    /// for people); blank lines and `#` comments skipped.
    pub fn from_manifest(text: &str) -> EmbedFiles {
        EmbedFiles::MissingFrom(
            text.lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|w| !w.starts_with('#'))
                .map(str::to_ascii_lowercase)
                .collect(),
        )
    }
}

/// The content of `proc`'s needed files that `want` asks for and no earlier process
/// record carries (`done`: hashes embedded so far in this image), read through the
/// process's own links (`/proc/PID/exe`, `map_files`) so a file replaced at its path
/// since does not slip in; the content must still have the recorded hash.
pub fn embed(
    pid: i32,
    proc: &ProcessImage,
    want: &EmbedFiles,
    done: &mut HashSet<String>,
) -> Result<Vec<EmbeddedFile>> {
    let mut todo: Vec<(&FileId, Option<String>)> = Vec::new();
    for f in &proc.files {
        if f.hash.is_empty() || !want.wants(&f.hash) || !done.insert(f.hash.clone()) {
            continue;
        }
        let via = if f.path == proc.exe {
            Some(format!("/proc/{pid}/exe"))
        } else {
            proc.vmas
                .iter()
                .find(|v| v.kind == VmaKind::File && v.path == f.path)
                .map(|v| format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end))
        };
        todo.push((f, via));
    }
    // Read, check and compress on as many threads as there are CPUs: the tree is
    // frozen meanwhile.
    super::parallel(todo, |(f, via)| one(pid, f, via))
        .into_iter()
        .collect()
}

/// Read the content of `f` (through `via` where it can), check it still has the
/// recorded hash and compress it.
fn one(pid: i32, f: &FileId, via: Option<String>) -> Result<EmbeddedFile> {
    let data = via
        .and_then(|v| std::fs::read(v).ok())
        .map_or_else(|| std::fs::read(&f.path), Ok)
        .map_err(|e| Error::io(&f.path, e))?;
    if super::hash_bytes(&data) != f.hash {
        return Err(Error::Dump {
            pid,
            msg: format!(
                "{} changed while it was being embedded (its content no longer has blake3 {})",
                f.path, f.hash
            ),
        });
    }
    let zstd = zstd::bulk::compress(&data, LEVEL).map_err(|e| Error::io(&f.path, e))?;
    tracing::debug!(path = %f.path, size = data.len(), compressed = zstd.len(), "embedded");
    Ok(EmbeddedFile {
        hash: f.hash.clone(),
        size: data.len() as u64,
        zstd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines() {
        let h = "AB".repeat(32);
        let m = EmbedFiles::from_manifest(&format!("# comment\n\n{h} /usr/lib/x.so\n"));
        assert!(!m.wants(&h.to_ascii_lowercase()));
        assert!(m.wants(&"cd".repeat(32)));
        assert!(!EmbedFiles::None.wants(&h) && EmbedFiles::All.wants(&h));
    }
}
