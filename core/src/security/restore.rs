//! Giving a restored process its security state back (see the parent module's doc
//! for the order and why).

use super::{cap_name, has, status, Status, PR_GET_SECUREBITS};
use crate::error::{Error, Result};
use crate::model::{ProcessImage, SeccompFilter, ThreadSecurity};
use spirit_kmod::{SudConfig, Tracee};

const PR_SET_SECUREBITS: u64 = 28;
const PR_CAPBSET_DROP: u64 = 24;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;
const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
const CAP_SETPCAP: u32 = 8;
const CAP_SYS_ADMIN: u32 = 21;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Flags a filter keeps (`PTRACE_SECCOMP_GET_METADATA` reports these).
const FILTER_FLAGS: u64 = 2 /* LOG */ | 4 /* SPEC_ALLOW */;

/// The threads of a process being restored, and where to run syscalls in it.
pub(crate) struct Target<'a> {
    pub threads: &'a mut [Tracee],
    pub gadget: u64,
    pub scratch: u64,
    pub scratch_len: u64,
}

impl Target<'_> {
    fn pid(&self) -> i32 {
        self.threads[0].tid()
    }

    fn call(&mut self, i: usize, nr: i64, args: &[u64], what: &'static str) -> Result<i64> {
        Ok(self.threads[i].syscall_ok(self.gadget, nr, args, what)?)
    }

    fn write(&self, at: u64, data: &[u8]) -> Result<()> {
        spirit_kmod::write_memory(self.pid(), data, &[(at, data.len())])?;
        Ok(())
    }

    fn capset(&mut self, i: usize, eff: u64, prm: u64, inh: u64) -> Result<()> {
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&LINUX_CAPABILITY_VERSION_3.to_le_bytes());
        b.extend_from_slice(&0i32.to_le_bytes());
        for half in [0, 32] {
            for set in [eff, prm, inh] {
                b.extend_from_slice(&((set >> half) as u32).to_le_bytes());
            }
        }
        self.write(self.scratch, &b)?;
        self.call(
            i,
            libc::SYS_capset,
            &[self.scratch, self.scratch + 8],
            "capset",
        )?;
        Ok(())
    }

    fn install_filter(&mut self, i: usize, f: &SeccompFilter, tsync: bool) -> Result<()> {
        let n = f.program.len() / 8;
        if f.program.len() as u64 + 16 > self.scratch_len {
            return Err(Error::Restore(format!(
                "a seccomp filter of {n} instructions does not fit the restore's scratch area"
            )));
        }
        let mut fprog = Vec::with_capacity(16);
        fprog.extend_from_slice(&(n as u64).to_le_bytes()); // u16 len + padding
        fprog.extend_from_slice(&(self.scratch + 16).to_le_bytes());
        self.write(self.scratch, &fprog)?;
        self.write(self.scratch + 16, &f.program)?;
        let flags = (f.flags & FILTER_FLAGS) | if tsync { SECCOMP_FILTER_FLAG_TSYNC } else { 0 };
        let r = self.call(
            i,
            libc::SYS_seccomp,
            &[SECCOMP_SET_MODE_FILTER, flags, self.scratch],
            "seccomp(SECCOMP_SET_MODE_FILTER)",
        )?;
        if r != 0 {
            // TSYNC names the thread it could not synchronise.
            return Err(Error::Restore(format!(
                "process {}: seccomp filter could not be synchronised to thread {r}",
                self.pid()
            )));
        }
        Ok(())
    }
}

