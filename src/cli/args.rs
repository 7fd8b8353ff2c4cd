//! The command lines of `spirit` and `spiritd`, defined once here (clap derive) so the
//! binaries parse them and `spirit-gen` renders completions and man pages from them.

use super::client::ClientCmd;
use super::dump::DumpArgs;
use super::restore::RestoreArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// How spirit's exit codes read; shown by `spirit --help` (README, "Exit codes").
pub const EXIT_CODES: &str = "\
Exit codes of spirit's own failures (each with a `spirit: error:` line):
  0 success                    12 I/O error
  1 other failure              20 spiritd not reachable
  2 usage error                21 refused by spiritd
  3 no such process            22 bad request (peer, pid,
  4 permission denied             argument)
  5 unsupported state          23 the job failed
  6 not an image, corrupt      24 other D-Bus error
  7 truncated image
  8 image version
  9 CPU mismatch
 10 pid in use
 11 file changed since checkpoint

A foreground `spirit restore` exits with the program's own status
(128+N if signal N killed it), which may be any of the above; with
`--own-exit-code` it exits 0 once the program has ended, spirit's code
on a failure of its own, and tells the program's status on stderr
(and in `--json`).";

#[derive(Parser)]
#[command(
    name = "spirit",
    version,
    about = "Live checkpoint and restore of Linux processes",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Logging options, global to every subcommand (`SPIRIT_LOG` still sets a filter).
#[derive(Args, Clone, Debug, Default)]
pub struct LogArgs {
    /// More log on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also write the full debug log to this file (attach it to a bug report).
    #[arg(long, value_name = "PATH", global = true)]
    pub log_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Freeze a process, write it into an image, then end it (or let it run on).
    Dump(DumpArgs),
    /// Bring a process back from an image.
    Restore(RestoreArgs),
    /// Print this host's manifest of PATHs: `BLAKE3 PATH` a line, for
    /// `spirit dump --embed-files=missing-from:MANIFEST` on the source host.
    Manifest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print everything in an image.
    Show {
        image: PathBuf,
        /// Machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check that this host's kernel offers what spirit needs.
    Check {
        /// Machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the plugins: built-in ones and external ones found by their manifests.
    Plugins {
        /// Machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Client(ClientCmd),
}

/// `spiritd`'s command line.
#[derive(Parser)]
#[command(
    name = "spiritd",
    version,
    about = "spirit's D-Bus service: checkpoint, restore and migrate on behalf of bus callers"
)]
pub struct SpiritdArgs {
    /// The bus to serve on: system, session, or a D-Bus address (unix:path=...).
    #[arg(long, default_value = "system")]
    pub bus: String,
    /// Configuration file (TOML; see spiritd.toml(5)). Without it, defaults apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory (identity key); overrides the configuration's state_dir.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The spirit binary that runs each job; overrides the configuration's worker.
    #[arg(long)]
    pub worker: Option<PathBuf>,
    /// Print this daemon's identity public key (creating it on first use) and exit.
    #[arg(long)]
    pub show_key: bool,
}
