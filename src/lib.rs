//! The `spirit` package: wires the default plugin pipeline and hosts the command line
//! (`src/bin/spirit.rs` parses arguments, [`cli`] runs the subcommands). Plugins are
//! listed in one place, in their order.

pub mod cli;

use spirit_core::plugin::Pipeline;

/// The default pipeline. Order matters: files before sockets before tty in the child;
/// signals after memory in the remote phase (DESIGN.md, "The plugin contract").
pub fn default_pipeline() -> Pipeline {
    vec![
        Box::new(spirit_files::FilesPlugin),
        Box::new(spirit_tty::TtyPlugin),
        Box::new(spirit_signals::SignalsPlugin),
    ]
}
