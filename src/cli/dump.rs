//! `spirit dump`: freeze a process tree and write its image (to a file, renamed into
//! place only when complete, or to standard output for streaming and migration).

use super::{end_stdout, fail, mib, shield_from_signals, ProgressOut, IO_BUF};
use crate::default_pipeline;
use clap::Args;
use spirit_core::dump::{DumpOptions, DumpStats, Ending};
use spirit_core::fileid::embed::EmbedFiles;
use spirit_core::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Arguments of `spirit dump`.
#[derive(Args, Clone, Debug)]
pub struct DumpArgs {
    /// The process to checkpoint.
    pub pid: i32,
    /// Image file to write, or - for standard output.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Let the process run on after the checkpoint instead of killing it.
    #[arg(long)]
    pub leave_running: bool,
    /// Leave descriptor N out of the image (repeatable).
    #[arg(long = "skip-fd", value_name = "N")]
    pub skip_fds: Vec<i32>,
    /// Page copy threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Write `progress DONE TOTAL` lines and a final `result JSON` line to this fd.
    #[arg(long, value_name = "FD")]
    pub progress_fd: Option<i32>,
    /// After the image is out, wait for one byte on this fd: `k` ends the process,
    /// anything else or end-of-file resumes it (migration).
    #[arg(long, value_name = "FD")]
    pub verdict_fd: Option<i32>,
    /// A unix socket connected to a peer outside the tree is connected again to the
    /// peer's name at restore (safe for datagram logging sockets such as /dev/log).
    /// Without a value: every such socket; else the peer's path, `@NAME` for an
    /// abstract name, or `socket:[INODE]` of our socket (repeatable).
    #[arg(long, value_name = "WHICH", num_args = 0..=1, default_missing_value = "all")]
    pub ext_unix_reconnect: Vec<String>,
    /// A unix socket connected outside the tree is recorded as external: the
    /// restorer must be given a socket for it (`restore --inherit-fd
    /// fd[N]:socket:[INODE]`). Same selectors as --ext-unix-reconnect.
    #[arg(long, value_name = "WHICH", num_args = 0..=1, default_missing_value = "all")]
    pub ext_unix_inherit: Vec<String>,
    /// Accept descriptors on the terminal the process was started from (outside
    /// the tree); restore it with `spirit restore --shell-job` from a terminal.
    #[arg(long)]
    pub shell_job: bool,
    /// Carry the content of the files the tree needs (executable, libraries, mapped
    /// files) in the image, compressed, each content once: `all` (the default), or
    /// `missing-from:MANIFEST` for those whose hash the target's manifest (`spirit
    /// manifest PATH...` run there) does not list.
    #[arg(long, value_name = "WHICH", num_args = 0..=1, require_equals = true, default_missing_value = "all")]
    pub embed_files: Option<String>,
    /// Print the result as one JSON object on stdout (not with `-o -`).
    #[arg(long)]
    pub json: bool,
}

/// What `--embed-files` asks for.
fn embed_files(v: Option<&str>) -> std::result::Result<EmbedFiles, String> {
    match v {
        None => Ok(EmbedFiles::None),
        Some("all") => Ok(EmbedFiles::All),
        Some(x) => match x.strip_prefix("missing-from:") {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| EmbedFiles::from_manifest(&t))
                .map_err(|e| format!("--embed-files: manifest {path}: {e}")),
            None => Err(format!(
                "--embed-files={x}: expected all or missing-from:MANIFEST"
            )),
        },
    }
}

/// The `--json` object of `spirit dump` (field names are stable; README, "JSON").
pub fn dump_json(s: &DumpStats, image: &Path) -> serde_json::Value {
    serde_json::json!({
        "pid": s.pid,
        "image": image,
        "processes": s.processes,
        "threads": s.threads,
        "vmas": s.vmas,
        "page_bytes": s.page_bytes,
        "image_bytes": s.image_bytes,
        "frozen_ms": s.frozen.as_millis() as u64,
        "total_ms": s.total.as_millis() as u64,
        "left_running": s.resumed,
    })
}

