//! Where a restore puts the content of a needed file the host lacks: a
//! content-addressed directory, one read-only file per content named by its BLAKE3
//! hash — `$XDG_STATE_HOME/spirit/files`, else `/var/lib/spirit/files` for root and
//! `~/.local/state/spirit/files` for a user (mode 0700).
//!
//! The restored process maps these files (and may re-open its executable) for as long
//! as it lives, which spirit cannot follow, so they are kept: a later restore of the
//! same content reuses the file. Removing them is the administrator's (a file no
//! process maps any more can go; nothing else points at it). Each is written under a
//! temporary name and renamed only once its content has the expected hash and size.

use crate::error::{Error, Result};
use crate::model::EmbeddedFile;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

/// The store's directory.
pub fn dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("spirit/files"));
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/spirit/files"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/spirit/files"))
}

fn bad(hash: &str, what: String) -> Error {
    Error::Restore(format!("the image's copy of file content {hash}: {what}"))
}

/// The path of `file`'s content in the store, written there first if it is not yet.
pub fn materialize(file: &EmbeddedFile) -> Result<PathBuf> {
    let dir = dir().ok_or_else(|| {
        Error::Restore(
            "no directory to store file content in (neither XDG_STATE_HOME nor HOME is set)".into(),
        )
    })?;
    materialize_in(&dir, file)
}

/// [`materialize`] in the store at `dir`.
pub fn materialize_in(dir: &std::path::Path, file: &EmbeddedFile) -> Result<PathBuf> {
    let hash = &file.hash;
    // The name comes from the image: nothing but a hash may become a path.
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad(hash, "its name is not a BLAKE3 hash".into()));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir.display().to_string(), e))?;
    let path = dir.join(hash);
    let have = std::fs::File::open(&path)
        .ok()
        .and_then(super::hash_file)
        .is_some_and(|h| h == *hash);
    if have {
        return Ok(path);
    }
    let io = |e| Error::io(path.display().to_string(), e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let mut dec = zstd::stream::read::Decoder::new(file.zstd.as_slice())
        .map_err(|e| bad(hash, format!("cannot decompress: {e}")))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n: u64 = 0;
    loop {
        let k = std::io::Read::read(&mut dec, &mut buf)
            .map_err(|e| bad(hash, format!("cannot decompress: {e}")))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > file.size {
            return Err(bad(
                hash,
                format!("longer than its recorded {} bytes", file.size),
            ));
        }
        hasher.update(&buf[..k]);
        tmp.write_all(&buf[..k]).map_err(io)?;
    }
    let got = hasher.finalize().to_hex().to_string();
    if n != file.size || got != *hash {
        return Err(bad(
            hash,
            format!("decompresses to {n} bytes with blake3 {got}"),
        ));
    }
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o500))
        .map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded(data: &[u8]) -> EmbeddedFile {
        EmbeddedFile {
            hash: crate::fileid::hash_bytes(data),
            size: data.len() as u64,
            zstd: zstd::bulk::compress(data, 3).unwrap(),
        }
    }

    #[test]
    fn writes_once_and_verifies() {
        let d = tempfile::tempdir().unwrap();
        let e = embedded(b"library bytes");
        let p = materialize_in(d.path(), &e).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"library bytes");
        assert_eq!(materialize_in(d.path(), &e).unwrap(), p);
    }

    #[test]
    fn bad_image_data_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let good = embedded(b"library bytes");
        let cases = [
            EmbeddedFile {
                hash: "../../etc/passwd".into(),
                ..good.clone()
            },
            EmbeddedFile {
                size: 3,
                ..good.clone()
            },
            EmbeddedFile {
                size: 100,
                ..good.clone()
            },
            EmbeddedFile {
                zstd: b"not zstd at all".to_vec(),
                ..good.clone()
            },
            EmbeddedFile {
                hash: crate::fileid::hash_bytes(b"other"),
                ..good.clone()
            },
        ];
        for c in cases {
            assert!(materialize_in(d.path(), &c).is_err(), "{c:?}");
        }
        // Nothing half-written was left under a hash's name.
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert!(names.is_empty(), "{names:?}");
    }
}
