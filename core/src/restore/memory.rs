//! Replacing the restore child's address space with the image's (KERNEL-NOTES steps
//! 3–9): syscall area, rseq off, old mappings out, vdso/vvar moved, image mappings in,
//! pages written, protections and mm fields set.

use super::pages::PageWriter;
use crate::error::{Error, Result};
use crate::image::{Frame, ImageReader};
use crate::mapped::Objects;
use crate::model::{ProcessImage, Vma, VmaKind};
use crate::procinfo;
use spirit_kmod::{find_syscall_gadget, write_memory, Tracee, PAGE_SIZE};
use std::io::Read;

/// Syscall instruction page plus scratch pages.
pub(crate) const AREA_LEN: u64 = 16 * PAGE_SIZE;
/// Room right after the area where vdso/vvar are parked while they move.
const PARK_LEN: u64 = 32 * PAGE_SIZE;
const MMAP_MIN: u64 = 0x10000;
const GUARD_GAP: u64 = 1 << 20;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const PR_SET_MM_MAP_SIZE: u64 = 104;

/// The syscall area in the child: `syscall; int3; int3` at `base`, scratch after it.
pub(crate) struct Area {
    pub base: u64,
}

impl Area {
    pub fn gadget(&self) -> u64 {
        self.base
    }
    pub fn scratch(&self) -> u64 {
        self.base + PAGE_SIZE
    }
    pub fn scratch_len(&self) -> u64 {
        AREA_LEN - PAGE_SIZE
    }
}

/// Lowest address range free in both layouts (and away from stack guard gaps).
fn choose_area(child: &[Vma], image: &[Vma]) -> Result<u64> {
    let mut busy: Vec<(u64, u64)> = child
        .iter()
        .chain(image.iter())
        .map(|v| {
            let lo = if v.has_flag("gd") || v.kind == VmaKind::Stack {
                v.start.saturating_sub(GUARD_GAP)
            } else {
                v.start
            };
            (lo, v.end)
        })
        .collect();
    busy.sort();
    let need = AREA_LEN + PARK_LEN;
    let mut cand = MMAP_MIN;
    for (s, e) in busy {
        if s >= cand + need {
            return Ok(cand);
        }
        cand = cand.max(e);
    }
    if cand + need < 0x7fff_ffff_f000 {
        return Ok(cand);
    }
    Err(Error::Restore(
        "no free address range for the syscall page".into(),
    ))
}

fn errno_of(ret: i64) -> Option<nix::errno::Errno> {
    (-4095..0)
        .contains(&ret)
        .then(|| nix::errno::Errno::from_raw(-ret as i32))
}

/// Put a NUL-terminated path into the scratch area; returns its address.
fn put_path(pid: i32, area: &Area, path: &str) -> Result<u64> {
    let mut b = path.as_bytes().to_vec();
    b.push(0);
    if b.len() as u64 > area.scratch_len() {
        return Err(Error::Restore(format!("path too long: {path}")));
    }
    write_memory(pid, &b, &[(area.scratch(), b.len())])?;
    Ok(area.scratch())
}

/// Steps 3–7: from the forked restorer's layout to the image's mappings, empty.
pub(crate) fn prepare(main: &mut Tracee, proc: &ProcessImage, objects: &Objects) -> Result<Area> {
    let pid = main.tid();
    let gadget0 = find_syscall_gadget(pid)?;
    let child_vmas = procinfo::vmas(pid)?;
    let area = Area {
        base: choose_area(&child_vmas, &proc.vmas)?,
    };
    let rwx = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let got = main.syscall_ok(
        gadget0,
        libc::SYS_mmap,
        &[area.base, AREA_LEN, rwx, anon, u64::MAX, 0],
        "mmap (syscall page)",
    )?;
    if got as u64 != area.base {
        return Err(Error::Restore(format!(
            "syscall page landed at {got:#x}, not {:#x}",
            area.base
        )));
    }
    write_memory(pid, &[0x0f, 0x05, 0xcc, 0xcc], &[(area.base, 4)])?;
    let g = area.gadget();

    // 4. The child's own rseq must go before the memory it points to (P3).
    if let Some(r) = main.rseq()? {
        main.syscall_ok(
            g,
            libc::SYS_rseq,
            &[
                r.ptr,
                u64::from(r.len),
                RSEQ_FLAG_UNREGISTER,
                u64::from(r.sig),
            ],
            "rseq (unregister)",
        )?;
    }
    // 5. Everything of the restorer goes, but the area and the kernel's special mappings.
    for v in &child_vmas {
        if v.kind.is_special() {
            continue;
        }
        main.syscall_ok(
            g,
            libc::SYS_munmap,
            &[v.start, v.len()],
            "munmap (restorer memory)",
        )?;
    }
    // 6. vvar, vvar_vclock, vdso to their image addresses, parking first (P7).
    move_specials(main, g, &area, &child_vmas, &proc.vmas)?;
    // 7. The image's mappings.
    for v in proc.vmas.iter().filter(|v| !v.kind.is_special()) {
        map_vma(main, &area, v, objects)?;
    }
    Ok(area)
}

