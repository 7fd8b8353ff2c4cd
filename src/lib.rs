//! The `spirit` package: wires the default plugin pipeline and hosts the command line
//! (`src/bin/spirit.rs` parses arguments, [`cli`] runs the subcommands). Plugins are
//! listed in one place, in their order.

pub mod cli;

use spirit_core::plugin::Pipeline;

/// The default pipeline. Order matters: files before sockets before tty in the child;
/// signals after memory in the remote phase (DESIGN.md, "The plugin contract").
pub fn default_pipeline() -> Pipeline {
    pipeline_with(false)
}

/// The pipeline, with `allow_changed_files`: a restore accepts regular files that
/// changed since the checkpoint (`spirit restore --allow-changed-files`).
pub fn pipeline_with(allow_changed_files: bool) -> Pipeline {
    vec![
        Box::new(spirit_files::FilesPlugin {
            allow_changed_files,
        }),
        Box::new(spirit_signals::SignalsPlugin),
    ]
}
