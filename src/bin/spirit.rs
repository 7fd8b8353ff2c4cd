//! `spirit`: checkpoint, restore and inspect Linux processes.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "spirit",
    version,
    about = "Live checkpoint and restore of Linux processes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Freeze a process, write it into an image, then end it (or let it run on).
    Dump {
        /// The process to checkpoint.
        pid: i32,
        /// Image file to write, or - for standard output.
        #[arg(short, long)]
        output: PathBuf,
        /// Let the process run on after the checkpoint instead of killing it.
        #[arg(long)]
        leave_running: bool,
        /// Leave descriptor N out of the image (repeatable).
        #[arg(long = "skip-fd", value_name = "N")]
        skip_fd: Vec<i32>,
        /// Page copy threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Write `progress DONE TOTAL` lines and a final `result JSON` line to this fd.
        #[arg(long, value_name = "FD")]
        progress_fd: Option<i32>,
        /// After the image is out, wait for one byte on this fd: `k` ends the process,
        /// anything else or end-of-file resumes it (migration).
        #[arg(long, value_name = "FD")]
        verdict_fd: Option<i32>,
        /// A unix socket connected to a peer outside the tree is connected again to the
        /// peer's name at restore (safe for datagram logging sockets such as /dev/log).
        /// Without a value: every such socket; else the peer's path, `@NAME` for an
        /// abstract name, or `socket:[INODE]` of our socket (repeatable).
        #[arg(long, value_name = "WHICH", num_args = 0..=1, default_missing_value = "all")]
        ext_unix_reconnect: Vec<String>,
        /// A unix socket connected outside the tree is recorded as external: the
        /// restorer must be given a socket for it (`restore --inherit-fd
        /// fd[N]:socket:[INODE]`). Same selectors as --ext-unix-reconnect.
        #[arg(long, value_name = "WHICH", num_args = 0..=1, default_missing_value = "all")]
        ext_unix_inherit: Vec<String>,
        /// Accept descriptors on the terminal the process was started from (outside
        /// the tree); restore it with `spirit restore --shell-job` from a terminal.
        #[arg(long)]
        shell_job: bool,
        /// Carry the content of the files the tree needs (executable, libraries, mapped
        /// files) in the image, compressed, each content once: `all` (the default), or
        /// `missing-from:MANIFEST` for those whose hash the target's manifest (`spirit
        /// manifest PATH...` run there) does not list.
        #[arg(long, value_name = "WHICH", num_args = 0..=1, require_equals = true, default_missing_value = "all")]
        embed_files: Option<String>,
    },
    /// Bring a process back from an image.
    Restore {
        /// Image file, or - for standard input.
        image: PathBuf,
        /// Return once the process runs and print its pid, instead of waiting for it.
        #[arg(long)]
        detach: bool,
        /// Write the restored pid to this file.
        #[arg(long)]
        pidfile: Option<PathBuf>,
        /// Give the process fresh pid and tids instead of the original ones.
        #[arg(long)]
        new_pid: bool,
        /// Restore into a new pid namespace (under a small init), so every process keeps
        /// its pid even where those pids are taken on this host.
        #[arg(long, conflicts_with = "new_pid")]
        pid_ns: bool,
        /// Restore even if the executable, a mapped library or an open file changed
        /// since the checkpoint (the default refuses, naming the file).
        #[arg(long)]
        allow_changed_files: bool,
        /// Page write threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Put the descriptors that were on the terminal the process was started from
        /// (dumped with --shell-job) on this terminal (our standard input), the
        /// process made the foreground job when it was one.
        #[arg(long)]
        shell_job: bool,
        /// fd[N]:KEY — our descriptor N stands for the resource outside the tree the
        /// image names KEY, as `spirit show` lists it: `socket:[4242]` for a unix socket
        /// dumped with --ext-unix-inherit, `/dev/pts/3` for a terminal. Repeatable.
        #[arg(long = "inherit-fd", value_name = "fd[N]:KEY")]
        inherit_fd: Vec<spirit_core::restore::InheritFd>,
    },
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
        #[arg(long)]
        json: bool,
    },
    /// List the plugins: built-in ones and external ones found by their manifests.
    Plugins {
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Client(spirit::cli::ClientCmd),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("SPIRIT_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Dump {
            pid,
            output,
            leave_running,
            skip_fd,
            workers,
            progress_fd,
            verdict_fd,
            ext_unix_reconnect,
            ext_unix_inherit,
            shell_job,
            embed_files,
        } => spirit::cli::dump(spirit::cli::DumpArgs {
            pid,
            output,
            leave_running,
            skip_fds: skip_fd,
            workers,
            progress_fd,
            verdict_fd,
            ext_unix_reconnect,
            ext_unix_inherit,
            shell_job,
            embed_files,
        }),
        Cmd::Restore {
            image,
            detach,
            pidfile,
            new_pid,
            pid_ns,
            workers,
            allow_changed_files,
            shell_job,
            inherit_fd,
        } => spirit::cli::restore(spirit::cli::RestoreArgs {
            image,
            detach,
            pidfile,
            new_pid,
            pid_ns,
            workers,
            allow_changed_files,
            shell_job,
            inherit_fds: inherit_fd,
        }),
        Cmd::Manifest { paths } => {
            let (text, problems) = spirit_core::fileid::manifest(&paths);
            print!("{text}");
            for p in &problems {
                eprintln!("spirit: error: {p}");
            }
            i32::from(!problems.is_empty())
        }
        Cmd::Show { image, json } => spirit::cli::show(&image, json),
        Cmd::Check { json } => spirit::cli::check(json),
        Cmd::Plugins { json } => spirit::cli::plugins(json),
        Cmd::Client(c) => spirit::cli::client(c),
    };
    std::process::exit(code);
}
