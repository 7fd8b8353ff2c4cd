//! Writing page blocks into the process being restored, in parallel.
//!
//! The reader (the restorer's main thread) fills reused buffers with page frames and
//! submits them; worker threads `process_vm_writev` them into the child and hand the
//! buffers back. This is the one place pages come from at restore; a lazy (userfaultfd)
//! page source would sit behind the same submit/finish shape.

use crate::error::{Error, Result};
use crate::model::{Vma, VmaKind};
use spirit_kmod::write_memory;
use std::ops::Range;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = (u64, Vec<u8>, Range<usize>);

pub(crate) struct PageWriter {
    /// (start, end) of VMAs that may receive pages, sorted.
    allowed: Vec<(u64, u64)>,
    jobs: Option<mpsc::SyncSender<Job>>,
    free: mpsc::Receiver<Vec<u8>>,
    error: Arc<Mutex<Option<Error>>>,
    handles: Vec<JoinHandle<()>>,
    pub bytes: u64,
}

impl PageWriter {
    pub fn new(pid: i32, vmas: &[Vma], workers: usize) -> PageWriter {
        let mut allowed: Vec<(u64, u64)> = vmas
            .iter()
            .filter(|v| {
                !(v.kind.is_special() || v.kind == VmaKind::File && v.shared) && v.pages > 0
            })
            .map(|v| (v.start, v.end))
            .collect();
        allowed.sort();
        let workers = workers.clamp(1, 8);
        let (jtx, jrx) = mpsc::sync_channel::<Job>(workers * 2);
        let (ftx, frx) = mpsc::channel::<Vec<u8>>();
        let jrx = Arc::new(Mutex::new(jrx));
        let error = Arc::new(Mutex::new(None));
        let handles = (0..workers)
            .map(|_| {
                let (jrx, ftx, error) = (Arc::clone(&jrx), ftx.clone(), Arc::clone(&error));
                std::thread::spawn(move || loop {
                    let job = match jrx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((addr, buf, range)) = job else { return };
                    if let Err(e) = write_memory(pid, &buf[range.clone()], &[(addr, range.len())]) {
                        if let Ok(mut slot) = error.lock() {
                            slot.get_or_insert(e.into());
                        }
                    }
                    let _ = ftx.send(buf);
                })
            })
            .collect();
        PageWriter {
            allowed,
            jobs: Some(jtx),
            free: frx,
            error,
            handles,
            bytes: 0,
        }
    }

    /// A buffer to read the next frame into (recycled when one is free).
    pub fn spare(&self) -> Option<Vec<u8>> {
        self.free.try_recv().ok()
    }

    /// Queue `buf[range]` for writing at `addr`. Blocks outside the image's memory are
    /// refused (a corrupt image must not write anywhere it likes).
    pub fn submit(&mut self, addr: u64, buf: Vec<u8>, range: Range<usize>) -> Result<()> {
        let end = addr.checked_add(range.len() as u64);
        let i = self.allowed.partition_point(|&(s, _)| s <= addr);
        let inside = i > 0 && end.is_some_and(|e| e <= self.allowed[i - 1].1);
        if !inside {
            return Err(Error::Restore(format!(
                "page block {addr:#x}+{:#x} lies outside the process's memory",
                range.len()
            )));
        }
        if let Some(e) = self.error.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
        self.bytes += range.len() as u64;
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| Error::Restore("page writer closed".into()))?;
        jobs.send((addr, buf, range))
            .map_err(|_| Error::Restore("page writer threads are gone".into()))
    }

    /// Wait for every queued block; the first write error, if any.
    pub fn finish(mut self) -> Result<u64> {
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        if let Some(e) = self.error.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
        Ok(self.bytes)
    }
}

impl Drop for PageWriter {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
