//! The `spirit` package: wires the default plugin pipeline and hosts the command line
//! ([`cli`] defines the command lines of `spirit` and `spiritd` and runs the subcommands;
//! `src/bin/` holds thin mains and the `spirit-gen` completion/man page generator). Plugins are
//! listed in one place, in their order.

pub mod cli;

use spirit_core::plugin::{Pipeline, Plugin};

/// The built-in plugins, in their order.
fn builtin() -> Pipeline {
    vec![
        Box::new(spirit_files::FilesPlugin),
        Box::new(spirit_sockets::SocketsPlugin),
        Box::new(spirit_tty::TtyPlugin),
        Box::new(spirit_signals::SignalsPlugin),
    ]
}

/// The default pipeline. Order matters: files before sockets before tty in the child;
/// signals after memory in the remote phase (DESIGN.md, "The plugin contract").
///
/// External plugins (`spirit_external`, found by their manifests) come first: a plugin
/// claiming a path prefix or a device major takes those descriptors before the files
/// plugin's generic handling would; they only rebuild descriptors (no order with the
/// other plugins' in-child steps matters: each `dup3`s to numbers of its own). A plugin
/// process is started only when a descriptor it claims exists or an image has its
/// section.
pub fn default_pipeline() -> Pipeline {
    let builtin = builtin();
    let reserved: Vec<&str> = builtin.iter().map(|p| p.name()).collect();
    let (external, problems) = spirit_external::pipeline_entries(&reserved);
    for p in problems {
        tracing::warn!("external plugin left out: {p}");
    }
    external
        .into_iter()
        .map(|p| Box::new(p) as Box<dyn Plugin>)
        .chain(builtin)
        .collect()
}

/// What each built-in plugin takes, for `spirit plugins`.
pub fn builtin_plugins() -> Vec<(&'static str, u32, &'static str)> {
    builtin()
        .iter()
        .map(|p| {
            let claims = match p.name() {
                "files" => "regular files, directories, FIFOs, pipes, character devices (not terminals), deleted files, memfd, eventfd, timerfd, signalfd, epoll, inotify; cwd, root, umask",
                "signals" => "signal handlers, blocked masks, pending signals, sigaltstack, timers",
                _ => "",
            };
            (p.name(), p.version(), claims)
        })
        .collect()
}