/// Before the uid changes (`restore::tasks::credentials`): keep the restorer's
/// capabilities across setresuid (SECBIT_NO_SETUID_FIXUP) so the steps that need them
/// — bounding set, ambient set, seccomp without no_new_privs — can still run; the final
/// securebits and capabilities are set by [`restore`]. Only for images that recorded
/// security state, and only where the thread may set securebits.
pub(crate) fn keep_caps_across_setuid(t: &mut Target<'_>, proc: &ProcessImage) -> Result<()> {
    if proc.security.is_empty() {
        return Ok(());
    }
    for i in 0..t.threads.len() {
        let now = status(t.pid(), t.threads[i].tid())?;
        if !has(now.eff, CAP_SETPCAP) {
            continue;
        }
        let bits = t.call(
            i,
            libc::SYS_prctl,
            &[PR_GET_SECUREBITS],
            "prctl(PR_GET_SECUREBITS)",
        )? as u32;
        t.call(
            i,
            libc::SYS_prctl,
            &[PR_SET_SECUREBITS, u64::from(bits | SECBIT_NO_SETUID_FIXUP)],
            "prctl(PR_SET_SECUREBITS)",
        )?;
    }
    Ok(())
}

fn caps_list(set: u64) -> String {
    (0..64)
        .filter(|&c| has(set, c))
        .map(cap_name)
        .collect::<Vec<_>>()
        .join(",")
}

/// The longest list of filters every thread starts with (none if a thread is not in
/// filter mode).
fn shared_prefix(sec: &[ThreadSecurity]) -> usize {
    if sec.iter().any(|s| s.seccomp_mode != 2) {
        return 0;
    }
    let first = &sec[0].filters;
    (0..first.len())
        .take_while(|&k| sec.iter().all(|s| s.filters.get(k) == Some(&first[k])))
        .count()
}

