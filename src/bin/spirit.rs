//! `spirit`: checkpoint, restore and inspect Linux processes (the command line is
//! defined in `spirit::cli::args`).

use clap::Parser;

fn main() {
    let cli = spirit::cli::Cli::parse();
    std::process::exit(spirit::cli::run(cli));
}
