//! Sans-IO media relay core.
//!
//! Sessions, the port pool, SDP rewriting, latching and kernelize decisions land here with the media issue; this
//! crate owns no socket, timer or clock (see DESIGN.md, "Principles").
