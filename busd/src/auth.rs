//! Who is asking, and may they: the caller's uid from the bus daemon
//! (`GetConnectionCredentials`, which the bus daemon vouches for), the owner of a
//! process from `/proc/PID/status`, and the identity a worker runs with.

use crate::error::BusError;
use zbus::message::Header;
use zbus::names::BusName;
use zbus::Connection;

/// A caller's identity as the worker will take it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

impl Identity {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// The identity of user `uid` from the user database (a uid with no entry keeps
    /// its number as its group and name).
    pub fn of_uid(uid: u32) -> Identity {
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => Identity {
                uid,
                gid: u.gid.as_raw(),
                name: u.name,
            },
            _ => Identity {
                uid,
                gid: uid,
                name: uid.to_string(),
            },
        }
    }

    /// The local user called `name`, if any.
    pub fn of_name(name: &str) -> Option<Identity> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Some(Identity {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                name: u.name,
            }),
            _ => None,
        }
    }

    /// Run `cmd` as this identity (unless it is the daemon's own).
    pub fn apply(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        if self.uid != nix::unistd::getuid().as_raw() {
            cmd.uid(self.uid).gid(self.gid);
        }
    }
}

/// The uid of the connection that sent the message `hdr`.
pub async fn caller(conn: &Connection, hdr: &Header<'_>) -> Result<Identity, BusError> {
    let sender = hdr.sender().ok_or_else(|| {
        BusError::PermissionDenied("the call carries no sender, so its caller is unknown".into())
    })?;
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let creds = dbus
        .get_connection_credentials(BusName::Unique(sender.to_owned()))
        .await
        .map_err(|e| BusError::PermissionDenied(format!("cannot learn who {sender} is: {e}")))?;
    let uid = creds.unix_user_id().ok_or_else(|| {
        BusError::PermissionDenied(format!("the bus does not know the uid of {sender}"))
    })?;
    Ok(Identity::of_uid(uid))
}

/// The real and effective uid of process `pid`.
pub fn process_uids(pid: u32) -> Result<(u32, u32), BusError> {
    let st = i32::try_from(pid)
        .ok()
        .and_then(|p| spirit_core::procinfo::status(p).ok())
        .ok_or_else(|| BusError::NoSuchProcess(format!("no process with pid {pid}")))?;
    Ok((st.ruid, st.euid))
}

/// May `who` checkpoint or migrate process `pid`? Root may act on any process; anyone
/// else only on processes whose real and effective uid are theirs.
pub fn may_touch(who: &Identity, pid: u32) -> Result<(), BusError> {
    let (real, eff) = process_uids(pid)?;
    if who.is_root() || (real == who.uid && eff == who.uid) {
        return Ok(());
    }
    Err(BusError::PermissionDenied(format!(
        "user {} (uid {}) may not checkpoint pid {pid}: it runs as uid {real} (effective {eff}); only its owner or root may",
        who.name, who.uid
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_allowed_and_others_refused() {
        let me = Identity::of_uid(nix::unistd::getuid().as_raw());
        may_touch(&me, std::process::id()).unwrap();
        let stranger = Identity {
            uid: 4_000_000,
            gid: 4_000_000,
            name: "stranger".into(),
        };
        if me.is_root() {
            let e = may_touch(&stranger, std::process::id()).unwrap_err();
            assert!(format!("{e:?}").contains("only its owner or root"));
        }
        assert!(matches!(
            process_uids(u32::MAX - 1),
            Err(BusError::NoSuchProcess(_))
        ));
    }
}
