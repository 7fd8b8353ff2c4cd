//! The control messages of a peer link (JSON in encrypted frames; image bytes travel
//! in their own frames): the request, the target's answers, the source's commit.

use super::survey;
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
