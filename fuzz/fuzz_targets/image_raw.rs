//! The image reader on raw bytes, checksums as they come (what a restore meets).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pipeline: spirit_core::plugin::Pipeline = vec![
        Box::new(spirit_files::FilesPlugin),
        Box::new(spirit_signals::SignalsPlugin),
    ];
    let _ = spirit_core::show::show(data, "fuzz", &pipeline);
});
