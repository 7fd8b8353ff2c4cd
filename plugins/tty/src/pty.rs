//! Ptys whose master is held in the tree: what a pair is (termios, window size, packet,
//! locked and exclusive modes, the bytes queued both ways), read at dump through
//! `pidfd_getfd` copies, and the new pair a restore makes of it.
//!
//! There is no peek on a terminal: the queued bytes are read out of the frozen pair at
//! dump (the slave's input in non-canonical mode, so a partial line comes too), and put
//! back when the tree runs on (`--leave-running`, or a failed dump). At restore they go
//! through the new pair: output by the slave with OPOST off, input by the master with
//! echo and input processing off but in the same ICANON mode, so lines split as before.
//! No call chooses a pty index: the restored pair has the lowest free one.

use crate::section::{Terminal, Termios};
use nix::sys::termios::{tcgetattr, tcsetattr, SetArg};
use spirit_core::{Error, Result};
use spirit_kmod::tty as ktty;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

fn kerr(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Restore(format!("{what}: {e}"))
}

pub fn termios_of(fd: impl AsFd) -> nix::Result<Termios> {
    let raw: libc::termios = tcgetattr(fd)?.into();
    Ok(Termios {
        iflag: raw.c_iflag,
        oflag: raw.c_oflag,
        cflag: raw.c_cflag,
        lflag: raw.c_lflag,
        line: raw.c_line,
        cc: raw.c_cc.to_vec(),
        ispeed: raw.c_ispeed,
        ospeed: raw.c_ospeed,
    })
}

pub fn raw_termios(t: &Termios) -> libc::termios {
    let mut cc = [0u8; 32];
    let n = t.cc.len().min(32);
    cc[..n].copy_from_slice(&t.cc[..n]);
    libc::termios {
        c_iflag: t.iflag,
        c_oflag: t.oflag,
        c_cflag: t.cflag,
        c_lflag: t.lflag,
        c_line: t.line,
        c_cc: cc,
        c_ispeed: t.ispeed,
        c_ospeed: t.ospeed,
    }
}

pub fn set_termios(fd: impl AsFd, t: &libc::termios) -> nix::Result<()> {
    tcsetattr(fd, SetArg::TCSANOW, &nix::sys::termios::Termios::from(*t))
}

/// Read everything `fd` has to give now (FIONREAD says how much).
fn drain(fd: &OwnedFd) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let n = ktty::readable(fd).map_err(|e| kerr("FIONREAD", e))?;
        if n == 0 || out.len() > 1 << 20 {
            return Ok(out);
        }
        let mut buf = vec![0u8; n];
        let got = nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(|e| kerr("read", e))?;
        if got == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..got]);
    }
}

/// The state of a pair, read through copies of its master and of a slave opened for
/// the dump (`peer`: `None` when the pty is locked). The queued bytes are taken out.
pub fn capture(master: &OwnedFd, peer: Option<&OwnedFd>, t: &mut Terminal) -> Result<()> {
    t.locked = peer.is_none();
    t.packet = ktty::packet_mode(master).map_err(|e| kerr("TIOCGPKT", e))?;
    t.winsize = ktty::window_size(master).map_err(|e| kerr("TIOCGWINSZ", e))?;
    let Some(peer) = peer else {
        return Ok(());
    };
    let ldisc = ktty::line_discipline(peer).map_err(|e| kerr("TIOCGETD", e))?;
    if ldisc != 0 {
        return Err(Error::Restore(format!(
            "its line discipline is {ldisc}, not N_TTY; spirit restores ptys in the standard discipline only"
        )));
    }
    let tio = termios_of(peer).map_err(|e| kerr("tcgetattr", e))?;
    t.exclusive = ktty::exclusive(peer).map_err(|e| kerr("TIOCGEXCL", e))?;
    // The master's reader's bytes, without the packet-mode status byte.
    if t.packet {
        ktty::set_packet_mode(master, false).map_err(|e| kerr("TIOCPKT", e))?;
    }
    let to_master = drain(master);
    if t.packet {
        ktty::set_packet_mode(master, true).map_err(|e| kerr("TIOCPKT", e))?;
    }
    t.to_master = to_master?;
    // The slave's reader's bytes, partial line included: non-canonical for the read.
    let real = raw_termios(&tio);
    let mut raw = real;
    raw.c_lflag &= !libc::ICANON;
    raw.c_cc[libc::VMIN] = 0;
    raw.c_cc[libc::VTIME] = 0;
    set_termios(peer, &raw).map_err(|e| kerr("tcsetattr", e))?;
    let to_slave = drain(peer);
    set_termios(peer, &real).map_err(|e| kerr("tcsetattr", e))?;
    t.to_slave = to_slave?;
    t.termios = Some(tio);
    Ok(())
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        let n = nix::unistd::write(fd, data).map_err(|e| kerr("write", e))?;
        data = &data[n..];
    }
    Ok(())
}

