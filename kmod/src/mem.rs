//! Copying memory out of and into another process.
//!
//! `process_vm_readv`/`writev` first (fast, batched: up to 1024 remote ranges per call);
//! for what they refuse (PROT_NONE pages, `process_vm_writev` honours protections)
//! `/proc/PID/mem`, which uses FOLL_FORCE.

use crate::error::{Error, Result};
use std::os::unix::fs::FileExt;

const IOV_MAX: usize = 1024;

/// Read the remote ranges `remote` (address, length) of `pid`, back to back, into `local`.
/// `local.len()` must equal the sum of the lengths.
pub fn read_memory(pid: i32, local: &mut [u8], remote: &[(u64, usize)]) -> Result<()> {
    transfer(pid, local.as_mut_ptr(), local.len(), remote, false)
}

/// Write `local` to the remote ranges `remote` (address, length) of `pid`, back to back.
pub fn write_memory(pid: i32, local: &[u8], remote: &[(u64, usize)]) -> Result<()> {
    transfer(pid, local.as_ptr() as *mut u8, local.len(), remote, true)
}

fn transfer(
    pid: i32,
    base: *mut u8,
    len: usize,
    remote: &[(u64, usize)],
    write: bool,
) -> Result<()> {
    if remote.iter().any(|r| r.1 == 0) {
        let nonempty: Vec<(u64, usize)> = remote.iter().copied().filter(|r| r.1 > 0).collect();
        return transfer(pid, base, len, &nonempty, write);
    }
    let total: usize = remote.iter().map(|r| r.1).sum();
    if total != len {
        return Err(Error::Unexpected {
            tid: pid,
            msg: format!("memory copy of {total} bytes into a {len}-byte buffer"),
        });
    }
    let mut idx = 0; // first remote range not fully done
    let mut skip = 0; // bytes of remote[idx] already done
    let mut off = 0; // bytes of local done
    while idx < remote.len() {
        let batch: Vec<libc::iovec> = remote[idx..]
            .iter()
            .take(IOV_MAX)
            .enumerate()
            .map(|(i, &(a, l))| {
                let s = if i == 0 { skip } else { 0 };
                libc::iovec {
                    iov_base: (a as usize + s) as *mut libc::c_void,
                    iov_len: l - s,
                }
            })
            .collect();
        let want: usize = batch.iter().map(|v| v.iov_len).sum();
        let local_iov = libc::iovec {
            // SAFETY: `off + want <= len` because `want` sums remaining remote lengths,
            // which total `len - off`; `base` points to a buffer of `len` bytes.
            iov_base: unsafe { base.add(off) } as *mut libc::c_void,
            iov_len: want,
        };
        // SAFETY: the local iovec covers memory owned by the caller's slice; the remote
        // iovecs are addresses in the other process, which the kernel checks.
        let n = unsafe {
            if write {
                libc::process_vm_writev(pid, &local_iov, 1, batch.as_ptr(), batch.len() as _, 0)
            } else {
                libc::process_vm_readv(pid, &local_iov, 1, batch.as_ptr(), batch.len() as _, 0)
            }
        };
        let mut done = if n < 0 { 0 } else { n as usize };
        // Advance over fully transferred ranges.
        off += done;
        while done > 0 {
            let left = remote[idx].1 - skip;
            if done >= left {
                done -= left;
                idx += 1;
                skip = 0;
            } else {
                skip += done;
                done = 0;
            }
        }
        if n >= 0 && n as usize == want {
            continue;
        }
        if idx >= remote.len() {
            break;
        }
        // The kernel stopped inside remote[idx]: do the rest of it through /proc/PID/mem.
        let (addr, l) = remote[idx];
        let rest = l - skip;
        // SAFETY: `off + rest <= len` (same accounting as above).
        let buf = unsafe { std::slice::from_raw_parts_mut(base.add(off), rest) };
        proc_mem(pid, addr + skip as u64, buf, write)?;
        off += rest;
        idx += 1;
        skip = 0;
    }
    Ok(())
}

fn proc_mem(pid: i32, addr: u64, buf: &mut [u8], write: bool) -> Result<()> {
    let path = format!("/proc/{pid}/mem");
    let err = |e: std::io::Error| Error::Sys {
        call: if write {
            "write /proc/PID/mem"
        } else {
            "read /proc/PID/mem"
        },
        tid: pid,
        errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(&path)
        .map_err(err)?;
    if write {
        f.write_all_at(buf, addr).map_err(err)
    } else {
        f.read_exact_at(buf, addr).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_ranges_of_a_process_including_empty_ones() {
        let pid = std::process::id() as i32;
        let src: Vec<u8> = (0..=255).collect();
        let mut dst = vec![0u8; 64];
        let a = src.as_ptr() as u64;
        read_memory(pid, &mut dst, &[(a, 16), (a + 100, 0), (a + 200, 48)]).unwrap();
        assert_eq!(&dst[..16], &src[..16]);
        assert_eq!(&dst[16..], &src[200..248]);
        read_memory(pid, &mut [], &[]).unwrap();
        read_memory(pid, &mut [], &[(a, 0)]).unwrap();
        assert!(
            read_memory(pid, &mut dst, &[(a, 8)]).is_err(),
            "length mismatch is refused"
        );
    }
}