fn report_dump(s: &DumpStats, to: &str) {
    eprintln!(
        "spirit: checkpointed pid {} ({} process{}, {} thread{}, {} memory areas, {} of pages) into {} in {} ms, frozen {} ms; {}",
        s.pid,
        s.processes,
        if s.processes == 1 { "" } else { "es" },
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        s.vmas,
        mib(s.page_bytes),
        to,
        s.total.as_millis(),
        s.frozen.as_millis(),
        if s.resumed { "left running" } else { "process ended" }
    );
}

pub fn dump(a: DumpArgs) -> i32 {
    let to_stdout = a.output == Path::new("-");
    if a.json && to_stdout {
        eprintln!(
            "spirit: error: --json prints on standard output, which `-o -` uses for the image"
        );
        return 2;
    }
    let embed = match embed_files(a.embed_files.as_deref()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("spirit: error: {e}");
            return 2;
        }
    };
    shield_from_signals();
    let opts = DumpOptions {
        embed_files: embed,
        leave_running: a.leave_running,
        skip_fds: a.skip_fds,
        workers: a.workers,
        ext_unix_reconnect: a.ext_unix_reconnect,
        ext_unix_inherit: a.ext_unix_inherit,
        shell_job: a.shell_job,
    };
    let pipeline = default_pipeline();
    let mut progress = ProgressOut::new(a.progress_fd);
    let mut last = 0u64;
    let mut on_progress = |done: u64, total: u64| {
        if done == 0 || done == total || done - last >= 16 << 20 {
            last = done;
            progress.line(&format!("progress {done} {total}"));
        }
    };
    tracing::debug!(pid = a.pid, output = %a.output.display(), "dump starts");
    let res = if to_stdout {
        let out = BufWriter::with_capacity(IO_BUF, std::io::stdout().lock());
        let verdict_fd = a.verdict_fd;
        spirit_core::dump::dump(a.pid, out, &opts, &pipeline, &mut on_progress, |mut w| {
            w.flush().map_err(|e| Error::io("standard output", e))?;
            drop(w);
            end_stdout();
            super::await_verdict(verdict_fd)
        })
    } else {
        dump_to_file(a.pid, &a.output, &opts, &pipeline, &mut on_progress)
    };
    match res {
        Ok(mut stats) => {
            progress.line(&format!(
                "result {}",
                serde_json::to_string(&stats).unwrap_or_default()
            ));
            if !super::log::quiet() {
                report_dump(&stats, &a.output.display().to_string());
            }
            if a.json {
                // The file's size, end frame included (the stats count up to the pages).
                if let Ok(m) = std::fs::metadata(&a.output) {
                    stats.image_bytes = m.len();
                }
                println!("{}", dump_json(&stats, &a.output));
            }
            0
        }
        Err(e) => {
            progress.line(&format!("error {} {}", e.exit_code(), e));
            fail(&e)
        }
    }
}

/// Write into a temporary file beside `output`, synced and renamed into place only when
/// complete: a failed checkpoint leaves no partial image behind.
fn dump_to_file(
    pid: i32,
    output: &Path,
    opts: &DumpOptions,
    pipeline: &spirit_core::plugin::Pipeline,
    progress: spirit_core::dump::Progress<'_>,
) -> Result<DumpStats> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".spirit-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io(tmp.path(), e))?;
    // A second handle on the same open file (shared offset) for parallel page writes.
    let positional = file.try_clone().map_err(|e| Error::io(tmp.path(), e))?;
    let out = BufWriter::with_capacity(IO_BUF, file);
    spirit_core::dump::dump_to_file(pid, out, &positional, opts, pipeline, progress, |w| {
        let f = w
            .into_inner()
            .map_err(|e| Error::io(output, e.into_error()))?;
        f.sync_data().map_err(|e| Error::io(output, e))?;
        tmp.persist(output)
            .map_err(|e| Error::io(output, e.error))?;
        Ok(Ending::AsAsked)
    })
}
