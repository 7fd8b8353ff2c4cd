//! Peers: other hosts' `spiritd` daemons this one trusts.
//!
//! Each daemon has an identity key pair (X25519, created on first start in the state
//! directory, `crate::keys`); the configuration pins every peer's address and public
//! key. A link is a TCP connection that opens with a Noise XX handshake (`link`): both
//! sides prove their static keys, and a key not pinned in the configuration ends the
//! connection before any request or image byte is read. After it, every frame is
//! encrypted.
//!
//! Migration: the source (`source`, a `migrate` job) sends a request with the size of
//! the tree's pages and the files it needs (`survey`), the target (`target`, an
//! `incoming` job) accepts or refuses by its policy (users, concurrent incoming, free
//! memory, files missing or different), then the image
//! streams from `spirit dump -o -` on the frozen source straight into
//! `spirit restore -` on the target, the target confirms the process runs, and only
//! then the source tells its dump worker to end the original (`k` on its verdict fd).
//!
//! Modules, each using only those before it: `survey` (what the tree needs), `msg`
//! (the control messages), `link` (the encrypted link), then the two sides `source`
//! and `target`.

mod link;
mod msg;
mod source;
pub mod survey;
mod target;

pub use link::LinkError;
pub use msg::Msg;
pub use source::{migrate, MigrateError};
pub use survey::SurveyError;
pub use target::{listen, IncomingError};
