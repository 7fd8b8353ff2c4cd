//! `spirit migrate`: ask spiritd to move a process to a peer, then follow the job
//! through its `PropertiesChanged` signals, with a progress bar on a terminal and plain
//! lines otherwise.

use super::client::exit;
use serde_json::json;
use spirit_busd::client::{JobProxyBlocking, ManagerProxyBlocking};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::Duration;
use zbus::blocking::fdo::PropertiesProxy;
use zbus::blocking::Connection;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedValue, Value};

pub(super) fn migrate(
    conn: &Connection,
    mgr: &ManagerProxyBlocking,
    pid: u32,
    to: &str,
    keep_source: bool,
    pid_ns: bool,
    as_json: bool,
) -> zbus::Result<i32> {
    let mut opts = HashMap::new();
    if keep_source {
        opts.insert("keep_source", Value::from(true));
    }
    if pid_ns {
        opts.insert("pid_ns", Value::from(true));
    }
    let path = mgr.migrate(pid, to, opts)?;
    // Properties are read from the daemon, not from a cache that signals fill.
    let job = JobProxyBlocking::builder(conn)
        .path(path)?
        .cache_properties(CacheProperties::No)
        .build()?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(format!("migrating pid {pid} to {to}"));
        b
    });
    let mut last_line = (String::new(), u64::MAX);
    let state = follow(conn, &job, |seen| {
        let Seen { state, done, total } = seen;
        let (done, total) = (*done, *total);
        match &bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(done);
            }
            None => {
                // Plain lines: on each state change and every 64 MiB.
                if *state != last_line.0 || done / (64 << 20) != last_line.1 {
                    eprintln!("spirit: migrate pid {pid} to {to}: {state} {done}/{total} bytes");
                    last_line = (state.clone(), done / (64 << 20));
                }
            }
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if state != "done" {
        eprintln!("spirit: error: migration {state}: {}", job.error()?);
        return Ok(exit::JOB_FAILED);
    }
    let r = job.result()?;
    let get = |k: &str| r.get(k).and_then(|v| u64::try_from(&**v).ok()).unwrap_or(0);
    let get32 = |k: &str| r.get(k).and_then(|v| u32::try_from(&**v).ok()).unwrap_or(0);
    if as_json {
        println!(
            "{}",
            json!({
                "pid": pid, "peer": to, "new_pid": get32("new_pid"),
                "page_bytes": get("page_bytes"), "frozen_ms": get("frozen_usec") / 1000,
                "total_ms": get("total_usec") / 1000, "source_kept": keep_source,
            })
        );
    } else {
        println!("{}", get32("new_pid"));
    }
    eprintln!(
        "spirit: migrated pid {pid} to {to} as pid {} ({} MiB of pages), frozen {} ms, total {} ms; {}",
        get32("new_pid"),
        get("page_bytes") >> 20,
        get("frozen_usec") / 1000,
        get("total_usec") / 1000,
        if keep_source { "source left running" } else { "source ended" }
    );
    Ok(0)
}

/// What `spirit migrate` shows of its job.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    state: String,
    done: u64,
    total: u64,
}

impl Seen {
    /// Take the changed properties among `State`, `BytesDone` and `BytesTotal`.
    fn take(&mut self, changed: &HashMap<String, OwnedValue>) {
        for (k, v) in changed {
            match (k.as_str(), &**v) {
                ("State", Value::Str(s)) => self.state = s.to_string(),
                ("BytesDone", Value::U64(n)) => self.done = *n,
                ("BytesTotal", Value::U64(n)) => self.total = *n,
                _ => {}
            }
        }
    }

    fn finished(&self) -> bool {
        matches!(self.state.as_str(), "done" | "failed" | "cancelled")
    }
}

/// Without a signal for this long, ask the daemon (it may have gone away).
const QUIET: Duration = Duration::from_secs(5);

/// Follow `job` until it is finished: its state and bytes now, then as its
/// `PropertiesChanged` signals tell them, calling `show` after each change (the
/// signals of one burst together). Returns the final state.
fn follow(
    conn: &Connection,
    job: &JobProxyBlocking,
    mut show: impl FnMut(&Seen),
) -> zbus::Result<String> {
    let props = PropertiesProxy::builder(conn)
        .destination(job.inner().destination().to_owned())?
        .path(job.inner().path().to_owned())?
        .build()?;
    // Listen first, then read, so that no change falls between the two.
    let signals = props.receive_properties_changed()?;
    let iface = job.inner().interface().to_owned();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for sig in signals {
            let Ok(args) = sig.args() else { continue };
            if args.interface_name != iface {
                continue;
            }
            let changed: HashMap<String, OwnedValue> = args
                .changed_properties
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.try_to_owned().ok()?)))
                .collect();
            if tx.send(changed).is_err() {
                break;
            }
        }
    });
    let read = |seen: &mut Seen| -> zbus::Result<()> {
        *seen = Seen {
            state: job.state()?,
            done: job.bytes_done()?,
            total: job.bytes_total()?,
        };
        Ok(())
    };
    let mut seen = Seen::default();
    read(&mut seen)?;
    loop {
        show(&seen);
        if seen.finished() {
            return Ok(seen.state);
        }
        match rx.recv_timeout(QUIET) {
            Ok(changed) => {
                seen.take(&changed);
                while let Ok(more) = rx.try_recv() {
                    seen.take(&more);
                }
            }
            Err(RecvTimeoutError::Timeout) => read(&mut seen)?,
            Err(RecvTimeoutError::Disconnected) => {
                // The connection stopped delivering signals: read, now and then.
                std::thread::sleep(Duration::from_millis(100));
                read(&mut seen)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_properties_update_what_is_shown() {
        let mut seen = Seen::default();
        let changed: HashMap<String, OwnedValue> = [
            (
                "State",
                OwnedValue::from(zbus::zvariant::Str::from("running")),
            ),
            ("BytesDone", OwnedValue::from(5u64)),
            ("Progress", OwnedValue::from(0.5f64)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        seen.take(&changed);
        assert_eq!(
            seen,
            Seen {
                state: "running".into(),
                done: 5,
                total: 0
            }
        );
        assert!(!seen.finished());
        let end = HashMap::from([(
            "State".to_string(),
            OwnedValue::from(zbus::zvariant::Str::from("done")),
        )]);
        seen.take(&end);
        assert!(seen.finished() && seen.done == 5);
    }
}
