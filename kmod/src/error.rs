use nix::errno::Errno;

/// A failure of a kernel interface call, naming the call and the task it was made on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{call} on task {tid} failed: {errno}")]
    Sys {
        call: &'static str,
        tid: i32,
        errno: Errno,
    },
    #[error("task {tid} exited while spirit was working on it ({how})")]
    Exited { tid: i32, how: String },
    #[error("task {tid}: {msg}")]
    Unexpected { tid: i32, msg: String },
}

impl Error {
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn check(call: &'static str, tid: i32, ret: i64) -> Result<i64> {
    if ret < 0 {
        Err(Error::Sys {
            call,
            tid,
            errno: Errno::last(),
        })
    } else {
        Ok(ret)
    }
}