/// Give every thread its security state back (see the module doc for the order), then
/// check it against /proc. Returns whether the filters are suspended for the restorer's
/// later injected syscalls.
pub(crate) fn restore(t: &mut Target<'_>, proc: &ProcessImage) -> Result<bool> {
    let sec = &proc.security;
    if sec.is_empty() {
        return Ok(false);
    }
    let pid = t.pid();
    let orig = proc.pid;
    if sec.len() != t.threads.len() {
        return Err(Error::Restore(format!(
            "process {orig}: security state of {} threads for {} threads",
            sec.len(),
            t.threads.len()
        )));
    }
    let mut now = Vec::with_capacity(sec.len());
    for th in t.threads.iter() {
        now.push(status(pid, th.tid())?);
    }
    let refuse = |tid: i32, reason: String| Error::RestoreNotPermitted {
        reason: format!("process {orig} thread {tid}: {reason}"),
    };
    // Refuse before changing anything what cannot be given back.
    let mut suspended = false;
    if sec.iter().any(|s| s.seccomp_mode != 0) {
        suspended = t.threads.iter_mut().all(|th| th.suspend_seccomp().is_ok());
    }
    for (i, (want, cur)) in sec.iter().zip(&now).enumerate() {
        let tid = proc.threads[i].tid;
        let lacks = |w: u64, c: u64| w & !c;
        for (what, w, c) in [
            ("permitted", want.cap_permitted, cur.prm),
            ("bounding", want.cap_bounding, cur.bnd),
        ] {
            if lacks(w, c) != 0 {
                return Err(refuse(tid, format!(
                    "it had the {what} capabilities {} that the restorer does not have; restore as root",
                    caps_list(lacks(w, c))
                )));
            }
        }
        if !has(cur.eff, CAP_SETPCAP) && (want.cap_bounding != cur.bnd || want.securebits != 0) {
            return Err(refuse(tid, "its bounding set or securebits differ from the restorer's, and setting them needs CAP_SETPCAP; restore as root".into()));
        }
        if !want.filters.is_empty() && !want.no_new_privs && !has(cur.eff, CAP_SYS_ADMIN) {
            return Err(refuse(tid, format!(
                "it ran under {} seccomp filter(s) without no_new_privs; installing them needs CAP_SYS_ADMIN, and giving it no_new_privs instead would change it; restore as root",
                want.filters.len()
            )));
        }
        if want.seccomp_mode == 1 && i == 0 && !suspended {
            return Err(refuse(tid, "it is in seccomp strict mode, which would kill it at the restore's last injected syscall unless spirit may suspend seccomp (CAP_SYS_ADMIN); restore as root".into()));
        }
        if want.filters.len() > 1024 || want.seccomp_mode > 2 {
            return Err(Error::Restore(format!(
                "process {orig} thread {tid}: malformed seccomp state"
            )));
        }
    }
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40)
        .min(63);
    // 1. Capability sets that need privilege to change, while it is there.
    for (i, (want, cur)) in sec.iter().zip(&now).enumerate() {
        // The inheritable set first: with CAP_SETPCAP it may hold anything of the
        // bounding set, which shrinks next.
        if want.cap_inheritable != cur.inh {
            t.capset(i, cur.eff, cur.prm, want.cap_inheritable)?;
        }
        for cap in (0..=last_cap).filter(|&c| has(cur.bnd, c) && !has(want.cap_bounding, c)) {
            t.call(
                i,
                libc::SYS_prctl,
                &[PR_CAPBSET_DROP, u64::from(cap)],
                "prctl(PR_CAPBSET_DROP)",
            )?;
        }
        if cur.amb != 0 {
            t.call(
                i,
                libc::SYS_prctl,
                &[PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0],
                "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
            )?;
        }
        for cap in (0..64).filter(|&c| has(want.cap_ambient, c)) {
            t.call(
                i,
                libc::SYS_prctl,
                &[PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, u64::from(cap), 0, 0],
                "prctl(PR_CAP_AMBIENT_RAISE)",
            )?;
        }
    }
    // 2. no_new_privs, only where the thread had it.
    for (i, want) in sec.iter().enumerate() {
        if want.no_new_privs {
            t.call(
                i,
                libc::SYS_prctl,
                &[PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0],
                "prctl(PR_SET_NO_NEW_PRIVS)",
            )?;
        }
    }
    // 3. Filters: the shared ones once for all threads, then each thread's own.
    let shared = shared_prefix(sec);
    for f in &sec[0].filters[..shared] {
        t.install_filter(0, f, t.threads.len() > 1)?;
    }
    for (i, want) in sec.iter().enumerate() {
        for f in &want.filters[shared.min(want.filters.len())..] {
            t.install_filter(i, f, false)?;
        }
    }
    // 4. Securebits, the final capability sets, strict mode.
    for (i, want) in sec.iter().enumerate() {
        let bits = t.call(
            i,
            libc::SYS_prctl,
            &[PR_GET_SECUREBITS],
            "prctl(PR_GET_SECUREBITS)",
        )? as u32;
        if bits != want.securebits {
            t.call(
                i,
                libc::SYS_prctl,
                &[PR_SET_SECUREBITS, u64::from(want.securebits)],
                "prctl(PR_SET_SECUREBITS)",
            )?;
        }
        t.capset(
            i,
            want.cap_effective,
            want.cap_permitted,
            want.cap_inheritable,
        )?;
        if want.seccomp_mode == 1 {
            t.call(
                i,
                libc::SYS_seccomp,
                &[SECCOMP_SET_MODE_STRICT, 0, 0],
                "seccomp(SECCOMP_SET_MODE_STRICT)",
            )?;
        }
    }
    // 5. Read back.
    for (i, want) in sec.iter().enumerate() {
        let got = status(pid, t.threads[i].tid())?;
        let expect = Status {
            inh: want.cap_inheritable,
            prm: want.cap_permitted,
            eff: want.cap_effective,
            bnd: want.cap_bounding,
            amb: want.cap_ambient,
            nnp: want.no_new_privs,
            seccomp: want.seccomp_mode,
            filters: want.filters.len(),
        };
        if got != expect {
            return Err(Error::Restore(format!(
                "process {orig} thread {}: security state did not come back as it was (wanted {expect:?}, got {got:?})",
                proc.threads[i].tid
            )));
        }
    }
    Ok(suspended)
}

/// Set each thread's syscall user dispatch back (by ptrace, after its last injected
/// syscall).
pub(crate) fn restore_sud(threads: &[Tracee], proc: &ProcessImage) -> Result<()> {
    for (t, s) in threads.iter().zip(&proc.security) {
        if s.sud != SudConfig::default() {
            t.set_sud_config(&s.sud)?;
        }
    }
    Ok(())
}
