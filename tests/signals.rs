//! Signal state and timers survive a checkpoint: a handler on an altstack runs there,
//! disposition flags are kept, queued real-time signals keep their values, order,
//! sender and target thread, thread names are kept; an interval timer, alarm and POSIX
//! timers (ids kept, SIGEV_SIGNAL and SIGEV_THREAD_ID) keep firing at their intervals
//! with the remaining time they had at the checkpoint.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn show_json(img: &Path) -> Value {
    let run = spirit(&["show", &img.to_string_lossy(), "--json"]);
    run.ok("show --json");
    serde_json::from_str(&run.stdout).expect("show --json is JSON")
}

fn signals_of(v: &Value) -> &Value {
    &v["processes"][0]["sections"]["signals"]["content"]
}

fn action<'a>(sig: &'a Value, name: &str) -> &'a Value {
    sig["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["signal"] == name)
        .unwrap_or_else(|| panic!("no action for {name}"))
}

fn send(pid: i32, s: Signal) {
    kill(Pid::from_raw(pid), s).expect("kill");
}

#[test]
fn altstack_flags_queued_values_and_thread_names() {
    let dir = TestDir::new("signals");
    let log = dir.join("log");
    let prog = build_c("signals.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log")], &dir, "signals");
    wait_for_line(&log, "ready");
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();

    let v = show_json(&img);
    let sig = signals_of(&v);
    let usr1 = action(sig, "SIGUSR1")["flag_names"].clone();
    for f in ["SA_ONSTACK", "SA_SIGINFO", "SA_RESTART"] {
        assert!(usr1.as_array().unwrap().iter().any(|x| x == f), "{usr1}");
    }
    let usr2 = action(sig, "SIGUSR2")["flag_names"].clone();
    for f in ["SA_RESETHAND", "SA_NODEFER"] {
        assert!(usr2.as_array().unwrap().iter().any(|x| x == f), "{usr2}");
    }
    let shared: Vec<&Value> = sig["shared_pending"].as_array().unwrap().iter().collect();
    assert_eq!(shared.len(), 2, "two queued values: {shared:?}");
    assert_eq!(shared[0]["value"], "0x7a69");
    assert_eq!(shared[1]["value"], "0x7a6a");
    assert_eq!(sig["threads"][1]["pending"][0]["value"], "0x63");
    assert_eq!(v["processes"][0]["threads"][1]["name"], "sig-worker");

    let restored = restore_ok(&img, &[]);
    let worker = tids(restored.pid)[1];
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/task/{worker}/comm", restored.pid))
            .unwrap()
            .trim(),
        "sig-worker"
    );
    send(restored.pid, Signal::SIGUSR1);
    wait_for_line(&log, "usr1 onstack=1");
    send(restored.pid, Signal::SIGHUP);
    wait_for_line(&log, "rt 4 ");
    wait_for_line(&log, "value=31338");
    let rt: Vec<String> = log_lines(&log)
        .into_iter()
        .filter(|l| l.starts_with("rt "))
        .collect();
    for want in [
        "rt 3 value=31337 code=-1 pid_ok=1 thread_ok=1",
        "rt 3 value=31338 code=-1 pid_ok=1 thread_ok=1",
        "rt 4 value=99 code=-1 pid_ok=1 thread_ok=1",
    ] {
        assert!(rt.iter().any(|l| l == want), "{want:?} not in {rt:?}");
    }
    assert_eq!(rt.len(), 3, "each queued signal delivered once: {rt:?}");
    // The two values of one signal come in the order they were queued.
    let pos = |v: &str| rt.iter().position(|l| l.contains(v)).unwrap();
    assert!(pos("value=31337") < pos("value=31338"), "{rt:?}");
    // SA_RESETHAND|SA_NODEFER: the handler runs once; its disposition is then default.
    send(restored.pid, Signal::SIGUSR2);
    wait_for_line(&log, "usr2");
}

/// `key=value` fields of the log's last complete line.
fn last_counts(log: &Path) -> std::collections::HashMap<String, i64> {
    let l = log_lines(log).last().cloned().unwrap_or_default();
    l.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(-1)))
        .collect()
}

#[test]
fn itimer_and_posix_timers_keep_firing_with_their_ids() {
    timers_case(false);
}

/// With new tids, a SIGEV_THREAD_ID timer follows its thread to its new tid.
#[test]
fn posix_timers_follow_their_thread_to_a_new_tid() {
    timers_case(true);
}

