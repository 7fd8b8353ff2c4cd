//! spirit's core: the image format, the process model, the plugin contract and the
//! checkpoint and restore pipelines.
//!
//! Data flow. Checkpoint ([`dump::dump`]): freeze every thread through `kmod` →
//! collect the core state (registers, xstate, rseq, robust list, mm fields, rlimits…)
//! → each plugin of the [`plugin::Pipeline`] adds its section → read the memory layout
//! and page map → write header, process record, page blocks (copied in parallel
//! straight from the frozen process) and trailer with [`image::ImageWriter`] → kill or
//! resume. Restore ([`restore::restore`]): [`image::ImageReader`] checks the preamble,
//! each frame's crc and the trailer → CPU check → plugins prepare → fork the child
//! (original pid) → plugins' in-child steps → memory replaced by remote syscalls, pages
//! streamed in as they are read → threads → plugins' remote steps (timers last) → security state ([`security`]:
//! capabilities, no_new_privs, seccomp) → registers → run.
//!
//! The schema lives in `schema/core.capnp`; plugins' sections are opaque bytes here.

#[allow(clippy::all, clippy::pedantic)]
pub(crate) mod core_capnp {
    include!(concat!(env!("OUT_DIR"), "/core_capnp.rs"));
}

pub mod codec;
pub mod dump;
pub mod error;
pub mod fdclass;
pub mod fileid;
pub mod header;
pub mod image;
pub mod mapped;
pub mod model;
pub mod plugin;
pub mod procattrs;
pub mod procinfo;
pub mod restore;
pub mod security;
pub mod show;

pub use error::{Error, Result};
