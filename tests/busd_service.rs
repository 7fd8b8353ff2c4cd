//! spiritd through a real dbus-daemon (shipped policy) and the real busctl:
//! checkpoint and restore, progress seen in PropertiesChanged, authorization of an
//! unprivileged caller, bad calls, a crashing worker, a finished job leaving the bus
//! (JobRemoved), and the shipped XML.

mod busd_common;

use busd_common::*;
use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn setup() -> Option<(tempfile::TempDir, TestBus)> {
    init();
    for tool in ["dbus-daemon", "busctl", "gcc"] {
        if !have(tool) {
            eprintln!("SKIPPED: {tool} is not installed (apt-get install dbus systemd gcc)");
            return None;
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("spirit-busd-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let bus = TestBus::start(dir.path());
    Some((dir, bus))
}

fn daemon_config(dir: &std::path::Path) -> String {
    format!(
        "state_dir = \"{}/state\"\njob_linger_secs = 120\n",
        dir.display()
    )
}

/// The members of the org.spirit.* interfaces in an introspection document, one
/// canonical line each (comments, whitespace and member order do not matter).
fn members(xml: &str) -> BTreeSet<String> {
    let mut s = xml.to_string();
    while let Some(a) = s.find("<!--") {
        let b = s[a..].find("-->").map(|b| a + b + 3).unwrap_or(s.len());
        s.replace_range(a..b, "");
    }
    let attr = |tag: &str, k: &str| {
        let pat = format!("{k}=\"");
        tag.find(&pat).map(|i| {
            let r = &tag[i + pat.len()..];
            r[..r.find('"').unwrap_or(r.len())].to_string()
        })
    };
    let (mut out, mut iface, mut member) = (BTreeSet::new(), None::<String>, None::<String>);
    for tag in s
        .split('<')
        .skip(1)
        .map(|t| t.split('>').next().unwrap_or("").trim())
    {
        let name = tag.split_whitespace().next().unwrap_or("");
        match name {
            "interface" => iface = attr(tag, "name").filter(|n| n.starts_with("org.spirit.")),
            "/interface" => iface = None,
            "method" | "signal" if iface.is_some() => {
                member = Some(format!(
                    "{} {} {}(",
                    iface.as_ref().unwrap(),
                    name,
                    attr(tag, "name").unwrap()
                ));
            }
            "arg" if member.is_some() => {
                let m = member.as_mut().unwrap();
                m.push_str(&format!(
                    "{} {} {},",
                    attr(tag, "direction").unwrap_or_default(),
                    attr(tag, "name").unwrap_or_default(),
                    attr(tag, "type").unwrap_or_default()
                ));
            }
            "/method" | "/signal" | "method/" => {
                if let Some(m) = member.take() {
                    out.insert(m + ")");
                }
            }
            "property" if iface.is_some() => {
                out.insert(format!(
                    "{} property {} {} {}",
                    iface.as_ref().unwrap(),
                    attr(tag, "name").unwrap(),
                    attr(tag, "type").unwrap(),
                    attr(tag, "access").unwrap()
                ));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn introspection_matches_the_shipped_xml() {
    let Some((dir, bus)) = setup() else { return };
    let _d = Daemon::start(&bus.address, dir.path(), &daemon_config(dir.path()), &[]);
    // A job object to introspect: a restore of a missing image (it fails at once).
    let job = call(
        &bus.address,
        None,
        "Restore",
        "sa{sv}",
        &["/nonexistent.spirit", "0"],
    )
    .unwrap();
    let mut live = String::new();
    for path in [MANAGER, job.as_str()] {
        let o = busctl(
            &bus.address,
            None,
            &["introspect", "--xml-interface", DEST, path],
        );
        assert!(o.ok, "introspect {path}: {}", o.stderr);
        live.push_str(&o.stdout);
    }
    let shipped = std::fs::read_to_string(repo().join("busd/org.spirit.Spirit1.xml")).unwrap();
    let (live, shipped) = (members(&live), members(&shipped));
    assert!(live.len() >= 20, "too few members seen: {live:?}");
    let missing: Vec<_> = live.difference(&shipped).collect();
    let extra: Vec<_> = shipped.difference(&live).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "busd/org.spirit.Spirit1.xml is out of step with the code:\n in the code only: {missing:#?}\n in the XML only: {extra:#?}"
    );
}

/// PropertiesChanged signals of job objects, as (path, property, value) text.
fn watch_jobs(bus: &str) -> std::sync::mpsc::Receiver<(String, String, String)> {
    use zbus::zvariant::OwnedValue;
    let conn = zbus::blocking::connection::Builder::address(bus)
        .unwrap()
        .build()
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.DBus.Properties")
        .unwrap()
        .member("PropertiesChanged")
        .unwrap()
        .path_namespace(MANAGER)
        .unwrap()
        .build();
    let it = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(1024)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _conn = conn;
        for m in it {
            let Ok(m) = m else { break };
            let path = m.header().path().map(|p| p.to_string()).unwrap_or_default();
            let Ok((_, changed, _)) = m.body().deserialize::<(
                String,
                std::collections::HashMap<String, OwnedValue>,
                Vec<String>,
            )>() else {
                continue;
            };
            for (k, v) in changed {
                let text = match &*v {
                    zbus::zvariant::Value::Str(s) => s.to_string(),
                    zbus::zvariant::Value::U64(n) => n.to_string(),
                    zbus::zvariant::Value::F64(f) => f.to_string(),
                    other => format!("{other:?}"),
                };
                if tx.send((path.clone(), k, text)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[test]
fn checkpoint_and_restore_through_busctl_with_progress() {
    let Some((dir, bus)) = setup() else { return };
    let _d = Daemon::start(&bus.address, dir.path(), &daemon_config(dir.path()), &[]);
    let mut procs = Procs::default();
    let log = dir.path().join("big.log");
    let pid = procs.spawn(counter_cmd(&bigcounter(), &log, 20, Some(256)));
    assert!(wait_growth(&log, 3, T), "the program did not start");
    let signals = watch_jobs(&bus.address);
    std::thread::sleep(Duration::from_millis(200)); // the match rule is in place

    let image = dir.path().join("big.spirit");
    let job = call(
        &bus.address,
        None,
        "Checkpoint",
        "usa{sv}",
        &[&pid.to_string(), image.to_str().unwrap(), "0"],
    )
    .unwrap();
    assert!(job.starts_with("/org/spirit/Spirit1/job/"), "{job}");
    assert_eq!(
        wait_job(&bus.address, &job, T),
        "done",
        "{}",
        job_error(&bus.address, &job)
    );
    let total = result_u64(&bus.address, &job, "page_bytes");
    assert!(total >= 256 << 20, "page_bytes {total}");
    assert!(result_u64(&bus.address, &job, "frozen_usec") > 0);
    assert_eq!(
        prop(&bus.address, &job, JOB_IFACE, "Progress").as_f64(),
        Some(1.0)
    );
    assert!(image.exists());

    // What a client saw: running, partial progress, done.
    let mut seen = vec![];
    while let Ok((p, k, v)) = signals.recv_timeout(Duration::from_secs(5)) {
        if p == job {
            let end = k == "State" && v == "done";
            seen.push((k, v));
            if end {
                break;
            }
        }
    }
    assert!(
        seen.contains(&("State".into(), "running".into())),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(k, v)| k == "BytesDone" && v.parse::<u64>().is_ok_and(|b| b > 0 && b < total)),
        "no partial progress in {seen:?}"
    );
    assert_eq!(seen.last(), Some(&("State".into(), "done".into())));

    // The checkpoint ended the program; bring it back.
    std::thread::sleep(Duration::from_millis(100));
    assert!(procs.exited(pid), "the checkpointed process still runs");
    let before = log_numbers(&log).len();
    let job = call(
        &bus.address,
        None,
        "Restore",
        "sa{sv}",
        &[image.to_str().unwrap(), "1", "new_pid", "b", "true"],
    )
    .unwrap();
    assert_eq!(
        wait_job(&bus.address, &job, T),
        "done",
        "{}",
        job_error(&bus.address, &job)
    );
    let new_pid = result_u64(&bus.address, &job, "pid") as u32;
    procs.adopt(new_pid);
    assert!(alive(new_pid));
    assert!(
        wait_growth(&log, 5, T),
        "the restored program does not count"
    );
    assert!(log_numbers(&log).len() > before);
    assert_continuous(&log, before + 5);
}

#[test]
fn an_unprivileged_caller_checkpoints_only_its_own_processes() {
    let Some((dir, bus)) = setup() else { return };
    let _d = Daemon::start(&bus.address, dir.path(), &daemon_config(dir.path()), &[]);
    const NOBODY: u32 = 65534;
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::set_permissions(&work, PermissionsExt::from_mode(0o777)).unwrap();
    let private = dir.path().join("root-only");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, PermissionsExt::from_mode(0o700)).unwrap();

    let mut procs = Procs::default();
    let counter = counter();
    let own_log = work.join("own.log");
    let mut cmd = counter_cmd(&counter, &own_log, 20, None);
    std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY);
    std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY);
    let own = procs.spawn(cmd);
    let roots_log = dir.path().join("root.log");
    let roots = procs.spawn(counter_cmd(&counter, &roots_log, 20, None));
    assert!(wait_growth(&own_log, 3, T) && wait_growth(&roots_log, 3, T));

    // Root's process: refused before any job exists.
    let img = work.join("x.spirit");
    let e = call(
        &bus.address,
        Some(NOBODY),
        "Checkpoint",
        "usa{sv}",
        &[&roots.to_string(), img.to_str().unwrap(), "0"],
    )
    .unwrap_err();
    assert!(
        e.contains("may not checkpoint pid") && e.contains("only its owner or root"),
        "{e}"
    );
    assert!(
        wait_growth(&roots_log, 3, T),
        "root's process was disturbed"
    );

    // Its own process, into a directory it cannot write: the worker runs as the caller.
    let denied = private.join("x.spirit");
    let job = call(
        &bus.address,
        Some(NOBODY),
        "Checkpoint",
        "usa{sv}",
        &[&own.to_string(), denied.to_str().unwrap(), "0"],
    )
    .unwrap();
    assert_eq!(wait_job(&bus.address, &job, T), "failed");
    let err = job_error(&bus.address, &job);
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    assert!(!denied.exists());
    assert!(
        wait_growth(&own_log, 3, T),
        "a failed checkpoint must leave the process running"
    );

    // Its own process, into its own directory: done, the image belongs to the caller.
    let job = call(
        &bus.address,
        Some(NOBODY),
        "Checkpoint",
        "usa{sv}",
        &[&own.to_string(), img.to_str().unwrap(), "0"],
    )
    .unwrap();
    assert_eq!(
        wait_job(&bus.address, &job, T),
        "done",
        "{}",
        job_error(&bus.address, &job)
    );
    assert_eq!(std::fs::metadata(&img).unwrap().uid(), NOBODY);
    assert_eq!(
        prop(&bus.address, &job, JOB_IFACE, "Owner").as_u64(),
        Some(NOBODY as u64)
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(procs.exited(own));

    // And restores it, as itself, under a fresh pid.
    let before = log_numbers(&own_log).len();
    let job = call(
        &bus.address,
        Some(NOBODY),
        "Restore",
        "sa{sv}",
        &[img.to_str().unwrap(), "0"],
    )
    .unwrap();
    assert_eq!(
        wait_job(&bus.address, &job, T),
        "done",
        "{}",
        job_error(&bus.address, &job)
    );
    let back = result_u64(&bus.address, &job, "pid") as u32;
    procs.adopt(back);
    let status = std::fs::read_to_string(format!("/proc/{back}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );
    assert!(wait_growth(&own_log, 5, T));
    assert_continuous(&own_log, before + 5);
}

#[test]
fn bad_calls_are_refused_with_clear_errors() {
    let Some((dir, bus)) = setup() else { return };
    let _d = Daemon::start(&bus.address, dir.path(), &daemon_config(dir.path()), &[]);
    let me = std::process::id().to_string();
    let a = &bus.address;
    let e = call(
        a,
        None,
        "Checkpoint",
        "usa{sv}",
        &[&me, "rel/x.spirit", "0"],
    )
    .unwrap_err();
    assert!(e.contains("must be absolute"), "{e}");
    let e = call(
        a,
        None,
        "Checkpoint",
        "usa{sv}",
        &[&me, "/tmp/x.spirit", "1", "leave_runing", "b", "true"],
    )
    .unwrap_err();
    assert!(e.contains("unknown option \"leave_runing\""), "{e}");
    let e = call(
        a,
        None,
        "Checkpoint",
        "usa{sv}",
        &[&me, "/tmp/x.spirit", "1", "leave_running", "s", "yes"],
    )
    .unwrap_err();
    assert!(e.contains("must be a boolean"), "{e}");
    let e = call(
        a,
        None,
        "Checkpoint",
        "usa{sv}",
        &["4000000000", "/tmp/x.spirit", "0"],
    )
    .unwrap_err();
    assert!(e.contains("no process with pid 4000000000"), "{e}");
    let e = call(a, None, "Migrate", "usa{sv}", &[&me, "nowhere", "0"]).unwrap_err();
    assert!(e.contains("no peer called \"nowhere\""), "{e}");
    // A finished job cannot be cancelled; it is listed.
    let job = call(a, None, "Restore", "sa{sv}", &["/nonexistent.spirit", "0"]).unwrap();
    assert_eq!(wait_job(a, &job, T), "failed");
    assert!(
        job_error(a, &job).contains("/nonexistent.spirit"),
        "{}",
        job_error(a, &job)
    );
    let o = busctl(a, None, &["call", DEST, &job, JOB_IFACE, "Cancel"]);
    assert!(
        !o.ok && o.stderr.contains("already finished"),
        "{}",
        o.stderr
    );
    let o = busctl(a, None, &["call", DEST, MANAGER, MGR_IFACE, "ListJobs"]);
    assert!(
        o.ok && o.stdout.contains(&job) && o.stdout.contains("\"failed\""),
        "{}",
        o.stdout
    );
    let v = prop(a, MANAGER, MGR_IFACE, "Version");
    assert_eq!(v.as_str(), Some(env!("CARGO_PKG_VERSION")));
    let f = prop(a, MANAGER, MGR_IFACE, "Features");
    assert!(f.as_array().unwrap().iter().any(|x| x == "migrate"), "{f}");
}

#[test]
fn a_crashing_worker_fails_its_job_and_the_daemon_lives_on() {
    let Some((dir, bus)) = setup() else { return };
    let crasher = dir.path().join("crash.sh");
    std::fs::write(&crasher, "#!/bin/sh\nkill -SEGV $$\n").unwrap();
    std::fs::set_permissions(&crasher, PermissionsExt::from_mode(0o755)).unwrap();
    let d = Daemon::start_with(
        &bus.address,
        dir.path(),
        &daemon_config(dir.path()),
        &[],
        &crasher,
    );
    let mut procs = Procs::default();
    let log = dir.path().join("c.log");
    let pid = procs.spawn(counter_cmd(&counter(), &log, 20, None));
    let img = dir.path().join("c.spirit");
    let job = call(
        &bus.address,
        None,
        "Checkpoint",
        "usa{sv}",
        &[&pid.to_string(), img.to_str().unwrap(), "0"],
    )
    .unwrap();
    assert_eq!(wait_job(&bus.address, &job, T), "failed");
    let e = job_error(&bus.address, &job);
    assert!(e.contains("killed by signal 11"), "{e}");
    assert!(alive(d.pid()), "spiritd died with its worker");
    assert!(prop(&bus.address, MANAGER, MGR_IFACE, "Version").is_string());
    assert!(wait_growth(&log, 3, T));
}

/// `JobRemoved(id, path, state)` signals from the manager.
fn watch_removed(bus: &str) -> std::sync::mpsc::Receiver<(u32, String, String)> {
    let conn = zbus::blocking::connection::Builder::address(bus)
        .unwrap()
        .build()
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(MGR_IFACE)
        .unwrap()
        .member("JobRemoved")
        .unwrap()
        .path(MANAGER)
        .unwrap()
        .build();
    let it = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(64)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _conn = conn;
        for m in it {
            let Ok(m) = m else { break };
            let Ok((id, path, state)) = m
                .body()
                .deserialize::<(u32, zbus::zvariant::OwnedObjectPath, String)>()
            else {
                continue;
            };
            if tx.send((id, path.to_string(), state)).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_finished_job_leaves_the_bus_after_its_linger_time() {
    let Some((dir, bus)) = setup() else { return };
    let config = format!(
        "state_dir = \"{}/state\"\njob_linger_secs = 1\n",
        dir.path().display()
    );
    let _d = Daemon::start(&bus.address, dir.path(), &config, &[]);
    let a = &bus.address;
    let removed = watch_removed(a);
    std::thread::sleep(Duration::from_millis(200)); // the match rule is in place
    let job = call(a, None, "Restore", "sa{sv}", &["/nonexistent.spirit", "0"]).unwrap();
    let id: u32 = job.rsplit('/').next().unwrap().parse().unwrap();
    let (rid, rpath, state) = removed.recv_timeout(T).expect("no JobRemoved signal");
    assert_eq!(
        (rid, rpath.as_str(), state.as_str()),
        (id, job.as_str(), "failed")
    );
    let o = busctl(a, None, &["get-property", DEST, &job, JOB_IFACE, "State"]);
    assert!(!o.ok, "the removed job still answers: {}", o.stdout);
    let o = busctl(a, None, &["call", DEST, MANAGER, MGR_IFACE, "ListJobs"]);
    assert!(o.ok && !o.stdout.contains(&job), "{}", o.stdout);
}
