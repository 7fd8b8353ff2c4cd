//! `spirit-gen DIR`: write shell completions and man pages rendered from the clap
//! definitions under DIR/completions and DIR/man (`cargo run --bin spirit-gen -- dist`).

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: spirit-gen DIR");
        std::process::exit(2);
    };
    if let Err(e) = spirit::cli::gen::write_all(std::path::Path::new(&dir)) {
        eprintln!("spirit-gen: {e}");
        std::process::exit(1);
    }
}
