//! The image stream: one file (or socket stream), written and read front to back.
//!
//! ```text
//!  preamble, 16 bytes
//!   +0   8  magic  7f 53 50 49 52 49 54 0a  ("\x7fSPIRIT\n", binfmt_misc-matchable)
//!   +8   2  format major, little endian
//!   +10  2  format minor, little endian
//!   +12  4  crc32c of bytes 0..12
//!
//!  frames, back to back
//!   +0   1  kind: 1 header | 2 process | 3 pages | 0x7f trailer
//!   +1   3  zero
//!   +4   4  crc32c over frame bytes 0..4, 8..16 and the payload
//!   +8   8  payload length n, little endian (at most MAX_PAYLOAD)
//!   +16  n  payload
//!
//!  payloads
//!   header   Cap'n Proto `Header`   (exactly one, first)
//!   process  Cap'n Proto `Process`  (one per process; plugin sections inside)
//!   pages    u32 LE m, m bytes Cap'n Proto `PageBlock` {pid, addr, len, flags},
//!            then `len` raw page bytes; blocks are addressed, so their order is
//!            free and a later block for the same pages overrides an earlier one
//!   trailer  Cap'n Proto `Trailer` {frames, pageBytes, crcSum, processes}
//!            (exactly one, last; crcSum is the wrapping sum of all frame crcs)
//! ```
//!
//! Versions: a reader takes the same major and any minor up to its own; anything else
//! is refused naming both versions. A truncated stream, a bad crc, an unknown frame
//! kind, an oversized length or a malformed message are each a typed error naming the
//! byte offset. Nothing here panics on bad bytes.

mod reader;
mod writer;

pub use reader::{Frame, ImageReader};
pub use writer::{encode_page_frame, ImageWriter};

pub const MAGIC: [u8; 8] = *b"\x7fSPIRIT\n";
pub const FORMAT_MAJOR: u16 = 1;
pub const FORMAT_MINOR: u16 = 0;
pub const PREAMBLE_LEN: usize = 16;
pub const FRAME_HEADER_LEN: usize = 16;
/// Largest payload a reader accepts; page blocks are written far smaller.
pub const MAX_PAYLOAD: u64 = 256 << 20;
/// A reader grows a payload buffer by at most this much beyond the bytes that arrived.
pub const PAYLOAD_STEP: u64 = 1 << 20;
/// Size of page blocks the dumper writes.
pub const PAGE_BLOCK_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Header = 1,
    Process = 2,
    Pages = 3,
    Trailer = 0x7f,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Header,
            2 => FrameKind::Process,
            3 => FrameKind::Pages,
            0x7f => FrameKind::Trailer,
            _ => return None,
        })
    }
}

pub(crate) fn preamble() -> [u8; PREAMBLE_LEN] {
    let mut p = [0u8; PREAMBLE_LEN];
    p[..8].copy_from_slice(&MAGIC);
    p[8..10].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
    p[10..12].copy_from_slice(&FORMAT_MINOR.to_le_bytes());
    let crc = crc32c::crc32c(&p[..12]);
    p[12..16].copy_from_slice(&crc.to_le_bytes());
    p
}

/// A frame header with its crc computed over the header fields and the payload parts.
pub(crate) fn frame_header(kind: FrameKind, parts: &[&[u8]]) -> [u8; FRAME_HEADER_LEN] {
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0] = kind as u8;
    h[8..16].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32c::crc32c(&h[..4]);
    crc = crc32c::crc32c_append(crc, &h[8..16]);
    for p in parts {
        crc = crc32c::crc32c_append(crc, p);
    }
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

#[cfg(test)]
mod tests;
