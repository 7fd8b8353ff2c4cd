//! The GNU build-id of an ELF file: the `NT_GNU_BUILD_ID` note found through the
//! program headers (`PT_NOTE`), as `readelf -n` shows it. A small reader rather than a
//! crate (`object`, `goblin`): one note of 64-bit little-endian files is all spirit
//! needs, and every offset read from the file is bounds-checked here.

use std::io::{Read, Seek, SeekFrom};

const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;
/// Notes larger than this are not build-id notes worth reading.
const MAX_NOTE: u64 = 1 << 16;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The build-id of the ELF file `f` as lower-case hex; `None` for anything that is not
/// a 64-bit little-endian ELF file or has no build-id note.
pub fn build_id(f: &mut std::fs::File) -> Option<String> {
    let mut eh = [0u8; 64];
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_exact(&mut eh).ok()?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let phoff = u64_at(&eh, 32)?;
    let phentsize = u16_at(&eh, 54)? as u64;
    let phnum = u16_at(&eh, 56)? as u64;
    if phentsize < 56 || phnum > 4096 {
        return None;
    }
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    f.seek(SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut ph).ok()?;
    for i in 0..phnum as usize {
        let p = &ph[i * phentsize as usize..];
        if u32_at(p, 0)? != PT_NOTE {
            continue;
        }
        let (off, size) = (u64_at(p, 8)?, u64_at(p, 32)?);
        if size > MAX_NOTE {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(off)).ok()?;
        f.read_exact(&mut notes).ok()?;
        if let Some(id) = find_build_id(&notes) {
            return Some(id);
        }
    }
    None
}

/// The build-id in a block of ELF notes (4-byte aligned name and descriptor).
fn find_build_id(notes: &[u8]) -> Option<String> {
    let align = |n: usize| n.checked_add(3).map(|x| x & !3);
    let mut o = 0usize;
    while o + 12 <= notes.len() {
        let namesz = u32_at(notes, o)? as usize;
        let descsz = u32_at(notes, o + 4)? as usize;
        let ty = u32_at(notes, o + 8)?;
        let name_at = o + 12;
        let desc_at = name_at.checked_add(align(namesz)?)?;
        let end = desc_at.checked_add(align(descsz)?)?;
        let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
        if ty == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        o = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_and_garbage() {
        let mut n = Vec::new();
        // An unrelated note first, then the build-id.
        n.extend(4u32.to_le_bytes());
        n.extend(4u32.to_le_bytes());
        n.extend(1u32.to_le_bytes());
        n.extend(b"GNU\0abcd");
        n.extend(4u32.to_le_bytes());
        n.extend(3u32.to_le_bytes());
        n.extend(3u32.to_le_bytes());
        n.extend(b"GNU\0\x01\x02\xff\0");
        assert_eq!(find_build_id(&n).as_deref(), Some("0102ff"));
        assert_eq!(find_build_id(&n[..20]), None);
        let mut huge = n.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(find_build_id(&huge), None);
    }

    #[test]
    fn the_running_test_binary_has_one() {
        // Rust test binaries are linked with a build-id by default on Linux.
        let mut f = std::fs::File::open("/proc/self/exe").unwrap();
        let id = build_id(&mut f).expect("build-id");
        assert!(id.len() >= 16, "{id}");
    }
}
