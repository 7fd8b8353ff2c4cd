//! spirit's sockets plugin (not built yet): unix, TCP (listening and established, via
//! TCP_REPAIR), UDP, IPv4 and IPv6 sockets. Until it lands, a socket descriptor makes a
//! checkpoint fail with a message naming the process and fd (or is left out with
//! `--skip-fd`).
