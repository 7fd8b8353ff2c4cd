//! The whole image reader and `show` (preamble, frames, header, processes with their
//! plugin sections, pages, trailer), with the preamble's and each frame's crc fixed up
//! before reading so that mutations reach the decoders behind the checksums.
#![no_main]
use libfuzzer_sys::fuzz_target;

fn fix_crcs(data: &mut [u8]) {
    if data.len() < 16 {
        return;
    }
    let c = crc32c::crc32c(&data[..12]);
    data[12..16].copy_from_slice(&c.to_le_bytes());
    let mut off = 16usize;
    while off + 16 <= data.len() {
        let n = u64::from_le_bytes(data[off + 8..off + 16].try_into().unwrap());
        let end = (off as u64 + 16).saturating_add(n).min(data.len() as u64) as usize;
        let mut c = crc32c::crc32c(&data[off..off + 4]);
        c = crc32c::crc32c_append(c, &data[off + 8..off + 16]);
        c = crc32c::crc32c_append(c, &data[off + 16..end]);
        data[off + 4..off + 8].copy_from_slice(&c.to_le_bytes());
        off = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut d = data.to_vec();
    fix_crcs(&mut d);
    let pipeline: spirit_core::plugin::Pipeline = vec![
        Box::new(spirit_files::FilesPlugin),
        Box::new(spirit_signals::SignalsPlugin),
    ];
    if let Ok(v) = spirit_core::show::show(&d[..], "fuzz", &pipeline) {
        let _ = spirit_core::show::render_text(&v);
    }
});