/// Step 8: the pages of every process of the image, read to the trailer from `rd` and
/// written into their processes (`targets`: image pid, live pid, memory layout).
pub(crate) fn write_pages<R: Read>(
    rd: &mut ImageReader<R>,
    pending: Option<(Frame, Vec<u8>)>,
    targets: &[(i32, i32, &[Vma])],
    workers: usize,
) -> Result<u64> {
    let mut writers: Vec<(i32, PageWriter)> = targets
        .iter()
        .map(|&(orig, live, vmas)| (orig, PageWriter::new(live, vmas, workers)))
        .collect();
    let mut first = pending;
    loop {
        let (frame, b) = match first.take() {
            Some(x) => x,
            None => {
                let mut b = writers
                    .iter()
                    .find_map(|(_, w)| w.spare())
                    .unwrap_or_default();
                let f = rd.next_frame(&mut b)?;
                (f, b)
            }
        };
        match frame {
            Frame::Pages { pid: p, addr, data } => {
                let Some((_, writer)) = writers.iter_mut().find(|(o, _)| *o == p) else {
                    return Err(corrupt(
                        rd,
                        format!("page block for pid {p}, which is not in the image"),
                    ));
                };
                writer.submit(addr, b, data).map_err(|e| match e {
                    Error::Restore(m) => corrupt(rd, m),
                    other => other,
                })?;
            }
            Frame::End(_) => break,
            Frame::Header(_) | Frame::Process(_) => {
                return Err(corrupt(rd, "process record among the page blocks".into()));
            }
        }
    }
    let mut bytes = 0;
    for (_, w) in writers {
        bytes += w.finish()?;
    }
    Ok(bytes)
}

/// After the pages: final protections, memory advice, then PR_SET_MM_MAP (step 9).
pub(crate) fn finish(main: &mut Tracee, area: &Area, proc: &ProcessImage) -> Result<()> {
    let g = area.gadget();
    for v in proc.vmas.iter().filter(|v| !v.kind.is_special()) {
        if map_prot(v) != u64::from(v.prot) {
            main.syscall_ok(
                g,
                libc::SYS_mprotect,
                &[v.start, v.len(), u64::from(v.prot)],
                "mprotect",
            )?;
        }
        for (flag, advice) in [
            ("dc", libc::MADV_DONTFORK),
            ("wf", libc::MADV_WIPEONFORK),
            ("hg", libc::MADV_HUGEPAGE),
            ("nh", libc::MADV_NOHUGEPAGE),
            ("dd", libc::MADV_DONTDUMP),
        ] {
            if v.has_flag(flag) {
                // Advice is best effort (THP may be off on this host).
                let _ = main.syscall(g, libc::SYS_madvise, &[v.start, v.len(), advice as u64]);
            }
        }
    }
    set_mm(main, area, proc)
}

fn corrupt<R: Read>(rd: &ImageReader<R>, what: String) -> Error {
    Error::Corrupt {
        path: rd.path().to_string(),
        offset: rd.position(),
        what,
    }
}

fn move_specials(
    main: &mut Tracee,
    g: u64,
    area: &Area,
    child: &[Vma],
    image: &[Vma],
) -> Result<()> {
    let kinds = [VmaKind::Vvar, VmaKind::VvarVclock, VmaKind::Vdso];
    let park = area.base + AREA_LEN;
    let mut parked = Vec::new();
    let mut off = 0;
    let mayfix = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    for kind in kinds {
        let c = child.iter().find(|v| v.kind == kind);
        let i = image.iter().find(|v| v.kind == kind);
        match (c, i) {
            (Some(c), Some(i)) => {
                if c.len() != i.len() {
                    return Err(Error::Restore(format!(
                        "the image's {} is {} bytes, this kernel's is {}: restore on the kernel the image was taken on",
                        c.path,
                        i.len(),
                        c.len()
                    )));
                }
                if off + c.len() > PARK_LEN {
                    return Err(Error::Restore(
                        "vdso/vvar larger than the parking room".into(),
                    ));
                }
                main.syscall_ok(
                    g,
                    libc::SYS_mremap,
                    &[c.start, c.len(), c.len(), mayfix, park + off],
                    "mremap (park vdso/vvar)",
                )?;
                parked.push((park + off, c.len(), i.start));
                off += c.len();
            }
            (Some(c), None) => {
                main.syscall_ok(
                    g,
                    libc::SYS_munmap,
                    &[c.start, c.len()],
                    "munmap (vdso/vvar)",
                )?;
            }
            (None, Some(i)) => {
                return Err(Error::Restore(format!(
                    "the image has {} but this kernel maps none",
                    i.path
                )));
            }
            (None, None) => {}
        }
    }
    for (from, len, to) in parked {
        main.syscall_ok(
            g,
            libc::SYS_mremap,
            &[from, len, len, mayfix, to],
            "mremap (vdso/vvar)",
        )?;
    }
    Ok(())
}

/// Protection a VMA is mapped with while its pages are written.
fn map_prot(v: &Vma) -> u64 {
    let mut p = u64::from(v.prot);
    if v.pages > 0 {
        p |= (libc::PROT_READ | libc::PROT_WRITE) as u64;
    }
    p
}

