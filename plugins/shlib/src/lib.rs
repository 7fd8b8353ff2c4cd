//! spirit's shlib plugin (not built yet): the executable and every mapped library —
//! their identity (content hash, build id, version), the check at restore that the
//! target has the same files, and their transfer to a migration target that lacks them.
