//! spirit's D-Bus service (not built yet): the `org.spirit.Spirit1` Manager and Job
//! objects, authorization from bus credentials, peer links between `spiritd` daemons,
//! and the `spirit` worker processes that run each job (see DESIGN.md, "busd").
