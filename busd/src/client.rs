//! Client-side proxies for the service, used by the `spirit` command line
//! (`spirit jobs`, `spirit peers`, `spirit migrate`) and by tests.

use std::collections::HashMap;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

/// A `ListJobs` row: id, kind, state, progress, description, job path.
pub type JobRow = (u32, String, String, f64, String, OwnedObjectPath);

#[zbus::proxy(
    interface = "org.spirit.Spirit1.Manager",
    default_service = "org.spirit.Spirit1",
    default_path = "/org/spirit/Spirit1"
)]
pub trait Manager {
    fn checkpoint(
        &self,
        pid: u32,
        image: &str,
        opts: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn restore(&self, image: &str, opts: HashMap<&str, Value<'_>>)
        -> zbus::Result<OwnedObjectPath>;
    fn migrate(
        &self,
        pid: u32,
        peer: &str,
        opts: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn list_jobs(&self) -> zbus::Result<Vec<JobRow>>;
    fn list_peers(&self) -> zbus::Result<Vec<(String, String, String)>>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn features(&self) -> zbus::Result<Vec<String>>;
}

#[zbus::proxy(
    interface = "org.spirit.Spirit1.Job",
    default_service = "org.spirit.Spirit1"
)]
pub trait Job {
    fn cancel(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn result(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    #[zbus(property)]
    fn description(&self) -> zbus::Result<String>;
}
