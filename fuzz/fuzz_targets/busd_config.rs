//! spiritd's configuration file parser and checks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = spirit_busd::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
