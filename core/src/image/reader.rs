use super::{
    FrameKind, FORMAT_MAJOR, FORMAT_MINOR, FRAME_HEADER_LEN, MAGIC, MAX_PAYLOAD, PAYLOAD_STEP,
    PREAMBLE_LEN,
};
use crate::codec::{self, TrailerInfo};
use crate::error::{Error, Result};
use crate::model::{Header, ProcessImage};
use std::io::{ErrorKind, Read};
use std::ops::Range;

/// One decoded frame. Page data stays in the caller's buffer (`data` is its range there),
/// so buffers can be reused across frames.
#[derive(Debug)]
pub enum Frame {
    Header(Box<Header>),
    Process(Box<ProcessImage>),
    Pages {
        pid: i32,
        addr: u64,
        data: Range<usize>,
    },
    /// The trailer, already checked against everything read before it.
    End(TrailerInfo),
}

/// Reads and verifies an image front to back.
pub struct ImageReader<R: Read> {
    inp: R,
    /// Set by [`ImageReader::spool`]: the rest of the stream, saved, read from here on.
    spooled: Option<std::fs::File>,
    path: String,
    pos: u64,
    seen: TrailerInfo,
    had_header: bool,
    ended: bool,
}

impl<R: Read> ImageReader<R> {
    /// Read and check the preamble. `path` names the image in errors.
    pub fn new(inp: R, path: &str) -> Result<Self> {
        let mut r = ImageReader {
            inp,
            spooled: None,
            path: path.to_string(),
            pos: 0,
            seen: TrailerInfo::default(),
            had_header: false,
            ended: false,
        };
        let mut p = [0u8; PREAMBLE_LEN];
        let got = r.fill(&mut p)?;
        if got < MAGIC.len() || p[..MAGIC.len()] != MAGIC {
            if got < MAGIC.len() && MAGIC.starts_with(&p[..got]) {
                return Err(r.truncated(got as u64, "in the preamble"));
            }
            return Err(Error::NotAnImage { path: r.path });
        }
        if got < PREAMBLE_LEN {
            return Err(r.truncated(got as u64, "in the preamble"));
        }
        r.pos = PREAMBLE_LEN as u64;
        let crc = u32::from_le_bytes([p[12], p[13], p[14], p[15]]);
        if crc32c::crc32c(&p[..12]) != crc {
            return Err(r.corrupt(0, "preamble checksum mismatch".into()));
        }
        let major = u16::from_le_bytes([p[8], p[9]]);
        let minor = u16::from_le_bytes([p[10], p[11]]);
        if major != FORMAT_MAJOR || minor > FORMAT_MINOR {
            return Err(Error::Version {
                path: r.path,
                found: format!("{major}.{minor}"),
                supported: format!("{FORMAT_MAJOR}.0 to {FORMAT_MAJOR}.{FORMAT_MINOR}"),
            });
        }
        Ok(r)
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn truncated(&self, offset: u64, what: &str) -> Error {
        Error::Truncated {
            path: self.path.clone(),
            offset,
            what: what.to_string(),
        }
    }

    fn corrupt(&self, offset: u64, what: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            offset,
            what,
        }
    }

