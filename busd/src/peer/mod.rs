//! Peers: other hosts' `spiritd` daemons this one trusts.
//!
//! Each daemon has an identity key pair (X25519, created on first start in the state
//! directory); the configuration pins every peer's address and public key. A link is a
//! TCP connection that opens with a Noise XX handshake (`link`): both sides prove their
//! static keys, and a key not pinned in the configuration ends the connection before
//! any request or image byte is read. After it, every frame is encrypted.
//!
//! Migration: the source (`source`, a `migrate` job) sends a request with the size of
//! the tree's pages and the files it needs (`survey`), the target (`target`, an
//! `incoming` job) accepts or refuses by its policy (users, concurrent incoming, free
//! memory, files missing or different), then the image
//! streams from `spirit dump -o -` on the frozen source straight into
//! `spirit restore -` on the target, the target confirms the process runs, and only
//! then the source tells its dump worker to end the original (`k` on its verdict fd).

mod keys;
mod link;
mod source;
pub mod survey;
mod target;

pub use keys::{load_or_create, parse_key, Keypair};
pub use source::migrate;
pub use target::listen;

use serde::{Deserialize, Serialize};

/// Control messages on a link (JSON in encrypted frames; image bytes travel in their
/// own frames).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// Source → target: please take this process (its tree holds `page_bytes` of
    /// pages and needs `files`; see `survey`).
    Migrate {
        pid: u32,
        comm: String,
        user: String,
        uid: u32,
        #[serde(default)]
        page_bytes: u64,
        #[serde(default)]
        files: Vec<survey::NeededFile>,
        /// Restore into a new pid namespace on the target, keeping the pids.
        #[serde(default)]
        pid_ns: bool,
    },
    /// Target → source: send the image.
    Accept,
    /// Target → source: no (policy), with the reason.
    Refuse { reason: String },
    /// Source → target: the whole image was sent.
    End,
    /// Target → source: the process runs here as `pid`.
    Restored { pid: u32 },
    /// Target → source: the restore failed; nothing runs here.
    Failed { reason: String },
    /// Source → target: the original was ended (or kept, when asked).
    Commit { source_ended: bool },
}
