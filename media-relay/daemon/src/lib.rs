//! Media relay daemon: drives `relay-proto` with sockets and the XDP program.
//!
//! Lands with the media and XDP issues; `sbc` will embed it in-process by default.
