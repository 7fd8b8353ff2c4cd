//! spirit's shlib plugin (not built yet): the transfer of needed files to a migration
//! target that lacks them (the target asks for the hashes it lacks, the source streams
//! them before freezing) and the private mount namespace that shows cached copies at
//! their original paths.
//!
//! What exists already lives in core, because core maps the files: their identity
//! (path, size, mtime, mode, owner, ELF build-id, BLAKE3 hash with a hash cache) in
//! `spirit_core::fileid`, their content in the image (`dump --embed-files`,
//! `spirit_core::fileid::embed`) and the restore's choice between the host's file and
//! the image's copy (`spirit_core::restore`'s `files` module, copies in
//! `spirit_core::fileid::store`).
