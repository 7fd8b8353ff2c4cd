use super::{frame_header, preamble, FrameKind};
use crate::codec::{self, PageBlockHeader, TrailerInfo};
use crate::model::{Header, ProcessImage};
use std::io::{self, Write};

/// Writes an image front to back. Page frames may be built elsewhere (by copy workers,
/// with [`encode_page_frame`]) and handed in whole.
pub struct ImageWriter<W: Write> {
    out: W,
    stats: TrailerInfo,
    bytes: u64,
}

/// Build the frame header and block header of a page block holding `data`, copied from
/// `addr` in process `pid`. Returns the bytes to write before `data` and the frame crc.
pub fn encode_page_frame(pid: i32, addr: u64, data: &[u8]) -> (Vec<u8>, u32) {
    let block = codec::encode_page_block(&PageBlockHeader {
        pid,
        addr,
        len: data.len() as u64,
        flags: 0,
    });
    let blen = (block.len() as u32).to_le_bytes();
    let fh = frame_header(FrameKind::Pages, &[&blen, &block, data]);
    let mut head = Vec::with_capacity(fh.len() + 4 + block.len());
    head.extend_from_slice(&fh);
    head.extend_from_slice(&blen);
    head.extend_from_slice(&block);
    let crc = u32::from_le_bytes([fh[4], fh[5], fh[6], fh[7]]);
    (head, crc)
}

impl<W: Write> ImageWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&preamble())?;
        Ok(ImageWriter {
            out,
            stats: TrailerInfo::default(),
            bytes: super::PREAMBLE_LEN as u64,
        })
    }

    fn frame(&mut self, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
        let h = frame_header(kind, &[payload]);
        self.out.write_all(&h)?;
        self.out.write_all(payload)?;
        self.count(
            u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
            (h.len() + payload.len()) as u64,
        );
        Ok(())
    }

    fn count(&mut self, crc: u32, bytes: u64) {
        self.stats.frames += 1;
        self.stats.crc_sum = self.stats.crc_sum.wrapping_add(u64::from(crc));
        self.bytes += bytes;
    }

    pub fn write_header(&mut self, h: &Header) -> io::Result<()> {
        self.frame(FrameKind::Header, &codec::encode_header(h))
    }

    pub fn write_process(&mut self, p: &ProcessImage) -> io::Result<()> {
        self.stats.processes += 1;
        self.frame(FrameKind::Process, &codec::encode_process(p))
    }

    /// Write a page frame built by [`encode_page_frame`].
    pub fn write_page_frame(&mut self, head: &[u8], crc: u32, data: &[u8]) -> io::Result<()> {
        self.out.write_all(head)?;
        self.out.write_all(data)?;
        self.stats.page_bytes += data.len() as u64;
        self.count(crc, (head.len() + data.len()) as u64);
        Ok(())
    }

    /// Count a page frame that was written into the same file by someone else (parallel
    /// positional writes, see `dump::pages::copy_pages`).
    pub fn count_page_frame(&mut self, crc: u32, head_len: u64, data_len: u64) {
        self.stats.page_bytes += data_len;
        self.count(crc, head_len + data_len);
    }

    /// Push buffered bytes to the sink.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Convenience for small writers: build and write one page frame.
    pub fn write_pages(&mut self, pid: i32, addr: u64, data: &[u8]) -> io::Result<()> {
        let (head, crc) = encode_page_frame(pid, addr, data);
        self.write_page_frame(&head, crc, data)
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.bytes
    }

    /// Write the trailer and flush; returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        let t = codec::encode_trailer(&self.stats);
        let h = frame_header(FrameKind::Trailer, &[&t]);
        self.out.write_all(&h)?;
        self.out.write_all(&t)?;
        self.out.flush()?;
        Ok(self.out)
    }
}