fn map_vma(main: &mut Tracee, area: &Area, v: &Vma, objects: &Objects) -> Result<()> {
    let pid = main.tid();
    let g = area.gadget();
    let mut flags = libc::MAP_FIXED as u64;
    flags |= if v.shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    } as u64;
    if v.has_flag("gd") {
        flags |= libc::MAP_GROWSDOWN as u64;
    }
    if v.has_flag("nr") {
        flags |= libc::MAP_NORESERVE as u64;
    }
    let prot = map_prot(v);
    let object = objects.path_for(v);
    if v.kind != VmaKind::File && object.is_none() {
        flags |= libc::MAP_ANONYMOUS as u64;
        main.syscall_ok(
            g,
            libc::SYS_mmap,
            &[v.start, v.len(), prot, flags, u64::MAX, 0],
            "mmap (anonymous)",
        )?;
        return Ok(());
    }
    let path = object.as_deref().unwrap_or(&v.path);
    let path_addr = put_path(pid, area, path)?;
    // Our own memfds (mapped.rs) are opened for writing: their pages are written after.
    let write = object.is_some() || (v.shared && v.prot & 2 != 0);
    let oflags = (if write { libc::O_RDWR } else { libc::O_RDONLY } | libc::O_CLOEXEC) as u64;
    let fd = main.syscall(
        g,
        libc::SYS_openat,
        &[libc::AT_FDCWD as u64, path_addr, oflags, 0],
    )?;
    if let Some(errno) = errno_of(fd) {
        return Err(Error::FileMismatch {
            path: v.path.clone(),
            what: format!(
                "mapped by the process at {:#x} but cannot be opened on this host ({errno})",
                v.start
            ),
        });
    }
    let r = main.syscall(
        g,
        libc::SYS_mmap,
        &[v.start, v.len(), prot, flags, fd as u64, v.offset],
    );
    main.syscall(g, libc::SYS_close, &[fd as u64])?;
    if let Some(errno) = errno_of(r?) {
        return Err(Error::FileMismatch {
            path: v.path.clone(),
            what: format!("cannot be mapped at {:#x} ({errno})", v.start),
        });
    }
    Ok(())
}

/// Step 9: PR_SET_MM_MAP with the mm fields, auxv and the executable.
fn set_mm(main: &mut Tracee, area: &Area, proc: &ProcessImage) -> Result<()> {
    let pid = main.tid();
    let g = area.gadget();
    let m = &proc.mm;
    let auxv_addr = area.scratch() + 2 * PAGE_SIZE;
    let auxv: Vec<u8> = proc.auxv.iter().flat_map(|v| v.to_le_bytes()).collect();
    if auxv.len() as u64 > PAGE_SIZE {
        return Err(Error::Restore(format!(
            "auxv of {} bytes is too large",
            auxv.len()
        )));
    }
    write_memory(pid, &auxv, &[(auxv_addr, auxv.len())])?;
    let path_addr = put_path(pid, area, &proc.exe)?;
    let exe_fd = main.syscall(
        g,
        libc::SYS_openat,
        &[
            libc::AT_FDCWD as u64,
            path_addr,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
        ],
    )?;
    if let Some(errno) = errno_of(exe_fd) {
        return Err(Error::FileMismatch {
            path: proc.exe.clone(),
            what: format!("the process's executable cannot be opened on this host ({errno})"),
        });
    }
    let map_addr = area.scratch() + PAGE_SIZE;
    let mut fields: Vec<u8> = [
        m.start_code,
        m.end_code,
        m.start_data,
        m.end_data,
        m.start_brk,
        m.brk,
        m.start_stack,
        m.arg_start,
        m.arg_end,
        m.env_start,
        m.env_end,
        auxv_addr,
    ]
    .iter()
    .flat_map(|v| v.to_le_bytes())
    .collect();
    fields.extend_from_slice(&(auxv.len() as u32).to_le_bytes());
    fields.extend_from_slice(&(exe_fd as u32).to_le_bytes());
    write_memory(pid, &fields, &[(map_addr, fields.len())])?;
    let mut r = main.syscall(
        g,
        libc::SYS_prctl,
        &[PR_SET_MM, PR_SET_MM_MAP, map_addr, PR_SET_MM_MAP_SIZE, 0],
    )?;
    if errno_of(r) == Some(nix::errno::Errno::EPERM) {
        // Changing the exe link needs CAP_CHECKPOINT_RESTORE; the rest does not (P8).
        write_memory(pid, &u32::MAX.to_le_bytes(), &[(map_addr + 100, 4)])?;
        r = main.syscall(
            g,
            libc::SYS_prctl,
            &[PR_SET_MM, PR_SET_MM_MAP, map_addr, PR_SET_MM_MAP_SIZE, 0],
        )?;
    }
    main.syscall(g, libc::SYS_close, &[exe_fd as u64])?;
    if let Some(errno) = errno_of(r) {
        return Err(Error::Restore(format!(
            "PR_SET_MM_MAP refused the image's mm fields ({errno})"
        )));
    }
    Ok(())
}
