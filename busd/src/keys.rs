//! The daemon's identity key pair, kept in `STATE_DIR/identity.key` (private, mode
//! 0600, hex) and `STATE_DIR/identity.pub` (public, hex, for other hosts' configs);
//! and the hex form of keys that configurations pin. Used by the configuration (to
//! check pinned keys), the peer links (to prove and check identities) and `run`.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// A key that is not 64 hex digits (the text, trimmed).
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not 64 hex digits")]
pub struct BadKey(pub String);

/// Why the identity key cannot be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("state directory {path}: {source}")]
    StateDir { path: PathBuf, source: io::Error },
    #[error("identity key {path}: {source}")]
    File { path: PathBuf, source: KeyFileError },
}

/// What is wrong with the identity key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(transparent)]
    Bad(#[from] BadKey),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("cannot generate a key: {0}")]
    Generate(snow::Error),
    #[error("{0}")]
    Noise(#[from] snow::Error),
    #[error("no static key in the handshake")]
    NoStaticKey,
}

#[derive(Clone)]
pub struct Keypair {
    pub private: Vec<u8>,
    pub public: Vec<u8>,
}

impl Keypair {
    pub fn public_hex(&self) -> String {
        hex(&self.public)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A 32-byte key from 64 hex digits.
pub fn parse_key(s: &str) -> Result<Vec<u8>, BadKey> {
    let s = s.trim();
    let bad = || BadKey(s.to_string());
    if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    (0..32)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad()))
        .collect()
}

fn noise_params() -> snow::params::NoiseParams {
    NOISE_PARAMS.parse().expect("valid Noise parameters")
}

/// Load the identity from `state_dir`, creating the directory and a new key pair on
/// first start.
pub fn load_or_create(state_dir: &Path) -> Result<Keypair, KeyError> {
    let st = |source| KeyError::StateDir {
        path: state_dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(st)?;
    let key_path = state_dir.join("identity.key");
    let bad = |source: KeyFileError| KeyError::File {
        path: key_path.clone(),
        source,
    };
    match std::fs::read_to_string(&key_path) {
        Ok(text) => {
            let private = parse_key(&text).map_err(|e| bad(e.into()))?;
            let public = x25519_public(&private).map_err(bad)?;
            Ok(Keypair { private, public })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let kp = snow::Builder::new(noise_params())
                .generate_keypair()
                .map_err(|e| bad(KeyFileError::Generate(e)))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .map_err(|e| bad(e.into()))?;
            writeln!(f, "{}", hex(&kp.private)).map_err(|e| bad(e.into()))?;
            std::fs::write(
                state_dir.join("identity.pub"),
                format!("{}\n", hex(&kp.public)),
            )
            .map_err(st)?;
            tracing::info!("created identity key {}", key_path.display());
            Ok(Keypair {
                private: kp.private,
                public: kp.public,
            })
        }
        Err(e) => Err(bad(e.into())),
    }
}

/// The public half of an X25519 private key: run a throwaway handshake with it.
fn x25519_public(private: &[u8]) -> Result<Vec<u8>, KeyFileError> {
    // snow does not expose scalar multiplication; an XX handshake sends the
    // responder's static public key in its second message, so read it back from there.
    let mut i = snow::Builder::new(noise_params())
        .local_private_key(
            &snow::Builder::new(noise_params())
                .generate_keypair()?
                .private,
        )
        .build_initiator()?;
    let mut r = snow::Builder::new(noise_params())
        .local_private_key(private)
        .build_responder()?;
    let (mut a, mut b) = ([0u8; 1024], [0u8; 1024]);
    let n = i.write_message(&[], &mut a)?;
    r.read_message(&a[..n], &mut b)?;
    let n = r.write_message(&[], &mut a)?;
    i.read_message(&a[..n], &mut b)?;
    i.get_remote_static()
        .map(|k| k.to_vec())
        .ok_or(KeyFileError::NoStaticKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let a = load_or_create(d.path()).unwrap();
        let b = load_or_create(d.path()).unwrap();
        assert_eq!(a.public, b.public);
        assert_eq!(a.private, b.private);
        let pubtext = std::fs::read_to_string(d.path().join("identity.pub")).unwrap();
        assert_eq!(pubtext.trim(), a.public_hex());
        assert_eq!(parse_key(&a.public_hex()).unwrap(), a.public);
        assert!(parse_key("abc").is_err());
    }

    #[test]
    fn a_bad_key_file_is_named_with_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("identity.key"), "abc\n").unwrap();
        let e = load_or_create(d.path()).err().unwrap().to_string();
        let want = format!(
            "identity key {}: \"abc\" is not 64 hex digits",
            d.path().join("identity.key").display()
        );
        assert_eq!(e, want);
    }
}