fn timers_case(new_pid: bool) {
    let dir = TestDir::new("timers");
    let log = dir.join("log");
    let prog = build_c("timers.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "periodic"], &dir, "timers");
    wait_for_line(&log, "ready");
    wait_lines(&log, 6);
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let before = last_counts(&log);
    assert_eq!(before["bad"], 0);
    assert!(
        before["p1"] > 0 && before["p2"] > 0 && before["real"] > 0,
        "{before:?}"
    );

    let v = show_json(&img);
    let sig = signals_of(&v);
    let its = sig["itimers"].as_array().unwrap();
    let real = its
        .iter()
        .find(|t| t["which"] == "real")
        .expect("real itimer");
    assert_eq!(real["interval_us"], 100_000);
    assert!(real["remaining_us"].as_u64().unwrap() <= 100_000);
    let prof = its
        .iter()
        .find(|t| t["which"] == "prof")
        .expect("prof itimer");
    assert_eq!(prof["interval_us"], 500_000_000u64);
    let prof_left = prof["remaining_us"].as_u64().unwrap();
    // CPU-time timers are kept at tick granularity: a few ms above the value set.
    assert!(
        prof_left > 990_000_000 && prof_left <= 1_000_100_000,
        "{prof}"
    );
    let pts = sig["posix_timers"].as_array().unwrap();
    let ids: Vec<i64> = pts.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![before["id1"], before["id2"]]);
    assert_ne!(
        ids,
        vec![0, 1],
        "timer 0 was deleted: the ids are not a fresh process's"
    );
    assert_eq!(pts[0]["notify"], "signal");
    assert_eq!(pts[0]["sival"], "0x1092");
    assert_eq!(pts[0]["interval_ns"], 100_000_000);
    assert_eq!(pts[1]["interval_ns"], 150_000_000);
    let worker_tid = v["processes"][0]["threads"][1]["tid"].clone();
    assert_eq!(pts[1]["thread_id"], worker_tid, "SIGEV_THREAD_ID target");

    let restored = restore_ok(&img, if new_pid { &["--new-pid"] } else { &[] });
    let t0 = Instant::now();
    // Let it run ~1.5 s: 100 ms and 150 ms timers fire about 15 and 10 times.
    wait_until("1.5 s of log", TIMEOUT, || {
        t0.elapsed() > Duration::from_millis(1500) && last_counts(&log)["real"] > 0
    });
    let after = last_counts(&log);
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(
        after["bad"], 0,
        "a timer signal with a wrong value, id or thread"
    );
    assert_eq!(after["gettime"], 1, "timer_gettime on the kept ids works");
    assert_eq!((after["id1"], after["id2"]), (before["id1"], before["id2"]));
    for (k, period) in [("real", 0.1), ("p1", 0.1), ("p2", 0.15)] {
        let n = (after[k] - before[k]) as f64;
        let expect = secs / period;
        // Generous: keeps firing, neither stopped nor bursting.
        assert!(
            n >= expect * 0.3 && n <= expect * 1.5 + 3.0,
            "{k}: {n} expiries in {secs:.2} s (period {period} s)"
        );
    }

    // The remaining time is kept: a second checkpoint of the restored process shows
    // the prof timer (CPU time, barely used) still near 1000 s, the intervals as set.
    let img2 = dir.join("img2.spirit");
    dump(restored.pid, &img2, &["--leave-running"]).ok("second dump");
    let v2 = show_json(&img2);
    let sig2 = signals_of(&v2);
    let prof2 = sig2["itimers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["which"] == "prof")
        .cloned()
        .expect("prof itimer after restore");
    assert_eq!(prof2["interval_us"], 500_000_000u64);
    let left2 = prof2["remaining_us"].as_u64().unwrap();
    assert!(
        left2 <= prof_left + 20_000 && left2 > prof_left - 5_000_000,
        "{prof2}"
    );
    let pts2 = sig2["posix_timers"].as_array().unwrap();
    assert_eq!(
        pts2.iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    let worker_now = tids(restored.pid)[1];
    assert_eq!(pts2[1]["thread_id"], worker_now, "the worker's tid now");
    assert_eq!(worker_now == worker_tid.as_i64().unwrap() as i32, !new_pid);
}

#[test]
fn alarm_fires_after_the_time_it_had_left() {
    let dir = TestDir::new("alarm");
    let log = dir.join("log");
    let prog = build_c("timers.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "alarm"], &dir, "alarm");
    wait_for_line(&log, "ready");
    std::thread::sleep(Duration::from_millis(500));
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    assert!(
        !read_log(&log).contains("alarm"),
        "alarm(3) fired before 3 s"
    );
    let v = show_json(&img);
    let real = signals_of(&v)["itimers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["which"] == "real")
        .cloned()
        .expect("alarm is the real itimer");
    let left = real["remaining_us"].as_u64().unwrap();
    assert!(left > 100_000 && left < 2_600_000, "{real}");
    assert_eq!(real["interval_us"], 0);
    // Frozen in the image for a while: the remaining time does not run out meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    let _restored = restore_ok(&img, &[]);
    let t0 = Instant::now();
    wait_until("the alarm", TIMEOUT, || read_log(&log).contains("alarm"));
    let took = t0.elapsed();
    let left = Duration::from_micros(left);
    // It was armed a moment before the restore returned (up to 1 s under load); without
    // the time kept it would fire at once (time counted while frozen) or never.
    assert!(
        took + Duration::from_secs(1) >= left && took < left + Duration::from_secs(3),
        "alarm fired {took:?} after the restore; it had {left:?} left"
    );
    // One-shot: it does not come again.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(read_log(&log).matches("alarm").count(), 1);
}

/// The case users met: a periodic itimer whose SIGALRM was pending at the checkpoint
/// (the kernel re-arms it only when the signal is taken) keeps ticking after it.
#[test]
fn a_periodic_itimer_with_its_signal_pending_keeps_ticking() {
    let dir = TestDir::new("itimer-pending");
    let log = dir.join("log");
    let prog = build_c("timers.c", &[]);
    let mut orig = Proc::spawn(&prog, &[&dir.s("log"), "blocked"], &dir, "blocked");
    wait_for_line(&log, "ready");
    wait_lines(&log, 4);
    let img = dir.join("img.spirit");
    dump(orig.pid, &img, &[]).ok("dump");
    orig.reap();
    let v = show_json(&img);
    let sig = signals_of(&v);
    let real = sig["itimers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["which"] == "real")
        .cloned()
        .expect("the periodic real itimer is in the image");
    assert_eq!(real["interval_us"], 50_000);
    assert!(
        sig["shared_pending"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["signo"] == "SIGALRM"),
        "SIGALRM pending: {sig}"
    );
    let restored = restore_ok(&img, &[]);
    send(restored.pid, Signal::SIGHUP);
    let t0 = Instant::now();
    wait_until("ticks after the restore", TIMEOUT, || {
        last_counts(&log).get("real").copied().unwrap_or(0) >= 5
    });
    assert!(t0.elapsed() < Duration::from_secs(5));
}
