//! Which pages of a frozen process go into the image, and copying them out in parallel.
//!
//! Policy (KERNEL-NOTES, "DUMP"): anonymous memory — pages present or swapped;
//! private file mappings — only pages that became anonymous (copy-on-write: present and
//! not a file page) or swapped; shared file mappings — nothing (the file holds them);
//! kernel special mappings — nothing.
//!
//! Copy: workers take jobs of up to one block of bytes made of whole runs, read them with
//! one batched `process_vm_readv` into a reused staging buffer, compute the frame crcs,
//! and hand the buffer to the writer thread (the caller's), which writes frames in
//! arrival order (blocks are addressed, order does not matter) and returns the buffer.

use crate::error::{Error, Result};
use crate::image::{encode_page_frame, ImageWriter, PAGE_BLOCK_BYTES};
use crate::model::{Vma, VmaKind};
use spirit_kmod::{read_memory, PAGE_SIZE};
use std::io::Write;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

/// Decide the pages to store for each VMA (setting `Vma::pages`) and return them as
/// contiguous runs `(address, length)`, none longer than a page block.
pub fn plan(pid: i32, vmas: &mut [Vma]) -> Result<Vec<(u64, usize)>> {
    let path = format!("/proc/{pid}/pagemap");
    let pm = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut runs: Vec<(u64, usize)> = Vec::new();
    let mut entries: Vec<u8> = Vec::new();
    for vma in vmas.iter_mut() {
        if vma.kind.is_special()
            || (vma.kind == VmaKind::File && vma.shared)
            || vma.has_flag("io")
            || vma.has_flag("pf")
        {
            continue;
        }
        let npages = (vma.len() / PAGE_SIZE) as usize;
        entries.resize(npages * 8, 0);
        pm.read_exact_at(&mut entries, vma.start / PAGE_SIZE * 8)
            .map_err(|e| Error::io(&path, e))?;
        let file_private = vma.kind == VmaKind::File;
        let mut count = 0;
        let first_run = runs.len(); // runs never span two VMAs
        for (i, e) in entries.chunks_exact(8).enumerate() {
            let e = u64::from_le_bytes(e.try_into().expect("8 bytes"));
            let take = if file_private {
                (e & PM_PRESENT != 0 && e & PM_FILE == 0) || e & PM_SWAPPED != 0
            } else {
                e & (PM_PRESENT | PM_SWAPPED) != 0
            };
            if !take {
                continue;
            }
            count += 1;
            let addr = vma.start + i as u64 * PAGE_SIZE;
            let in_vma = runs.len() > first_run;
            match runs.last_mut().filter(|_| in_vma) {
                Some((a, l)) if *a + *l as u64 == addr && *l < PAGE_BLOCK_BYTES => {
                    *l += PAGE_SIZE as usize
                }
                _ => runs.push((addr, PAGE_SIZE as usize)),
            }
        }
        vma.pages = count;
    }
    Ok(runs)
}

/// The error for a batch that could not be read: the first run that cannot be read on
/// its own is named (never a bare EIO from somewhere in a batch).
fn unreadable(pid: i32, ranges: &[(u64, usize)], e: spirit_kmod::Error) -> Error {
    let mut one = Vec::new();
    for &(addr, len) in ranges {
        one.resize(len, 0);
        if let Err(e) = read_memory(pid, &mut one, &[(addr, len)]) {
            return Error::Unsupported {
                pid,
                what: format!(
                    "the memory at {addr:#x}-{:#x} cannot be read by any route ({e}); see /proc/{pid}/smaps for the area",
                    addr + len as u64
                ),
            };
        }
    }
    e.into()
}

struct Filled {
    buf: Vec<u8>,
    /// (frame head, crc, range in buf, address)
    frames: Vec<(Vec<u8>, u32, std::ops::Range<usize>)>,
}

/// Copy `runs` of process `pid` into page frames of `w` with `workers` threads.
/// `progress(done_bytes)` is called from the writer side.
///
/// With `file` (the very file `w` writes to, sharing its file offset, and empty when
/// the image began) the workers write their frames themselves with `pwrite` at
/// reserved offsets, in parallel (fresh tmpfs or page-cache pages are allocated by both
/// cores); `w` only counts them, and the file offset is moved past them at the end.
pub fn copy_pages<W: Write>(
    pid: i32,
    runs: &[(u64, usize)],
    w: &mut ImageWriter<W>,
    workers: usize,
    file: Option<&std::fs::File>,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    if file.is_some() {
        w.flush().map_err(|e| Error::io("image", e))?;
    }
    let next_offset = AtomicU64::new(w.position());
    // Jobs: consecutive runs totalling at most one block.
    let mut jobs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in runs.iter().enumerate() {
        if bytes + r.1 > PAGE_BLOCK_BYTES && i > start {
            jobs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += r.1;
    }
    if start < runs.len() {
        jobs.push(start..runs.len());
    }
    let workers = workers.clamp(1, 8).min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<Filled>>(workers * 2);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let free_rx = std::sync::Mutex::new(free_rx);
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..workers {
            let full_tx = full_tx.clone();
            let (next, jobs, free_rx, next_offset) = (&next, &jobs, &free_rx, &next_offset);
            s.spawn(move || loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(j) else { return };
                let recycled = free_rx.lock().ok().and_then(|rx| rx.try_recv().ok());
                let mut buf = recycled.unwrap_or_default();
                let ranges = &runs[job.clone()];
                let total: usize = ranges.iter().map(|r| r.1).sum();
                buf.resize(total, 0);
                let res = read_memory(pid, &mut buf, ranges)
                    .map_err(|e| unreadable(pid, ranges, e))
                    .map(|()| {
                        let mut off = 0;
                        let frames = ranges
                            .iter()
                            .map(|&(addr, len)| {
                                let (head, crc) =
                                    encode_page_frame(pid, addr, &buf[off..off + len]);
                                off += len;
                                (head, crc, off - len..off)
                            })
                            .collect();
                        Filled { buf, frames }
                    })
                    .and_then(|filled| match file {
                        Some(f) => pwrite_frames(f, next_offset, filled),
                        None => Ok(filled),
                    });
                let failed = res.is_err();
                if full_tx.send(res).is_err() || failed {
                    return;
                }
            });
        }
        drop(full_tx);
        let mut done = 0u64;
        for filled in full_rx {
            let filled = filled?;
            for (head, crc, range) in &filled.frames {
                if file.is_some() {
                    w.count_page_frame(*crc, head.len() as u64, range.len() as u64);
                } else {
                    w.write_page_frame(head, *crc, &filled.buf[range.clone()])
                        .map_err(|e| Error::io("image", e))?;
                }
                done += range.len() as u64;
            }
            progress(done);
            let _ = free_tx.send(filled.buf);
        }
        if let Some(mut f) = file {
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(next_offset.load(Ordering::SeqCst)))
                .map_err(|e| Error::io("image", e))?;
        }
        Ok(())
    })
}

/// Write a worker's frames at offsets reserved in the image file.
fn pwrite_frames(f: &std::fs::File, next_offset: &AtomicU64, filled: Filled) -> Result<Filled> {
    use std::os::unix::fs::FileExt as _;
    for (head, _, range) in &filled.frames {
        let len = (head.len() + range.len()) as u64;
        let at = next_offset.fetch_add(len, Ordering::SeqCst);
        f.write_all_at(head, at)
            .map_err(|e| Error::io("image", e))?;
        f.write_all_at(&filled.buf[range.clone()], at + head.len() as u64)
            .map_err(|e| Error::io("image", e))?;
    }
    Ok(filled)
}
