//! The files plugin's section decoder and `show` on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spirit_core::plugin::Plugin;

fuzz_target!(|data: &[u8]| {
    let _ = spirit_files::FilesPlugin.show(data);
});
