//! The names the service is known by on the bus: its bus name, the manager's object
//! path and interface, for the code that uses them as values (the `#[zbus::interface]`
//! and `#[zbus::proxy]` attributes need literals and repeat them).

/// The service's well-known bus name.
pub const BUS_NAME: &str = "org.spirit.Spirit1";

/// The manager object; job objects live below it, at `MANAGER_PATH/job/N`.
pub const MANAGER_PATH: &str = "/org/spirit/Spirit1";

/// The manager's interface (it emits `JobRemoved`).
pub const MANAGER_INTERFACE: &str = "org.spirit.Spirit1.Manager";
