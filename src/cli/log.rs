//! Logging of `spirit` and `spiritd` (tracing). `spirit`: `-v` info, `-vv` debug,
//! `-vvv` trace on stderr (`SPIRIT_LOG` overrides, as an `EnvFilter`), `-q` only errors
//! and no summary lines; `--log-file PATH` also writes the full debug log (timestamps,
//! every phase and refusal) to PATH, kept whether the command fails or not.
//! `spiritd`: info on stderr; under systemd (`JOURNAL_STREAM` set) one line per event
//! with a `<N>` syslog priority prefix (journald's default `SyslogLevelPrefix=yes`
//! turns it into the entry's priority) and no timestamp or colour (journald adds its own).

use super::args::LogArgs;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `-q` asked for no summary lines.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn stderr_filter(a: &LogArgs) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_env("SPIRIT_LOG") {
        return f;
    }
    EnvFilter::new(match (a.quiet, a.verbose) {
        (true, _) => "off",
        (_, 0) => "error",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    })
}

/// Set up `spirit`'s logging. A log file that cannot be created is reported and
/// left out (the command still runs).
pub fn init_spirit(a: &LogArgs) {
    QUIET.store(a.quiet, Ordering::Relaxed);
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(stderr_filter(a));
    let file = a
        .log_file
        .as_ref()
        .and_then(|p| match std::fs::File::create(p) {
            Ok(f) => Some(
                fmt::layer()
                    .with_writer(Mutex::new(f))
                    .with_ansi(false)
                    .with_thread_ids(true)
                    .with_filter(EnvFilter::new(if a.verbose >= 3 {
                        "trace"
                    } else {
                        "debug"
                    })),
            ),
            Err(e) => {
                eprintln!(
                    "spirit: warning: cannot write the log file {}: {e}",
                    p.display()
                );
                None
            }
        });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    tracing::debug!(
        args = ?std::env::args().collect::<Vec<_>>(),
        version = env!("CARGO_PKG_VERSION"),
        "spirit starts"
    );
}

/// Set up `spiritd`'s logging: info by default (`SPIRIT_LOG` overrides), journald's
/// format when systemd started us.
pub fn init_spiritd() {
    let filter = EnvFilter::try_from_env("SPIRIT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = fmt::layer().with_writer(std::io::stderr);
    let layer = if journal {
        layer.with_ansi(false).event_format(Journal).boxed()
    } else {
        layer.with_ansi(std::io::stderr().is_terminal()).boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

/// journald's stream format: `<PRIORITY>target: message fields`.
struct Journal;

impl<S, N> fmt::FormatEvent<S, N> for Journal
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        mut w: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let prio = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(w, "<{prio}>{}: ", meta.target())?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}
