//! Four std threads (main and three more), each with a thread_local counter, sharing a
//! Mutex<u64>. Under the lock each appends "T<i> tid=<gettid> mine=<n> shared=<m>" to
//! the O_APPEND log given as the first argument.

use std::cell::Cell;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// This thread's id, from the kernel (`/proc/thread-self` links to `PID/task/TID`).
fn gettid() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("tid from /proc/thread-self")
}

thread_local! {
    static MINE: Cell<u64> = const { Cell::new(0) };
}

fn worker(id: usize, shared: Arc<Mutex<(u64, std::fs::File)>>) -> ! {
    loop {
        {
            let mut g = shared.lock().unwrap();
            g.0 += 1;
            let s = g.0;
            let mine = MINE.with(|m| {
                m.set(m.get() + 1);
                m.get()
            });
            let mut x = 0u64;
            for i in 0..20000u64 {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            let tid = gettid();
            let line = format!("T{id} tid={tid} mine={mine} shared={s}\n");
            g.1.write_all(line.as_bytes()).expect("write log");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("log path");
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    let shared = Arc::new(Mutex::new((0u64, f)));
    for id in 1..=3 {
        let s = shared.clone();
        std::thread::spawn(move || worker(id, s));
    }
    worker(0, shared);
}
