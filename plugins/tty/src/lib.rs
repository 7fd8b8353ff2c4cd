//! spirit's tty plugin (not built yet): termios, window size, ptys, the controlling
//! terminal, sessions and process groups. Until it lands, a terminal descriptor makes a
//! checkpoint fail with a message naming the process and fd (or is left out with
//! `--skip-fd`).