/// Wait until `fd` has at least `n` bytes to read (the pty's flip buffer is processed
/// asynchronously by the kernel).
fn wait_readable(fd: &OwnedFd, n: usize, what: &str) -> Result<()> {
    let t0 = Instant::now();
    while ktty::readable(fd).map_err(|e| kerr("FIONREAD", e))? < n {
        if t0.elapsed() > Duration::from_secs(2) {
            return Err(Error::Restore(format!(
                "the {n} bytes queued {what} did not arrive within 2 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Set the slave's termios and put the queued bytes back into the pair (`master`,
/// `slave`: this process's descriptors of it).
pub fn fill(master: &OwnedFd, slave: &OwnedFd, t: &Terminal) -> Result<()> {
    let Some(tio) = &t.termios else {
        return Ok(());
    };
    let real = raw_termios(tio);
    if !t.to_master.is_empty() {
        let mut raw = real;
        raw.c_oflag &= !libc::OPOST;
        set_termios(slave, &raw).map_err(|e| kerr("tcsetattr", e))?;
        write_all(slave, &t.to_master)?;
        wait_readable(master, t.to_master.len(), "for the master's reader")?;
    }
    if !t.to_slave.is_empty() {
        let mut quiet = real;
        quiet.c_lflag &= !(libc::ECHO
            | libc::ECHOE
            | libc::ECHOK
            | libc::ECHONL
            | libc::ECHOCTL
            | libc::ECHOKE
            | libc::ISIG
            | libc::IEXTEN);
        quiet.c_iflag &= !(libc::ICRNL
            | libc::INLCR
            | libc::IGNCR
            | libc::ISTRIP
            | libc::IUCLC
            | libc::IXON
            | libc::IXOFF
            | libc::PARMRK
            | libc::BRKINT
            | libc::INPCK
            | libc::IMAXBEL);
        for c in [
            libc::VERASE,
            libc::VKILL,
            libc::VWERASE,
            libc::VREPRINT,
            libc::VLNEXT,
            libc::VEOF,
        ] {
            quiet.c_cc[c] = 0;
        }
        set_termios(slave, &quiet).map_err(|e| kerr("tcsetattr", e))?;
        write_all(master, &t.to_slave)?;
        let canonical = real.c_lflag & libc::ICANON != 0;
        let complete = if canonical {
            let ends = [b'\n', real.c_cc[libc::VEOL], real.c_cc[libc::VEOL2]];
            t.to_slave
                .iter()
                .rposition(|b| *b != 0 && ends.contains(b))
                .map_or(0, |p| p + 1)
        } else {
            t.to_slave.len()
        };
        wait_readable(slave, complete, "for the slave's reader")?;
        if complete < t.to_slave.len() {
            // A partial line is not counted by FIONREAD: give the kernel's flip
            // buffer work a moment to take the tail too.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    set_termios(slave, &real).map_err(|e| kerr("tcsetattr", e))?;
    Ok(())
}

/// A new pair: its master (unlocked) and a slave for setting it up, both close-on-exec
/// and not becoming anyone's controlling terminal.
pub fn new_pair() -> Result<(OwnedFd, OwnedFd)> {
    use std::os::unix::fs::OpenOptionsExt;
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/ptmx")
        .map_err(|e| Error::io("/dev/ptmx", e))?
        .into();
    ktty::set_pty_locked(&master, false).map_err(|e| kerr("TIOCSPTLCK", e))?;
    let slave = ktty::open_peer(&master, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
        .map_err(|e| kerr("TIOCGPTPEER", e))?;
    Ok((master, slave))
}

/// Give a new pair what `t` recorded: termios and queued bytes (through `slave`), window
/// size and packet mode. Exclusive and locked modes come last, after every slave
/// description is open ([`finish_pair`]).
pub fn restore_state(master: &OwnedFd, slave: &OwnedFd, t: &Terminal) -> Result<()> {
    fill(master, slave, t)?;
    ktty::set_window_size(master, t.winsize).map_err(|e| kerr("TIOCSWINSZ", e))?;
    if t.packet {
        ktty::set_packet_mode(master, true).map_err(|e| kerr("TIOCPKT", e))?;
    }
    Ok(())
}

pub fn finish_pair(master: &OwnedFd, slave: &OwnedFd, t: &Terminal) -> Result<()> {
    if t.exclusive {
        ktty::set_exclusive(slave, true).map_err(|e| kerr("TIOCEXCL", e))?;
    }
    if t.locked {
        ktty::set_pty_locked(master, true).map_err(|e| kerr("TIOCSPTLCK", e))?;
    }
    Ok(())
}

/// The termios as `spirit show` prints it.
pub fn show_termios(t: &Termios) -> serde_json::Value {
    let canonical = t.lflag & libc::ICANON != 0;
    let echo = t.lflag & libc::ECHO != 0;
    serde_json::json!({
        "iflag": format!("{:#o}", t.iflag),
        "oflag": format!("{:#o}", t.oflag),
        "cflag": format!("{:#o}", t.cflag),
        "lflag": format!("{:#o}", t.lflag),
        "canonical": canonical,
        "echo": echo,
        "line": t.line,
        "cc": t.cc.iter().map(|c| format!("{c:02x}")).collect::<String>(),
        "ispeed": t.ispeed,
        "ospeed": t.ospeed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair's queued bytes, both ways, survive capture (which takes them out) and
    /// fill into another pair; a partial canonical line stays partial.
    #[test]
    fn queued_bytes_move_to_a_new_pair() {
        let (m1, s1) = new_pair().unwrap();
        write_all(&m1, b"hello\npartial").unwrap();
        write_all(&s1, b"out").unwrap();
        // Echo on: the master also gets the echoed input.
        std::thread::sleep(Duration::from_millis(50));
        let mut t = Terminal::default();
        capture(&m1, Some(&s1), &mut t).unwrap();
        assert_eq!(t.to_slave, b"hello\npartial");
        // The echo of the input and the slave's output reach the master in the order
        // the tty layer's work queue runs them: either may come first.
        assert!(
            t.to_master.windows(3).any(|w| w == b"out"),
            "{:?}",
            t.to_master
        );
        assert_eq!(ktty::readable(&m1).unwrap(), 0);
        let (m2, s2) = new_pair().unwrap();
        restore_state(&m2, &s2, &t).unwrap();
        assert_eq!(termios_of(&s2).unwrap(), t.termios.clone().unwrap());
        // Canonical: only the complete line is readable; the master got no echo.
        assert_eq!(ktty::readable(&s2).unwrap(), 6);
        assert_eq!(ktty::readable(&m2).unwrap(), t.to_master.len());
        let mut again = Terminal::default();
        capture(&m2, Some(&s2), &mut again).unwrap();
        assert_eq!(again.to_slave, t.to_slave);
        assert_eq!(again.to_master, t.to_master);
    }
}
