//! Lands with the media issue.
