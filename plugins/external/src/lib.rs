//! External plugins: executables, in any language, that checkpoint and restore kinds of
//! descriptor spirit does not know itself, spoken to over peer-to-peer D-Bus
//! (interface `org.spirit.Plugin1`, `busd/org.spirit.Plugin1.xml` is the reference).
//!
//! Each plugin found ([`manifest::discover`]: one `NAME.toml` per plugin in
//! `$SPIRIT_PLUGIN_PATH`, `plugins/` beside the `spirit` binary, `/usr/lib/spirit/plugins`)
//! becomes one [`ExternalPlugin`] in the pipeline, named and versioned as its manifest
//! says (the plugin's `Describe` must agree). Data flows:
//!
//! - dump (`dump.rs`): a descriptor the plugin claims → a `pidfd_getfd` copy → `Dump` →
//!   the plugin's bytes in a per-fd record ([`section`]) of the process's section; the
//!   plugin process runs only if the tree has such a descriptor;
//! - restore (`restore.rs`): at plan time a helper process calls `Restore` per record
//!   and hands the new descriptors to the restorer, which parks them; each restore child
//!   `dup3`s its own into place;
//! - show: `Show` per record.
//!
//! The process and connection of a running plugin are in `peer.rs`; what a plugin
//! claims in `claims.rs`. A plugin that fails, hangs past its deadline or answers
//! garbage fails the dump or the restore with a message naming it.

#[allow(clippy::all, clippy::pedantic)]
mod external_capnp {
    include!(concat!(env!("OUT_DIR"), "/external_capnp.rs"));
}

pub mod claims;
mod dump;
mod helper;
pub mod manifest;
pub mod peer;
mod restore;
mod section;

pub use manifest::{discover, Manifest};

use serde_json::{json, Value};
use spirit_core::model::ProcessImage;
use spirit_core::plugin::{
    state_mut, state_ref, DumpCtx, DumpOutcome, DumpTree, Parking, Plugin, TreeState, TreeView,
};
use spirit_core::{Error, Result};

/// One external plugin in the pipeline.
pub struct ExternalPlugin {
    manifest: Manifest,
    name: &'static str,
}

impl ExternalPlugin {
    pub fn new(manifest: Manifest) -> ExternalPlugin {
        // Plugin::name is 'static: one small string per plugin per spirit process.
        let name = Box::leak(manifest.name.clone().into_boxed_str());
        ExternalPlugin { manifest, name }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

impl Plugin for ExternalPlugin {
    fn name(&self) -> &'static str {
        self.name
    }

    fn version(&self) -> u32 {
        self.manifest.version
    }

    fn dump_tree(&self, _tree: &DumpTree) -> Result<TreeState> {
        Ok(Box::new(dump::DumpState::default()))
    }

    fn dump(&self, state: &mut TreeState, ctx: &mut DumpCtx<'_>) -> Result<Option<Vec<u8>>> {
        dump::dump(&self.manifest, state_mut(state)?, ctx)
    }

    fn dump_end(&self, state: &mut TreeState, _outcome: DumpOutcome) {
        if let Ok(st) = state_mut::<dump::DumpState>(state) {
            st.peer = None;
        }
    }

    fn plan_restore(&self, tree: &TreeView<'_>, park: &mut Parking) -> Result<TreeState> {
        Ok(Box::new(restore::plan(&self.manifest, tree, park)?))
    }

    fn restore_in_child(
        &self,
        state: &TreeState,
        _tree: &TreeView<'_>,
        process: &ProcessImage,
        _section: &[u8],
    ) -> Result<Vec<i32>> {
        restore::install(state_ref(state)?, process.pid)
    }

    fn restore_end(&self, state: &mut TreeState, ok: bool) {
        if let Ok(st) = state_mut::<restore::RestoreState>(state) {
            st.end(ok);
        }
    }

    fn show(&self, data: &[u8]) -> Result<Value> {
        let recs = section::decode(&self.manifest.name, data)?;
        let peer = peer::Peer::start(&self.manifest).map_err(|e| self.failed(e))?;
        let mut fds = Vec::with_capacity(recs.len());
        for r in recs {
            let shown = match r.share {
                Some(sh) => json!({
                    "same_object_as": {"pid": sh.pid, "fd": sh.fd},
                    "same_description": sh.same_description,
                }),
                None => peer
                    .show(&r.data)
                    .map_err(|e| self.failed(format!("fd {}: {e}", r.fd)))?,
            };
            fds.push(json!({
                "fd": r.fd,
                "flags": format!("{:#o}", r.flags),
                "cloexec": r.cloexec,
                "target": r.target,
                "content": shown,
            }));
        }
        Ok(json!({ "fds": fds }))
    }
}

impl ExternalPlugin {
    fn failed(&self, msg: impl std::fmt::Display) -> Error {
        Error::Restore(format!(
            "external plugin '{}' ({}): {msg}",
            self.manifest.name,
            self.manifest.exec.display()
        ))
    }
}

/// Every external plugin found, for the pipeline (names of built-in plugins are
/// reserved), and the manifests that could not be used, as messages.
pub fn pipeline_entries(reserved: &[&str]) -> (Vec<ExternalPlugin>, Vec<String>) {
    let (found, problems) = discover(reserved);
    (
        found.into_iter().map(ExternalPlugin::new).collect(),
        problems,
    )
}