    /// Read as much of `buf` as the stream has; returns how much that was.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            let r = match self.spooled.as_mut() {
                Some(f) => f.read(&mut buf[got..]),
                None => self.inp.read(&mut buf[got..]),
            };
            match r {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        Ok(got)
    }

    /// Read a payload of `len` bytes into `buf`, growing it by at most [`PAYLOAD_STEP`]
    /// beyond what has arrived: a length field alone never makes us allocate more than
    /// the stream holds (plus one step).
    fn read_payload(&mut self, buf: &mut Vec<u8>, len: u64) -> Result<()> {
        buf.clear();
        let mut left = len;
        while left > 0 {
            let step = left.min(PAYLOAD_STEP) as usize;
            let have = buf.len();
            buf.resize(have + step, 0);
            let got = self.fill(&mut buf[have..])?;
            self.pos += got as u64;
            if got < step {
                buf.truncate(have + got);
                return Err(self.truncated(self.pos, "inside a frame"));
            }
            left -= step as u64;
        }
        Ok(())
    }

    /// Save the rest of the stream into an unnamed temporary file and read from there on.
    /// A restore reading from a pipe uses it when it must wait for the writer to finish
    /// (e.g. `spirit dump P -o - | spirit restore -`: the pid frees only after the dump).
    pub fn spool(&mut self) -> Result<u64> {
        use std::io::{Seek, SeekFrom};
        let mut f = tempfile::tempfile().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let n = std::io::copy(&mut self.inp, &mut f).map_err(|e| Error::io(&self.path, e))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&self.path, e))?;
        self.spooled = Some(f);
        Ok(n)
    }

    /// Read and verify the next frame; page bytes go into `buf` (resized, its capacity
    /// reused). After [`Frame::End`] the stream is finished.
    pub fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<Frame> {
        if self.ended {
            return Err(self.corrupt(self.pos, "read past the trailer".into()));
        }
        let start = self.pos;
        let mut h = [0u8; FRAME_HEADER_LEN];
        let got = self.fill(&mut h)?;
        if got < FRAME_HEADER_LEN {
            let what = if got == 0 {
                "the trailer is missing"
            } else {
                "inside a frame header"
            };
            return Err(self.truncated(start + got as u64, what));
        }
        self.pos += FRAME_HEADER_LEN as u64;
        let kind = FrameKind::from_u8(h[0]).filter(|_| h[1..4] == [0, 0, 0]);
        let len = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let Some(kind) = kind else {
            return Err(self.corrupt(start, format!("unknown frame kind {:#04x}", h[0])));
        };
        if len > MAX_PAYLOAD {
            return Err(self.corrupt(start, format!("frame length {len} exceeds the limit")));
        }
        self.read_payload(buf, len)?;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let mut c = crc32c::crc32c(&h[..4]);
        c = crc32c::crc32c_append(c, &h[8..16]);
        c = crc32c::crc32c_append(c, buf);
        if c != crc {
            return Err(self.corrupt(start, format!("checksum mismatch in a {kind:?} frame")));
        }
        let bad = |e: capnp::Error| Error::Corrupt {
            path: self.path.clone(),
            offset: start,
            what: format!("malformed {kind:?} frame: {e}"),
        };
        if kind != FrameKind::Header && !self.had_header {
            return Err(self.corrupt(start, "the first frame is not the header".into()));
        }
        let frame = match kind {
            FrameKind::Header => {
                if self.had_header {
                    return Err(self.corrupt(start, "a second header".into()));
                }
                self.had_header = true;
                Frame::Header(Box::new(codec::decode_header(buf).map_err(bad)?))
            }
            FrameKind::Process => {
                self.seen.processes += 1;
                Frame::Process(Box::new(codec::decode_process(buf).map_err(bad)?))
            }
            FrameKind::Pages => {
                let m = buf
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                let block_end = m.map(|m| 4 + m).filter(|&e| e <= buf.len());
                let Some(block_end) = block_end else {
                    return Err(self.corrupt(start, "page block header overruns its frame".into()));
                };
                let b = codec::decode_page_block(&buf[4..block_end]).map_err(bad)?;
                if b.len != (buf.len() - block_end) as u64 || b.flags != 0 || b.addr % 4096 != 0 {
                    return Err(self.corrupt(
                        start,
                        format!("page block at {:#x}: bad length or flags", b.addr),
                    ));
                }
                self.seen.page_bytes += b.len;
                Frame::Pages {
                    pid: b.pid,
                    addr: b.addr,
                    data: block_end..buf.len(),
                }
            }
            FrameKind::Trailer => {
                let t = codec::decode_trailer(buf).map_err(bad)?;
                if t != self.seen {
                    return Err(self.corrupt(
                        start,
                        format!(
                            "trailer does not match the content (trailer: {} frames, {} page bytes; read: {} frames, {} page bytes)",
                            t.frames, t.page_bytes, self.seen.frames, self.seen.page_bytes
                        ),
                    ));
                }
                self.ended = true;
                return Ok(Frame::End(t));
            }
        };
        self.seen.frames += 1;
        self.seen.crc_sum = self.seen.crc_sum.wrapping_add(u64::from(crc));
        Ok(frame)
    }
}
